"""``inat-fl check``: preflight a copy (metadata counts, credentials, a sample of images, timing)."""

from __future__ import annotations

import argparse
from typing import Any

from inat_hf.cli import common


def add_parser(sub: Any) -> None:
    """Register ``check``."""
    parser = sub.add_parser(
        "check",
        help="preflight a copy: metadata counts, credentials, a sample of images, timing",
        parents=[common.data_location(required=False)],
    )
    parser.add_argument(
        "data_dir_arg",
        nargs="?",
        metavar="DATA_DIR",
        help="the metadata: a data folder or one metadata file (any fsspec URL; or --data-dir)",
    )
    parser.add_argument("--sample", type=int, default=200, help="images fetched and decoded (default 200)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the copy; print the report; 0 if it passed, else 1."""
    import json

    from inat_hf.realcopy.check import check_data

    report = check_data(common.location(args, positional="data_dir_arg"), sample=args.sample)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1
