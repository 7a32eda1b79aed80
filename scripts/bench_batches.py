"""Benchmark ``batches``: every client of a split, ``batch(by_column="client_id")`` vs ``ClientData.client``.

    python scripts/bench.py batches [--source prepared|export] [--data DIR] [--scale small] [--batch-size 1000]

``--source prepared`` (default): ``inat-fl prepare``'s output with the image bytes of the replica at ``--data``
(default ``bench_out/batches/replica-SCALE``, written with its JPEGs if missing), ``--file-rows`` rows a
file so that clients meet file and row-group boundaries, in ``bench_out/batches/`` (a rerun reuses it).
``--source export``: the manifest-only ``inat-fl export`` of ``--data`` (default ``bench_out/SCALE``, the
other benchmarks' replica; metadata only is enough; ``--scale full``: 2.7M rows, 158,873 clients).

``datasets.load_dataset(OUT, config, split="train")`` is run once into a fresh cache (not timed). Then, each
in a fresh process, with the images as bytes (``Image(decode=False)``: decoding costs the same either way):

* ``client``: ``ClientData(train)`` and ``client(c)[:]`` (every column as Python lists) for every client;
* ``batch``: ``train.batch(by_column="client_id", batch_size=B)`` and every batch read (its ``map`` writes
  a batched copy of the split into the cache: its size is reported);
* ``stream``: the same on ``load_dataset(..., streaming=True)``, straight from the Parquet files.

Timed: the first client (from the start) and the whole pass; the cost per client is the pass over the
number of clients, compared with ``client`` in the same run. Each way runs ``--repeat`` times, interleaved
(each ``batch`` with a new fingerprint, so that it writes its copy again); the run with the median pass
is shown. The run fails unless every run gives every client once, in the same order, with the same image ids.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from inat_hf.testing.bench import run_main

ROOT = Path(__file__).resolve().parents[1]
MODES = ("client", "batch", "stream")


def _load(params: dict[str, Any], streaming: bool) -> Any:
    import datasets

    loaded = datasets.load_dataset(
        params["out"], params["config"], split="train", streaming=streaming, cache_dir=params["hf_cache"]
    )
    if "image" in loaded.features:
        loaded = loaded.decode(False) if streaming else loaded.cast_column("image", datasets.Image(decode=False))
    return loaded


def _task(mode: str, params: dict[str, Any]) -> dict[str, Any]:
    """Load the split (not timed), then time the first client and the pass over every client."""
    import hashlib

    from inat_hf.federated import compat as datasets_compat

    if mode != "client" and (missing := datasets_compat.batch_by_column_missing()):
        raise SystemExit(missing)
    train = _load(params, streaming=mode == "stream")
    digest, count, rows, first = hashlib.sha256(), 0, 0, 0.0
    start = time.perf_counter()
    if mode == "client":
        from inat_hf.federated.clients import ClientData

        clients = ClientData(train)
        parts = (clients.client(cid)[:] for cid in clients.client_ids.tolist())
    else:
        # A new fingerprint: a repeat must not reuse the batched copy that an earlier one left in the cache.
        options = {"new_fingerprint": uuid.uuid4().hex} if mode == "batch" else {}
        batched = train.batch(by_column="client_id", batch_size=params["batch_size"], **options)
        parts = iter(batched)
    for part in parts:
        if not count:
            first = time.perf_counter() - start
        (cid,) = set(part["client_id"])
        digest.update(f"{cid}:{part['image_id']}|".encode())
        count, rows = count + 1, rows + len(part["image_id"])
    seconds = time.perf_counter() - start
    copy = sum(os.path.getsize(f["filename"]) for f in batched.cache_files) if mode == "batch" else 0
    return {
        "mode": mode,
        "clients": count,
        "rows": rows,
        "first_client_seconds": first,
        "pass_seconds": seconds,
        "per_client_ms": seconds / max(count, 1) * 1e3,
        "copy_bytes": copy,
        "digest": digest.hexdigest()[:16],
    }


def _child(mode: str, params_json: str) -> None:
    print(json.dumps(_task(mode, json.loads(params_json))))


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


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median pass time (its own first-client time), and every pass time."""
    ordered = sorted(runs, key=lambda run: run["pass_seconds"])
    return {**ordered[len(ordered) // 2], "pass_seconds_all": [run["pass_seconds"] for run in runs]}


def _write_output(args: argparse.Namespace, out: Path) -> None:
    """The replica at ``--data`` if missing, then the export or prepare's output at ``out`` (reused)."""
    images = args.source == "prepared"
    data = Path(args.data or ROOT / "bench_out" / (f"batches/replica-{args.scale}" if images else args.scale))
    if not (data / "train.json").exists():
        from inat_hf.replica import write_sample

        print(f"writing the {args.scale!r} replica to {data} ...", file=sys.stderr)
        write_sample(str(data), scale=args.scale, metadata_only=not images, progress=True)
    cache = str(ROOT / "bench_out" / "batches" / "manifests")
    if images:
        from inat_hf.prepare import prepare

        prepare(str(out), str(data), [args.config], cache_dir=cache, scheduler="synchronous", file_rows=args.file_rows)
    elif not (out / "README.md").exists():
        from inat_hf.hub.folder import export_dataset

        export_dataset(str(out), str(data), [args.config], cache_dir=cache)


def bench_batches(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ``batches`` benchmark; print a table and one JSON line."""
    out = ROOT / "bench_out" / "batches" / f"{args.source}-{args.scale}"
    _write_output(args, out)
    with tempfile.TemporaryDirectory(prefix="bench-batches-") as hf_cache:
        params = {"out": str(out), "config": args.config, "hf_cache": hf_cache, "batch_size": args.batch_size}
        start = time.perf_counter()
        train = _load(params, streaming=False)  # Parquet -> the Arrow cache, once, for every task
        load_seconds = time.perf_counter() - start
        split_bytes = sum(os.path.getsize(f["filename"]) for f in train.cache_files)
        repeats = [{mode: _run_child(mode, params) for mode in MODES} for _ in range(args.repeat)]
    runs = {mode: _median_run([r[mode] for r in repeats]) for mode in MODES}
    files = len(list((out / "data" / args.config).glob("train-*.parquet")))
    if len({(run["clients"], run["rows"], run["digest"]) for r in repeats for run in r.values()}) != 1:
        raise SystemExit(f"the three ways disagree on the clients: {repeats}")
    base = runs["client"]["per_client_ms"]
    result = {"bench": "batches", "source": args.source, "out": str(out), "config": args.config, "files": files,
              "rows": runs["client"]["rows"], "clients": runs["client"]["clients"], "batch_size": args.batch_size,
              "repeat": args.repeat, "load_seconds": load_seconds, "split_bytes": split_bytes, "runs": runs,
              "per_client_ratio": {m: runs[m]["per_client_ms"] / base for m in MODES}}  # fmt: skip
    print(
        f"{args.source} of {out.name}: {result['rows']:,} train rows, {result['clients']:,} clients, {files} files, "
        f"{split_bytes / 2**20:,.1f} MiB as Arrow (load_dataset {load_seconds:.1f} s, not timed)"
    )
    print(f"{'way':<52}{'first client s':>15}{'pass s':>9}{'ms/client':>11}{'x client':>10}{'copy MiB':>10}")
    labels = {
        "client": "ClientData(train).client(c)[:]",
        "batch": f'train.batch(by_column="client_id", batch_size={args.batch_size})',
        "stream": "streaming=True, then the same .batch(...)",
    }
    for mode, run in runs.items():
        print(
            f"{labels[mode]:<52}{run['first_client_seconds']:>15.3f}{run['pass_seconds']:>9.2f}"
            f"{run['per_client_ms']:>11.3f}{result['per_client_ratio'][mode]:>10.2f}{run['copy_bytes'] / 2**20:>10.1f}"
        )
    print(json.dumps(result))
    return result


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``batches`` subcommand (``scripts/bench.py`` calls this)."""
    parser = subparsers.add_parser("batches", help='batch(by_column="client_id") vs ClientData.client')
    parser.add_argument("--source", choices=("prepared", "export"), default="prepared")
    parser.add_argument("--data", default=None, help="replica folder (written if missing; default: see above)")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--config", default="family_user")
    parser.add_argument("--file-rows", type=int, default=500, help="rows a file of prepare's output")
    parser.add_argument("--batch-size", type=int, default=1000, help="batch(by_column=..., batch_size=...)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way (interleaved); the median is shown")
    parser.set_defaults(func=bench_batches)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_child":
        _child(sys.argv[2], sys.argv[3])
    else:
        run_main(__doc__, add_parser)
