"""``inat-fl prepare``: configs with their images as client-aligned Parquet files, on Dask."""

from __future__ import annotations

import argparse
from typing import Any

from inat_hf.cli import common


def add_parser(sub: Any) -> None:
    """Register ``prepare``."""
    parser = sub.add_parser(
        "prepare",
        help="write configs with their images as client-aligned Parquet, on Dask",
        parents=[common.data_location(), common.config_overrides(), common.cache()],
    )
    parser.add_argument("out", help="output folder or fsspec URL (az://container/prefix)")
    parser.add_argument("--config", action="append", help="config(s) to prepare (default: family_user)")
    parser.add_argument("--max-image-side", type=int, help="shrink images to this longer side")
    parser.add_argument("--on-bad-image", choices=("error", "skip"), help="a missing or corrupt image (default: error)")
    parser.add_argument("--scheduler", default="local", help="local (default), synchronous or tcp://HOST:PORT")
    parser.add_argument("--workers", type=int, help="worker processes of --scheduler local (default 2)")
    parser.add_argument("--file-rows", type=int, help="rows per file (default 2,000 with images)")
    parser.add_argument("--batch-rows", type=int, help="images a worker holds at once, a row group each (default 256)")
    parser.add_argument(
        "--redo-skipped", action="store_true", help="write again the files that skipped images (after fixing them)"
    )
    parser.add_argument("--include-user", action="store_true", help="also write the raw rights_holder")
    parser.add_argument("--replica-note", help="notice at the top of the card")
    parser.add_argument("--out-option", action="append", default=[], metavar="KEY=VALUE", help="output storage")
    parser.add_argument(
        "--baselines",
        metavar="RESULTS_JSON",
        help="a results.json of inat-fl baselines: its table and curves go in the card (default: none measured)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Prepare the configs, then write the card from the run's report."""
    import sys

    from inat_hf.analysis.baselines import load_results
    from inat_hf.hub.folder import write_card
    from inat_hf.prepare import prepare

    if args.baselines:
        load_results(args.baselines)  # a bad file stops here, before the run
    where = common.location(args).keywords()
    data_dir = where.pop("data_dir")
    out_options = common.parse_storage_options(args.out_option)
    report = prepare(
        args.out,
        data_dir,
        args.config or ["family_user"],
        overrides=common.parse_overrides(args.set),
        out_storage_options=out_options,
        cache_dir=args.cache_dir,
        max_image_side=args.max_image_side,
        on_bad_image=args.on_bad_image,
        include_user=args.include_user,
        file_rows=args.file_rows,
        batch_rows=args.batch_rows,
        redo_skipped=args.redo_skipped,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=sys.stderr,  # the summary too: files with skipped rows
        **where,
    )
    write_card(args.out, data_dir, report, storage_options=where["storage_options"], out_storage_options=out_options,
               cache_dir=args.cache_dir, replica_note=args.replica_note, baselines=args.baselines)  # fmt: skip
    print(f"wrote {args.out}; load it with datasets.load_dataset({args.out!r}, CONFIG)")
    return 0
