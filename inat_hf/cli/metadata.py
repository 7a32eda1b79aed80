"""``inat-fl metadata``: load metadata (a file or a data folder) and print a summary."""

from __future__ import annotations

import argparse
import time
from typing import Any

from inat_hf.cli import common


def add_parser(sub: Any) -> None:
    """Register ``metadata``."""
    parser = sub.add_parser(
        "metadata",
        help="load metadata (a file or a data folder) and print a summary",
        parents=[common.data_location(required=False)],
    )
    parser.add_argument(
        "url", nargs="?", help="train.json, val.json.gz, training_image_info.csv, or a data folder (or --data-dir)"
    )
    parser.add_argument("--split", action="append", help="split(s) of a data folder (default: train, val)")
    parser.add_argument("--on-invalid", choices=("error", "skip"), default="error")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the metadata and print its summary (the images are not read)."""
    from inat_hf.analysis.summary import format_summary
    from inat_hf.metadata import load_metadata

    source = common.location(args, positional="url")
    start = time.perf_counter()
    table = load_metadata(source.metadata, splits=args.split or None, on_invalid=args.on_invalid)
    print(format_summary(table))
    print(f"\nloaded {table.num_rows:,} rows in {time.perf_counter() - start:.1f} s")
    return 0
