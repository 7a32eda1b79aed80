"""The ``inat-fl`` command line.

Secrets never go on the command line: for Azure, set ``AZURE_STORAGE_CONNECTION_STRING`` (or
``AZURE_STORAGE_ACCOUNT_NAME`` with ``AZURE_STORAGE_SAS_TOKEN`` / ``AZURE_STORAGE_ACCOUNT_KEY``), which adlfs
reads by itself; ``--option KEY=VALUE`` passes non-secret fsspec options such as ``account_name``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from inat_hf.errors import InatError

_CACHE_HELP = (
    "cache folder, as the builder's cache_dir: manifests go to CACHE_DIR/inaturalist_fl (default: $INAT_FL_CACHE, "
    "else the datasets cache), shared with the builder"
)
_SET_HELP = (
    "override a config field, e.g. train_split=train_mini, min_client_size=32, max_clients=none (repeatable; "
    "every field of inat_hf.config.INatFLConfig)"
)
_SECRET_OPTIONS = ("account_key", "sas_token", "connection_string", "client_secret", "credential", "password")


def parse_storage_options(pairs: Sequence[str]) -> dict[str, Any] | None:
    """Fsspec options from ``-o KEY=VALUE`` pairs; secrets are refused (they belong in the environment)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option {pair!r}: expected KEY=VALUE")
        if key in _SECRET_OPTIONS:
            raise SystemExit(
                f"--option {key}=...: secrets do not go on the command line (they end up in shell history and "
                "process lists); set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_SAS_TOKEN instead"
            )
        options[key] = value
    return options or None


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """Config overrides from ``--set FIELD=VALUE`` pairs, typed and checked: :func:`inat_hf.overrides.
    parse_overrides` (imported here on use, so that ``inat-fl --help`` stays quick).
    """
    from inat_hf import overrides

    return overrides.parse_overrides(pairs)


def _cmd_demo(args: argparse.Namespace) -> int:
    from inat_hf.config import config_for
    from inat_hf.demo import run_demo

    overrides = parse_overrides(args.set)
    config_for(args.config, **overrides)  # a bad name or field fails now, before the replica is written
    run_demo(args.out, scale=args.scale, config_name=args.config, num_proc=args.num_proc, overrides=overrides)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from inat_hf.metadata import load_metadata
    from inat_hf.replica import write_sample
    from inat_hf.summary import format_summary

    options = parse_storage_options(args.option)
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


def _cmd_metadata(args: argparse.Namespace) -> int:
    from inat_hf.metadata import load_metadata
    from inat_hf.summary import format_summary

    start = time.perf_counter()
    table = load_metadata(
        args.url, parse_storage_options(args.option), splits=args.split or None, on_invalid=args.on_invalid
    )
    print(format_summary(table))
    print(f"\nloaded {table.num_rows:,} rows in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from inat_hf import storage
    from inat_hf.config import config_for
    from inat_hf.manifest import load_config_metadata, load_or_build, locate
    from inat_hf.metadata.users import user_table, write_user_table
    from inat_hf.plots import plot_client_sizes, plot_label_heatmap
    from inat_hf.stats import compute_stats, format_stats

    config = config_for(args.config, **parse_overrides(args.set))
    source = storage.resolve(args.data_dir, parse_storage_options(args.option))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    images = load_config_metadata(source, config)  # once: the per-user table, and the manifest
    manifest = load_or_build(locate(source, config, args.cache_dir), source, images)
    stats = compute_stats(manifest, config.name)
    print(format_stats(stats))
    report = {**stats.to_dict(), "config_fields": config.fingerprint_fields()}
    local = storage.resolve(str(out))
    storage.write_bytes(local, "stats.json", (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
    plot_client_sizes(manifest, out / "client_sizes.png", config_name=config.name)
    plot_label_heatmap(manifest, out / "label_heatmap.png", config_name=config.name)
    users_csv = out / "images_and_categories_per_users.csv"
    write_user_table(user_table(images), str(users_csv))
    print(f"\nwrote {out / 'stats.json'} and {users_csv.name} in {time.perf_counter() - start:.1f} s")
    print(f"plots: {out / 'client_sizes.png'}\n       {out / 'label_heatmap.png'}")
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from pathlib import Path

    from inat_hf.config import config_for
    from inat_hf.hub.card import CARD_CONFIGS, card_from_data

    overrides = parse_overrides(args.set)
    configs = [config_for(name, **overrides) for name in args.config or CARD_CONFIGS]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    text = card_from_data(
        args.data_dir,
        configs,
        out_dir=out.parent,
        storage_options=parse_storage_options(args.option),
        cache_dir=args.cache_dir,
        replica_note=args.replica_note,
        assets_dir=args.assets,
    )
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(text):,} characters) in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from inat_hf.hub.export import export_dataset

    written = export_dataset(
        args.out,
        args.data_dir,
        args.config or ["family_user"],
        overrides=parse_overrides(args.set),
        storage_options=parse_storage_options(args.option),
        cache_dir=args.cache_dir,
        include_user=args.include_user,
        with_images=args.with_images,
        replica_note=args.replica_note,
        images_dir=args.images_dir,
        image_storage_options=parse_storage_options(args.image_option) if args.image_option else None,
    )
    for config, splits in written.items():
        print(f"{config}: " + ", ".join(f"{split} {len(files)} file(s)" for split, files in splits.items()))
    print(f"wrote {args.out} (README.md is the dataset card); load it with datasets.load_dataset({args.out!r}, ...)")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from inat_hf.prepare import prepare

    options = parse_storage_options(args.option)
    prepare(
        args.out,
        args.data_dir,
        args.config or ["family_user"],
        overrides=parse_overrides(args.set),
        storage_options=options,
        out_storage_options=parse_storage_options(args.out_option),
        images_dir=args.images_dir,
        cache_dir=args.cache_dir,
        max_image_side=args.max_image_side,
        on_bad_image=args.on_bad_image,
        include_user=args.include_user,
        file_rows=args.file_rows,
        scheduler=args.scheduler,
        workers=args.workers,
        replica_note=args.replica_note,
    )
    print(f"wrote {args.out}; load it with datasets.load_dataset({args.out!r}, CONFIG)")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from inat_hf.hub.push import plan_push, push

    plan = plan_push(args.folder, allow_images=args.allow_images)
    print(
        f"{len(plan.files)} files, {plan.total_bytes / 2**20:.1f} MiB; configs: "
        + ", ".join(f"{name} ({', '.join(splits)})" for name, splits in plan.configs.items())
    )
    if args.dry_run:
        print("\n".join(plan.files))
        return 0
    print(push(args.folder, args.repo_id, private=not args.public, allow_images=args.allow_images))
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    import json

    from inat_hf.extract import ExtractReport, extract_archive

    def show(report: ExtractReport) -> None:
        sys.stderr.write(
            f"\r[inat-fl extract] {report.members:,} members ({report.written:,} written, {report.skipped:,} present, "
            f"{report.refused:,} refused), {report.bytes_read / 1e6:,.0f} MB read, "
            f"{report.read_rate / 1e6:,.1f} MB/s   "
        )
        sys.stderr.flush()

    options = parse_storage_options(args.option)
    out_options = parse_storage_options(args.out_option) if args.out_option else options
    report = extract_archive(
        args.archive,
        args.out,
        md5=args.md5,
        storage_options=options,
        out_storage_options=out_options,
        workers=args.workers,
        progress=None if args.quiet else show,
    )
    if not args.quiet:
        sys.stderr.write("\n")
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    if report.refused:
        print(f"refused {report.refused:,} member(s) that would leave {report.out} or are links, e.g. "
              f"{report.refused_members[:3]}", file=sys.stderr)  # fmt: skip
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    import json

    from inat_hf.check import check_data

    report = check_data(
        args.data_dir,
        images_dir=args.images_dir,
        storage_options=parse_storage_options(args.option),
        image_storage_options=parse_storage_options(args.image_option) if args.image_option else None,
        sample=args.sample,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1


def _add_set(parser: argparse.ArgumentParser) -> None:
    """The one ``--set FIELD=VALUE`` option (parsed by :func:`inat_hf.overrides.parse_overrides`)."""
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help=_SET_HELP)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``inat-fl``."""
    parser = argparse.ArgumentParser(prog="inat-fl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    export = sub.add_parser("export", help="write Hub-ready Parquet configs + dataset card (no images by default)")
    export.add_argument("out", help="folder or fsspec URL to write")
    export.add_argument("--data-dir", required=True, help="your iNat 2021 copy (or a replica)")
    export.add_argument("--config", action="append", help="config(s) to export (default: family_user)")
    _add_set(export)
    export.add_argument("--with-images", action="store_true", help="also write the image bytes (private use only)")
    export.add_argument("--include-user", action="store_true", help="also write the raw rights_holder")
    export.add_argument("--images-dir", help="with --with-images: URL of the images, if apart from --data-dir")
    export.add_argument(
        "--image-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec option of --images-dir"
    )
    export.add_argument("--cache-dir", help=_CACHE_HELP)
    export.add_argument("--replica-note", help="notice at the top of the card (e.g. numbers from a replica)")
    export.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    export.set_defaults(func=_cmd_export)

    prep = sub.add_parser("prepare", help="write configs with their images as client-aligned Parquet, on Dask")
    prep.add_argument("out", help="output folder or fsspec URL (az://container/prefix)")
    prep.add_argument("--data-dir", required=True, help="your iNat 2021 copy (or a replica): the metadata")
    prep.add_argument("--images-dir", help="where the image files are read (default: --data-dir)")
    prep.add_argument("--config", action="append", help="config(s) to prepare (default: family_user)")
    _add_set(prep)
    prep.add_argument("--max-image-side", type=int, help="shrink images to this longer side")
    prep.add_argument("--on-bad-image", choices=("error", "skip"), help="a missing or corrupt image (default: error)")
    prep.add_argument("--scheduler", default="local", help="local (default), synchronous or tcp://HOST:PORT")
    prep.add_argument("--workers", type=int, help="worker processes of --scheduler local (default 2)")
    prep.add_argument("--file-rows", type=int, help="rows per file (default 2,000 with images)")
    prep.add_argument("--include-user", action="store_true", help="also write the raw rights_holder")
    prep.add_argument("--cache-dir", help=_CACHE_HELP)
    prep.add_argument("--replica-note", help="notice at the top of the card")
    prep.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="data/images")
    prep.add_argument("--out-option", action="append", default=[], metavar="KEY=VALUE", help="output storage")
    prep.set_defaults(func=_cmd_prepare)

    push = sub.add_parser("push", help="upload an export folder to the Hugging Face Hub (token: HF_TOKEN)")
    push.add_argument("repo_id", help="namespace/name of the dataset repository")
    push.add_argument("--folder", required=True, help="the export folder")
    push.add_argument("--public", action="store_true", help="make the repository public (default: private)")
    push.add_argument("--allow-images", action="store_true", help="allow Parquet files with image bytes")
    push.add_argument("--dry-run", action="store_true", help="check the folder and list what would be uploaded")
    push.set_defaults(func=_cmd_push)

    demo = sub.add_parser("demo", help="the main job: write the small replica, prepare a config, report clients")
    demo.add_argument("--out", default="inat-fl-demo", help="folder for everything (default: ./inat-fl-demo)")
    demo.add_argument("--scale", default="small", help="replica scale: tiny, small (default) or full")
    demo.add_argument("--config", default="family_user", help="builder config {rank}_{scheme}")
    demo.add_argument("--num-proc", type=int, default=2)
    _add_set(demo)
    demo.set_defaults(func=_cmd_demo)

    sample = sub.add_parser("sample", help="write the synthetic iNat 2021 replica to a folder or fsspec URL")
    sample.add_argument("out", help="folder or fsspec URL (az://container/prefix, memory://x, ...)")
    sample.add_argument("--scale", default="small", help="tiny, small or full (default: small)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--metadata-only", action="store_true", help="write train.json/val.json, no JPEGs")
    sample.add_argument(
        "--tiny-images", action=argparse.BooleanOptionalAction, default=None, help="JPEGs of at most 32 px"
    )
    sample.add_argument("--image-side", type=int, help="longer side of every JPEG in px, e.g. 32 (records follow)")
    sample.add_argument("--processes", type=int, help="JPEG worker processes (default: one per core on local disk)")
    sample.add_argument("--no-summary", action="store_true", help="do not load the replica back and summarise")
    sample.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    sample.set_defaults(func=_cmd_sample)

    meta = sub.add_parser("metadata", help="load metadata (a file or a data folder) and print a summary")
    meta.add_argument("url", help="train.json, val.json.gz, training_image_info.csv, or a data folder")
    meta.add_argument("--split", action="append", help="split(s) of a data folder (default: train, val)")
    meta.add_argument("--on-invalid", choices=("error", "skip"), default="error")
    meta.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    meta.set_defaults(func=_cmd_metadata)

    stats = sub.add_parser("stats", help="partition statistics, plots and the per-user table of a config")
    stats.add_argument("config", help="config name, e.g. family_user, species_geo1k, order_dirichlet")
    stats.add_argument("--data-dir", required=True, help="data folder or fsspec URL (train.json/val.json or CSV)")
    stats.add_argument("--out", required=True, help="local folder for stats.json, the plots and the user CSV")
    stats.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
    _add_set(stats)
    stats.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    stats.set_defaults(func=_cmd_stats)
    card = sub.add_parser("card", help="regenerate the dataset card (README.md for the Hub) and its figure")
    card.add_argument("--data-dir", required=True, help="data folder or fsspec URL (train.json/val.json or CSV)")
    card.add_argument("--config", action="append", help="config(s) of the card (default: those of the committed card)")
    _add_set(card)
    card.add_argument("--out", default="dataset_card.md", help="card file (default: dataset_card.md)")
    card.add_argument("--assets", default=None, help="folder of the figure (default: assets/ next to --out)")
    card.add_argument("--replica-note", default=None, help="say that the numbers come from the synthetic replica")
    card.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
    card.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    card.set_defaults(func=_cmd_card)

    extract = sub.add_parser("extract", help="stream an official .tar.gz into files at any URL, verifying its md5")
    extract.add_argument("archive", help="the archive's URL (train.tar.gz, val.tar.gz, ... on any fsspec URL)")
    extract.add_argument("out", help="the folder (URL) to write the members to, e.g. az://inat/2021")
    extract.add_argument("--md5", help="expected md5 (default: the published one for an official archive name)")
    extract.add_argument("--workers", type=int, default=16, help="concurrent member writes (default 16)")
    extract.add_argument("--json", action="store_true", help="print the report as JSON")
    extract.add_argument("--quiet", action="store_true", help="no progress line")
    extract.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    extract.add_argument(
        "--out-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec option of OUT (default: -o)"
    )
    extract.set_defaults(func=_cmd_extract)

    check = sub.add_parser("check", help="preflight a copy: metadata counts, credentials, a sample of images, timing")
    check.add_argument("data_dir", help="the metadata: a data folder or one metadata file (any fsspec URL)")
    check.add_argument("--images-dir", help="URL of the images, if apart from DATA_DIR")
    check.add_argument("--sample", type=int, default=200, help="images fetched and decoded (default 200)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    check.add_argument(
        "--image-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec option of --images-dir"
    )
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``inat-fl``; project errors print one clear line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (InatError, ValueError) as err:
        print(f"inat-fl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
