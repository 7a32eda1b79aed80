"""``python scripts/bench.py fetch``: image throughput of ``download_and_prepare`` against raw Azure downloads.

Starts Azurite (the Azure Blob emulator) on a free loopback port, uploads a replica (``--scale small``:
about 3,000 JPEGs) with ``inat_hf.sample.write_sample``, then in the same run measures

* **raw**: every image blob downloaded with ``azure-storage-blob`` (``BlobServiceClient`` from the
  connection string, ``download_blob().readall()``) from a ``ThreadPoolExecutor``: the rate storage gives;
* **prepare**: ``INaturalistFL("family_user", data_dir=az://...).download_and_prepare(num_proc=N)`` for each
  ``--num-proc``, timed after the builder is made (the manifest is built then, not timed), in a fresh cache;
  images = examples written (all splits).

Each of ``--repeat`` rounds runs raw, then every prepare; raw runs once more at the end. The best run of
each kind is shown (the machine may be shared), and the ratio prepare / raw uses the best raw run. The
done-when target of the builder is a ratio of at least 0.8. Each run also reports CPU milliseconds per
image of the client (this process and its workers) and of Azurite: on a busy or small machine, where
both sides compete for the cores, these are steadier than the rates. Prints a table and one JSON line,
like ``bench.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from inat_hf.testing.azurite import running_azurite
from inat_hf.testing.bench import CONTAINER, best_run, builder_prepare, raw_download, run_main

TARGET_RATIO = 0.8


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``fetch`` subcommand on ``bench.py``'s subparsers."""
    parser = subparsers.add_parser("fetch", help="download_and_prepare image throughput vs raw azure-storage-blob")
    parser.add_argument("--scale", default="small", help="replica scale uploaded to Azurite (default small)")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2], help="num_proc values (default 1 2)")
    parser.add_argument("--workers", type=int, default=32, help="threads of the raw download (default 32)")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved rounds; the best of each is shown")
    parser.set_defaults(func=bench_fetch)
    return parser


def bench_fetch(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); print a table and one JSON line."""
    import datasets

    from inat_hf.replica import write_sample

    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="inat-bench-fetch-"))
    raw: list[dict[str, Any]] = []
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in args.num_proc}
    try:
        with running_azurite(work) as server:
            from azure.storage.blob import BlobServiceClient

            connection_string = server.connection_string
            with BlobServiceClient.from_connection_string(connection_string) as service:
                service.create_container(CONTAINER)
            url = f"az://{CONTAINER}/inat"
            start = time.perf_counter()
            counts = write_sample(url, scale=args.scale, storage_options={"connection_string": connection_string})
            upload = time.perf_counter() - start
            for round_ in range(args.repeat):  # interleaved, so that a slow spell hits every kind of run
                raw.append(raw_download(server, "inat/", args.workers))
                for n in args.num_proc:
                    runs[n].append(builder_prepare(url, server, n, work / f"cache-{round_}-{n}"))
            raw.append(raw_download(server, "inat/", args.workers))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best_raw = best_run(raw)
    best = {
        n: {**best_run(r), "ratio_vs_raw": best_run(r)["images_per_s"] / best_raw["images_per_s"]}
        for n, r in runs.items()
    }
    result = {
        "bench": "fetch",
        "scale": args.scale,
        "jpegs": counts.jpegs_written,
        "upload_seconds": upload,
        "raw_workers": args.workers,
        "repeat": args.repeat,
        "raw_best": best_raw,
        "prepare_best": list(best.values()),
        "raw_runs": raw,
        "prepare_runs": [run for r in runs.values() for run in r],
        "target_ratio": TARGET_RATIO,
        "meets_target": all(run["ratio_vs_raw"] >= TARGET_RATIO for run in best.values()),
    }
    mb = 1e6
    print(f"{args.scale} replica: {counts.jpegs_written:,} JPEGs ({best_raw['bytes'] / mb:.1f} MB) in Azurite")
    print(f"best of {args.repeat} interleaved rounds (raw: {len(raw)} runs); ratios against the best raw run")
    print(f"{'run':<46}{'images':>7}{'seconds':>8}{'images/s':>9}{'vs raw':>7}{'CPU ms/image':>13}{'Azurite':>8}")
    rows = [(f"raw azure-storage-blob, {args.workers} threads", {**best_raw, "ratio_vs_raw": 1.0})]
    rows += [(f"download_and_prepare family_user, num_proc={n}", run) for n, run in best.items()]
    for name, run in rows:
        print(f"{name:<46}{run['images']:>7,}{run['seconds']:>8.2f}{run['images_per_s']:>9.0f}"
              f"{run['ratio_vs_raw']:>6.2f}x{run['client_cpu_ms_per_image']:>13.2f}"
              f"{run['azurite_cpu_ms_per_image']:>8.2f}")  # fmt: skip
    print(f"target: prepare >= {TARGET_RATIO}x raw: {'met' if result['meets_target'] else 'NOT met'}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_main(__doc__, add_parser)
