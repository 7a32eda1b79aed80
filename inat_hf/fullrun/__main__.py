"""``python -m inat_hf.fullrun {run,prepare,load,summary}``: the stage runners of ``scripts/full_run.sh``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(prog="python -m inat_hf.fullrun", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a command watched (peak RSS of its processes); report on success")
    run.add_argument("--stage", required=True, help="the stage's name, e.g. 1-replica")
    run.add_argument("--report", required=True, help="the stage report (JSON) to write")
    run.add_argument("--kind", choices=("replica", "check", "train", "load"), default="", help="what to read back")
    run.add_argument("--data", help="replica: its folder; check, train, load: the JSON file the command writes")
    run.add_argument("--stdout", help="a file for the command's standard output")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    prep = sub.add_parser("prepare", help="stage 3: prepare on a Dask cluster, killed part-way and resumed")
    prep.add_argument("--stage", default="3-prepare")
    prep.add_argument("--report", required=True)
    prep.add_argument("--data", required=True, help="the replica (metadata and images)")
    prep.add_argument("--out", required=True, help="the prepared output folder (local)")
    prep.add_argument("--config", default="family_user")
    prep.add_argument("--cache-dir", required=True, help="the manifest cache")
    prep.add_argument("--file-rows", type=int, default=2_000)
    prep.add_argument("--kill-after", type=int, required=True, help="SIGKILL the run when this many files exist")
    prep.add_argument("--sample", type=int, default=3, help="files of each run rewritten from scratch elsewhere")
    load = sub.add_parser("load", help="stage 4: load_dataset, ClientData over all clients, read_client")
    load.add_argument("prepared")
    load.add_argument("--config", default="family_user")
    load.add_argument("--cache-dir", required=True, help="the datasets cache")
    load.add_argument("--result", required=True, help="the JSON file to write")
    summary = sub.add_parser("summary", help="the markdown table of the stage reports")
    summary.add_argument("reports", help="the folder of the stage reports")
    summary.add_argument("--title", default="")
    summary.add_argument("--out", help="also write the table to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; return its exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from inat_hf.fullrun.stages import run_stage

        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            raise SystemExit("run: give the command after --")
        return run_stage(args.stage, args.report, command, kind=args.kind, data=args.data, stdout=args.stdout)
    if args.command == "prepare":
        from inat_hf.fullrun.cluster import prepare_stage

        prepare_stage(args.stage, args.report, data=args.data, out=args.out, config=args.config,
                      cache_dir=args.cache_dir, file_rows=args.file_rows, kill_after=args.kill_after,
                      sample=args.sample)  # fmt: skip
        return 0
    if args.command == "load":
        from inat_hf.fullrun.stages import load_stage

        load_stage(args.prepared, args.config, args.cache_dir, args.result)
        return 0
    from inat_hf.fullrun.reports import read_reports, summary_table

    table = summary_table(read_reports(args.reports), args.title)
    if args.out:
        Path(args.out).write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
