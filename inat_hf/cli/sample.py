"""``inat-fl sample``: write the synthetic iNat 2021 replica to a folder or fsspec URL."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from inat_hf.cli import common


def add_parser(sub: Any) -> None:
    """Register ``sample``."""
    parser = sub.add_parser("sample", help="write the synthetic iNat 2021 replica to a folder or fsspec URL")
    parser.add_argument("out", help="folder or fsspec URL (az://container/prefix, memory://x, ...)")
    parser.add_argument("--scale", default="small", help="tiny, small, medium or full (default: small)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--metadata-only", action="store_true", help="write train.json/val.json, no JPEGs")
    parser.add_argument(
        "--tiny-images", action=argparse.BooleanOptionalAction, default=None, help="JPEGs of at most 32 px"
    )
    parser.add_argument("--image-side", type=int, help="longer side of every JPEG in px, e.g. 32 (records follow)")
    parser.add_argument("--processes", type=int, help="JPEG worker processes (default: one per core on local disk)")
    parser.add_argument("--no-summary", action="store_true", help="do not load the replica back and summarise")
    common.add_storage_option(parser, "fsspec option of OUT (no secrets)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the replica; print what was written and (unless ``--no-summary``) its summary."""
    from inat_hf.analysis.summary import format_summary
    from inat_hf.metadata import load_metadata
    from inat_hf.replica import write_sample

    options = common.parse_storage_options(args.option)
    start = time.perf_counter()
    local = "://" not in args.out or args.out.startswith("file://")
    counts = write_sample(
        args.out,
        scale=args.scale,
        seed=args.seed,
        metadata_only=args.metadata_only,
        tiny_images=args.tiny_images,
        image_side=args.image_side,
        processes=args.processes if args.processes is not None else (os.cpu_count() if local else None),
        storage_options=options,
        progress=True,
    )
    elapsed = time.perf_counter() - start
    print(
        f"wrote the {counts.scale!r} replica (seed {counts.seed}) to {args.out} in {elapsed:.1f} s: "
        f"{counts.train_images:,} train + {counts.val_images:,} val images (and {counts.train_mini_images:,} "
        f"train_mini, a subset of train), {counts.users:,} users, "
        f"{counts.jpegs_written:,} JPEGs written, {counts.jpegs_present:,} already complete "
        f"({counts.jpeg_bytes:,} bytes of JPEGs)"
    )
    if not args.no_summary:
        print()
        print(format_summary(load_metadata(args.out, options)))
    return 0
