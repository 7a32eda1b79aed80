"""``inat-fl extract``: stream an official ``.tar.gz`` into files at any URL, verifying its md5."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from inat_hf.cli import common


def add_parser(sub: Any) -> None:
    """Register ``extract``."""
    parser = sub.add_parser("extract", help="stream an official .tar.gz into files at any URL, verifying its md5")
    parser.add_argument("archive", help="the archive's URL (train.tar.gz, val.tar.gz, ... on any fsspec URL)")
    parser.add_argument("out", help="the folder (URL) to write the members to, e.g. az://inat/2021")
    parser.add_argument("--md5", help="expected md5 (default: the published one for an official archive name)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent member writes (default 16)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    common.add_storage_option(parser, "fsspec option of ARCHIVE (no secrets)")
    parser.add_argument(
        "--out-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec option of OUT (default: -o)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Extract the archive, with a progress line on stderr; print the report."""
    import json

    from inat_hf.realcopy.extract import ExtractReport, extract_archive

    def show(report: ExtractReport) -> None:
        sys.stderr.write(
            f"\r[inat-fl extract] {report.members:,} members ({report.written:,} written, {report.skipped:,} present, "
            f"{report.refused:,} refused), {report.bytes_read / 1e6:,.0f} MB read, "
            f"{report.read_rate / 1e6:,.1f} MB/s   "
        )
        sys.stderr.flush()

    options = common.parse_storage_options(args.option)
    out_options = common.parse_storage_options(args.out_option) if args.out_option else options
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
