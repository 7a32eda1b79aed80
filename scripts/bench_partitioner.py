"""Benchmark ``partitioner``: ``INatPartitioner`` on a split as prepared and as Flower shuffles it.

    python scripts/bench.py partitioner [--data DIR] [--scale full] [--cache DIR] [--calls 200]

The prepared metadata-only ``family_user`` split of ``scripts/bench_clients.py`` (same ``--data`` and
``--cache``; prepared there if missing). Each in a fresh process, from ``builder.as_dataset("train")``
(not timed):

* ``contiguous``: the split as prepared (``INatPartitioner``'s fast path: the ``ClientData`` index, each
  partition a slice of the Arrow table);
* ``grouped``: ``train.shuffle(seed=42)``, what ``FederatedDataset`` does by default (one stable sort of
  the ``client_id`` column read through the indices mapping, each partition ``dataset.select(rows)``).

Timed: the index (``num_partitions``, first use) and then ``load_partition`` for ``--calls`` random
partition ids. The run fails unless both give the same image ids for the partitions it checks. Target:
the grouped index under about 1 s for the full 2.7M rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

from inat_hf.testing.bench import (  # the prepared split of bench_clients.py
    ROOT,
    add_split_arguments,
    ids_digest,
    prepare_split,
    run_main,
    split_builder,
)

CHECKED = 25


def _task(mode: str, params: dict[str, Any]) -> dict[str, Any]:
    from inat_hf.federated.partitioner import INatPartitioner

    train = split_builder(params).as_dataset("train")
    dataset = train.shuffle(seed=42) if mode == "grouped" else train
    partitioner = INatPartitioner()
    partitioner.dataset = dataset
    start = time.perf_counter()
    count = partitioner.num_partitions
    index_seconds = time.perf_counter() - start
    if partitioner.mode != mode:
        raise SystemExit(f"expected the {mode} path, got {partitioner.mode}")
    ids = np.random.default_rng(params["seed"]).choice(count, size=params["calls"], replace=True).tolist()
    seconds, checked = [], []
    for i, pid in enumerate(ids):
        tick = time.perf_counter()
        part = partitioner.load_partition(pid)
        seconds.append(time.perf_counter() - tick)
        if i < CHECKED:
            checked.append(list(part["image_id"]))
    return {
        "mode": mode,
        "rows": dataset.num_rows,
        "partitions": count,
        "index_seconds": index_seconds,
        "load_median_ms": float(np.median(seconds) * 1e3),
        "load_p90_ms": float(np.percentile(seconds, 90) * 1e3),
        "calls": len(seconds),
        "checked_digest": ids_digest(checked),
    }


def _run_child(mode: str, params: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "_child", mode, json.dumps(params)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    if out.returncode:
        raise SystemExit(f"bench task {mode!r} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_partitioner(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ``partitioner`` benchmark; print a table and one JSON line."""
    params = {
        "data": str(args.data),
        "scale": args.scale,
        "cache": str(args.cache),
        "config": args.config,
        "calls": args.calls,
        "seed": args.seed,
    }
    prepare_split(params, args.num_proc)
    runs = {mode: _run_child(mode, params) for mode in ("contiguous", "grouped")}
    if runs["contiguous"]["checked_digest"] != runs["grouped"]["checked_digest"]:
        raise SystemExit(f"the two paths disagree on the partitions' image ids: {runs}")
    result = {
        "bench": "partitioner",
        "config": args.config,
        "rows": runs["grouped"]["rows"],
        "partitions": runs["grouped"]["partitions"],
        **runs,
        "targets_met": {"grouped_index_under_1s": runs["grouped"]["index_seconds"] < 1.0},
    }
    print(f"{args.config}, metadata only: {result['rows']:,} train rows, {result['partitions']:,} partitions")
    print(f"{'path':<50}{'index s':>9}{'load median ms':>16}{'p90 ms':>9}{'calls':>7}")
    labels = {
        "contiguous": "contiguous: the split as prepared",
        "grouped": "grouped: train.shuffle(seed=42) (Flower's default)",
    }
    for mode, run in runs.items():
        print(
            f"{labels[mode]:<50}{run['index_seconds']:>9.3f}{run['load_median_ms']:>16.3f}"
            f"{run['load_p90_ms']:>9.3f}{run['calls']:>7}"
        )
    print(json.dumps(result))
    return result


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``partitioner`` subcommand (``scripts/bench.py`` calls this)."""
    parser = subparsers.add_parser("partitioner", help="INatPartitioner: prepared vs shuffled split")
    add_split_arguments(parser)
    parser.add_argument("--calls", type=int, default=200, help="timed load_partition calls")
    parser.set_defaults(func=bench_partitioner)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_child":
        print(json.dumps(_task(sys.argv[2], json.loads(sys.argv[3]))))
    else:
        run_main(__doc__, add_parser)
