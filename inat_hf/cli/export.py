"""``inat-fl export``: Hub-ready Parquet configs and the dataset card (no images by default): ``inat-fl prepare``
run in this process (the synchronous scheduler), then the card.
"""

from __future__ import annotations

import argparse
from typing import Any

from inat_hf.cli import common


def add_parser(sub: Any) -> None:
    """Register ``export``."""
    parser = sub.add_parser(
        "export",
        help="write Hub-ready Parquet configs + dataset card (no images by default)",
        parents=[common.data_location(), common.config_overrides(), common.cache()],
    )
    parser.add_argument("out", help="folder or fsspec URL to write")
    parser.add_argument("--config", action="append", help="config(s) to export (default: family_user)")
    parser.add_argument("--with-images", action="store_true", help="also write the image bytes (private use only)")
    parser.add_argument("--include-user", action="store_true", help="also write the raw rights_holder")
    parser.add_argument("--replica-note", help="notice at the top of the card (e.g. numbers from a replica)")
    parser.add_argument(
        "--baselines",
        metavar="RESULTS_JSON",
        help="a results.json of inat-fl baselines: its table and curves go in the card (default: none measured)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export the configs; print the files written."""
    from inat_hf.hub.folder import export_dataset

    where = common.location(args).keywords()
    written = export_dataset(
        args.out,
        where.pop("data_dir"),
        args.config or ["family_user"],
        overrides=common.parse_overrides(args.set),
        cache_dir=args.cache_dir,
        include_user=args.include_user,
        with_images=args.with_images,
        replica_note=args.replica_note,
        baselines=args.baselines,
        **where,
    )
    for config, splits in written.items():
        print(f"{config}: " + ", ".join(f"{split} {len(files)} file(s)" for split, files in splits.items()))
    print(f"wrote {args.out} (README.md is the dataset card); load it with datasets.load_dataset({args.out!r}, ...)")
    return 0
