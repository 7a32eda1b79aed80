"""Benchmark ``clients``: one client out of a prepared split, ``ClientData`` against Flower.

    python scripts/bench.py clients [--data DIR] [--scale full] [--cache DIR] [--calls 1000]

On the replica's metadata (written to ``--data`` if missing; ``--scale full`` is iNat 2021's 2.7M train
rows and 158,873 users), ``INaturalistFL(config_name="family_user", with_images=False)`` is prepared once
into ``--cache`` (reruns reuse it). Then, each in a fresh process and starting from the prepared
``train`` split (``builder.as_dataset("train")``, not timed):

* ours: ``ClientData(train)`` (client index from the ``client_id`` column) and its first ``client(c)``;
  then ``client(c)`` for ``--calls`` random client ids, each timed;
* Flower: ``NaturalIdPartitioner(partition_by="user")`` over the same split and its first
  ``load_partition`` (which builds its partition maps); then ``load_partition`` for the same ids.

With ``--shards N``, both read the same split laid out as ``load_dataset`` lays out the prepared files with
image bytes at full size instead (not timed; cached next to ``--cache``): ``N`` Arrow files (one per 500 MB:
7 for the 2.7M rows with their 32 px JPEGs) of record batches of ``--batch-rows`` rows (from the Parquet row
groups, at most 256 rows with images), which ``datasets`` reads as one ``ConcatenationTable`` (the full run's
split: 51,155 chunks per column; ``--shards 6 --batch-rows 80``: 33,588).

Partition ``i`` of Flower (the ``i``-th user name in sorted order) is client ``i`` of ``family_user``;
the run fails if the two disagree on the image ids of the clients it checks. Targets: our first client
at least 20x sooner than Flower's, ``client(c)`` median under 1 ms and no slower than Flower's later calls.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from inat_hf.testing.bench import ROOT, add_split_arguments, ids_digest, prepare_split, run_main, split_builder

CHECKED_CLIENTS = 25
"""Clients (of the timed ones) whose image ids must agree between ours and Flower's."""


def _split(params: dict[str, Any]) -> Any:
    """The prepared train split, or its copy laid out in shards of small batches (``--shards``)."""
    if params.get("relaid"):
        import datasets

        files = sorted(Path(params["relaid"]).glob("*.arrow"))
        return datasets.concatenate_datasets([datasets.Dataset.from_file(str(f)) for f in files])
    return split_builder(params).as_dataset("train")


def _relay(params: dict[str, Any], shards: int, batch_rows: int) -> str:
    """Write the prepared train split again as ``shards`` Arrow files of ``batch_rows``-row record batches
    (``datasets``' own writers re-batch to 1,000 rows, so the files are written here; ``_split`` reads them as
    ``load_dataset`` reads its shards: ``Dataset.from_file`` each, then ``concatenate_datasets``).
    """
    import pyarrow as pa

    cache = Path(params["cache"])
    folder = cache.with_name(f"{cache.name}-{params['config']}-{shards}x{batch_rows}")
    if not (folder / "complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        table = split_builder(params).as_dataset("train").data.table.combine_chunks()
        bounds = np.linspace(0, table.num_rows, shards + 1).astype(int)
        for i, (start, stop) in enumerate(itertools.pairwise(bounds.tolist())):
            with pa.ipc.new_stream(str(folder / f"train-{i:05d}-of-{shards:05d}.arrow"), table.schema) as out:
                for batch in table.slice(start, stop - start).to_batches(max_chunksize=batch_rows):
                    out.write_batch(batch)
        (folder / "complete").touch()
    return str(folder)


def _task(which: str, params: dict[str, Any]) -> dict[str, Any]:
    """Load the prepared split (not timed), then time the first client and the later calls."""
    train = _split(params)
    gc.collect()  # the builder and its manifest go now, not during the timed part
    if which == "ours":
        from inat_hf.federated.clients import ClientData

        start = time.perf_counter()
        clients = ClientData(train)
        first = clients.client(int(clients.client_ids[0]))
        first_seconds = time.perf_counter() - start
        load, count = clients.client, clients.num_clients
    else:
        from flwr_datasets.partitioner import NaturalIdPartitioner

        partitioner = NaturalIdPartitioner(partition_by="user")
        partitioner.dataset = train
        start = time.perf_counter()
        first = partitioner.load_partition(0)
        first_seconds = time.perf_counter() - start
        load, count = partitioner.load_partition, partitioner.num_partitions
    ids = np.random.default_rng(params["seed"]).choice(count, size=params["calls"], replace=True).tolist()
    seconds, checked = [], []
    for i, cid in enumerate(ids):
        tick = time.perf_counter()
        part = load(cid)
        seconds.append(time.perf_counter() - tick)
        if i < CHECKED_CLIENTS:
            checked.append(list(part["image_id"]))
    return {
        "rows": train.num_rows,
        "clients": count,
        "first_client_rows": first.num_rows,
        "first_seconds": first_seconds,
        "call_median_ms": float(np.median(seconds) * 1e3),
        "call_p90_ms": float(np.percentile(seconds, 90) * 1e3),
        "call_mean_ms": float(np.mean(seconds) * 1e3),
        "calls": len(seconds),
        "checked_digest": ids_digest(checked),
        "layout": {
            "table": type(train.data).__name__,
            "files": len(train.cache_files),
            "chunks": train.data.table.column(0).num_chunks,
        },
    }


def _child(which: str, params_json: str) -> None:
    print(json.dumps({"task": which, **_task(which, json.loads(params_json))}))


def _run_child(which: str, params: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "_child", which, json.dumps(params)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    if out.returncode:
        raise SystemExit(f"bench task {which!r} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_clients(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ``clients`` benchmark; print a table and one JSON line."""
    params = {
        "data": str(args.data),
        "scale": args.scale,
        "cache": str(args.cache),
        "config": args.config,
        "calls": args.calls,
        "seed": args.seed,
    }
    prepare = prepare_split(params, args.num_proc)
    if args.shards:
        params["relaid"] = _relay(params, args.shards, args.batch_rows)
    ours, flower = _run_child("ours", params), _run_child("flower", params)
    if (ours["clients"], ours["checked_digest"]) != (flower["clients"], flower["checked_digest"]):
        raise SystemExit(f"ours and Flower disagree on the clients: ours {ours}, Flower {flower}")
    first_ratio = flower["first_seconds"] / ours["first_seconds"]
    call_ratio = flower["call_median_ms"] / ours["call_median_ms"]
    result = {
        "bench": "clients",
        "config": args.config,
        "data": params["data"],
        "rows": ours["rows"],
        "clients": ours["clients"],
        "layout": ours["layout"],
        "prepare": prepare,
        "ours": ours,
        "flower": flower,
        "first_client_speedup": first_ratio,
        "call_median_speedup": call_ratio,
        "targets_met": {
            "first_client_20x_sooner": first_ratio >= 20,
            "call_median_under_1ms": ours["call_median_ms"] < 1.0,
            "call_median_not_slower_than_flower": ours["call_median_ms"] <= flower["call_median_ms"],
        },
    }
    state = "cached" if prepare["was_cached"] else "prepared now"
    print(
        f"{args.config}, metadata only: {ours['rows']:,} train rows, {ours['clients']:,} clients "
        f"({state}: builder {prepare['builder_init_seconds']:.1f} s, prepare {prepare['prepare_seconds']:.1f} s)"
    )
    layout = ours["layout"]
    print(f"split read as a {layout['table']} of {layout['files']} file(s), {layout['chunks']:,} chunks per column")
    print(f"{'task':<44}{'first client s':>15}{'median ms':>11}{'p90 ms':>9}{'mean ms':>9}{'calls':>7}")
    labels = {"ours": "ours: ClientData(train).client(c)", "flower": 'flwr NaturalIdPartitioner("user")'}
    for name, run in (("ours", ours), ("flower", flower)):
        print(
            f"{labels[name]:<44}{run['first_seconds']:>15.3f}{run['call_median_ms']:>11.3f}{run['call_p90_ms']:>9.3f}"
            f"{run['call_mean_ms']:>9.3f}{run['calls']:>7}"
        )
    print(f"first client: {first_ratio:.0f}x sooner; later calls (median): {call_ratio:.1f}x faster")
    print(json.dumps(result))
    return result


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``clients`` subcommand (``scripts/bench.py`` calls this)."""
    parser = subparsers.add_parser("clients", help="ClientData.client vs Flower's NaturalIdPartitioner")
    add_split_arguments(parser)
    parser.add_argument("--calls", type=int, default=1000, help="timed calls after the first")
    parser.add_argument("--shards", type=int, default=0, help="lay the split out in N Arrow files (0: as prepared)")
    parser.add_argument("--batch-rows", type=int, default=256, help="rows per record batch with --shards")
    parser.set_defaults(func=bench_clients)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_child":
        _child(sys.argv[2], sys.argv[3])
    else:
        run_main(__doc__, add_parser)
