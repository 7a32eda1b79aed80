"""``python scripts/bench.py prepare``: ``inat-fl prepare`` on Dask against the builder and raw downloads.

One run measures three things.

* **images** (small replica in Azurite, as ``bench.py fetch``): images/s of ``prepare`` on a ``LocalCluster``
  of 2 worker processes (one thread each; the cluster started and warmed before the clock), of the builder's
  ``download_and_prepare(num_proc=2)``, and of raw ``azure-storage-blob`` downloads from a thread pool;
  ``--repeat`` interleaved rounds, the best of each kind. Both prepares start from a cached manifest.
* **driver** (full replica metadata, 2,686,843 train rows; no JPEGs exist at that scale, so the files are
  written without images, with the image default of 2,000 rows per file: the same plan and task count as the
  real job): seconds from the call to the first task submitted, less the ``LocalCluster``'s start (planning),
  and the driver's peak RSS (``VmHWM``: its workers are not counted), manifest cached first (untimed).
* **worker RSS**: the peak RSS of the workers (fresh 2-worker cluster each time) for two file sizes with
  images (small replica) and, without images, for the same file size on the small and the full replica.

``--task-rss`` measures instead one prepare task alone, ``run_file`` in a fresh process each (its own peak RSS,
``VmHWM``), on a file of ONE client of 300, 3,000 and 30,000 image rows (``--task-rows``): the small replica's
train rows repeated, its JPEGs read from local disk. The 300-row task is the baseline: a worker's memory is
bounded by a batch (``--batch-rows``), not by a client, when the ratios stay near 1.

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from inat_hf.testing.azurite import AzuriteServer, running_azurite
from inat_hf.testing.bench import CONTAINER, Meter, best_run, builder_prepare, raw_download, run_main

ROOT = Path(__file__).resolve().parents[1]
IMAGES_TARGET_VS_BUILDER = 0.9
IMAGES_TARGET_VS_RAW = 0.8
FIRST_TASK_TARGET_S = 10.0
DRIVER_RSS_TARGET = 4 * 2**30


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``prepare`` subcommand on ``bench.py``'s subparsers."""
    parser = subparsers.add_parser("prepare", help="prepare on Dask vs the builder vs raw downloads; driver at scale")
    parser.add_argument("--scale", default="small", help="replica uploaded to Azurite (default small)")
    parser.add_argument("--full", default="bench_out/full", help="full replica metadata (written if missing)")
    parser.add_argument("--workers", type=int, default=32, help="threads of the raw download (default 32)")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved rounds; the best of each is shown")
    parser.add_argument("--skip-full", action="store_true", help="leave out the full-scale driver measures")
    parser.add_argument("--only-full", action="store_true", help="only the full-scale driver measures")
    parser.add_argument("--task-rss", action="store_true", help="only the peak RSS of one task per client size")
    parser.add_argument("--task-rows", default="300,3000,30000", help="rows of the one client of each task")
    parser.add_argument("--batch-rows", type=int, help="rows per batch of a task (default: prepare's, 256)")
    parser.add_argument("--data", help="--task-rss: a replica with JPEGs to use (default: write the small one)")
    parser.set_defaults(func=bench_mode)
    return parser


def dask_prepare(url: str, server: AzuriteServer, client: Any, out: Path, cache: Path) -> dict[str, Any]:
    """Time ``prepare`` of ``family_user`` from Azurite on ``client``'s cluster (manifest already cached)."""
    from inat_hf.prepare import prepare

    options = {"connection_string": server.connection_string}
    with Meter(server) as meter:
        report = prepare(str(out), url, ["family_user"], storage_options=options, cache_dir=str(cache),
                         scheduler=client, progress=None)  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    return meter.result(report["totals"]["rows_written"], files=report["files_planned"],
                        worker_peak_rss=report["worker_peak_rss"])  # fmt: skip


def _child(code: str, *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh Python (its own peak RSS); it prints one JSON line last."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


_DRIVER = """
import json, sys, threading, time
if __name__ == "__main__":
    from inat_hf.prepare import prepare
    from inat_hf.prepare.task import peak_rss

    def rss():
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))

    samples, marks, stop = [], [], threading.Event()

    class Lines:  # the progress stream: the driver's RSS at each "N/M files" line
        def write(self, text):
            if "files (" in text:
                marks.append((time.perf_counter(), rss()))
        def flush(self):
            pass

    def sample():  # the driver's RSS every 50 ms, for the peaks of each phase
        while not stop.wait(0.05):
            samples.append((time.perf_counter(), rss()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    data, out, cache, rows, images = sys.argv[1:6]
    report = prepare(out, data, ["family_user"], cache_dir=cache, scheduler="local", workers=2,
                     file_rows=int(rows), overrides=None if images == "yes" else {"with_images": False},
                     progress=Lines())
    prepared, prepare_peak = time.perf_counter(), peak_rss()
    from inat_hf.hub.folder import write_card
    write_card(out, data, report, cache_dir=cache)  # the card, as inat-fl prepare writes it: in the driver's peak
    stop.set()
    sampler.join()
    during = [r for t, r in samples if marks[0][0] <= t <= marks[-1][0]] or [marks[-1][1]]
    card = [r for t, r in samples if t > prepared] or [rss()]
    print(json.dumps({"seconds": report["seconds"], "first_task_s": report["seconds_to_first_task"],
                      "planning_s": report["planning_seconds"], "cluster_start_s": report["cluster_start_seconds"],
                      "driver_peak_rss": peak_rss(), "worker_peak_rss": report["worker_peak_rss"],
                      "driver_peak_rss_prepare": prepare_peak,
                      "driver_rss_first_line": marks[0][1], "driver_rss_last_line": marks[-1][1],
                      "driver_peak_rss_tasks": max(during), "progress_lines": len(marks),
                      "driver_rss_card_start": card[0], "driver_peak_rss_card": max(card),
                      "files": report["files_planned"], "rows": report["totals"]["rows_written"]}))
"""
_MANIFEST = """
import sys
from inat_hf.config import config_for
from inat_hf.manifest import load_or_build_manifest
for images in (True, False):
    load_or_build_manifest(sys.argv[1], config_for("family_user", with_images=images), cache_dir=sys.argv[2])
print("{}")
"""


def driver_run(data: str, work: Path, name: str, rows: int, images: bool) -> dict[str, Any]:
    """One prepare in a child process (LocalCluster of 2), the manifest cached first."""
    cache = work / f"cache-{Path(data).name}"
    _child(_MANIFEST, data, str(cache))
    out = work / f"out-{name}"
    result = _child(_DRIVER, data, str(out), str(cache), str(rows), "yes" if images else "no")
    shutil.rmtree(out, ignore_errors=True)
    return {"run": name, "file_rows": rows, "images": images, **result}


def bench_mode(args: argparse.Namespace) -> dict[str, Any]:
    """Run the mode asked for: ``--only-full``, ``--task-rss`` or the whole benchmark."""
    import datasets

    datasets.disable_progress_bars()
    if args.only_full:
        return _only_full(args)
    if args.task_rss:
        return _task_rss(args)
    return bench_prepare(args)


def bench_prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); print a table and one JSON line."""
    from distributed import Client, LocalCluster

    from inat_hf.config import config_for
    from inat_hf.manifest import load_or_build_manifest
    from inat_hf.replica import write_sample

    work = Path(tempfile.mkdtemp(prefix="inat-bench-prepare-"))
    runs: dict[str, list[dict[str, Any]]] = {"raw": [], "builder": [], "dask": []}
    scale: list[dict[str, Any]] = []
    try:
        local_small = work / "small"
        write_sample(str(local_small), scale=args.scale)
        scale.append(driver_run(str(local_small), work, "images, 300 rows/file", 300, True))
        scale.append(driver_run(str(local_small), work, "images, 3,000 rows/file", 3000, True))
        scale.append(driver_run(str(local_small), work, "no images, small replica", 2000, False))
        with running_azurite(work / "azurite") as server:
            from azure.storage.blob import BlobServiceClient

            options = {"connection_string": server.connection_string}
            with BlobServiceClient.from_connection_string(server.connection_string) as service:
                service.create_container(CONTAINER)
            url = f"az://{CONTAINER}/inat"
            counts = write_sample(url, scale=args.scale, storage_options=options)
            load_or_build_manifest(url, config_for("family_user"), options, cache_dir=str(work / "dask-cache"))
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            with cluster, Client(cluster) as client:
                client.run(lambda: __import__("inat_hf.prepare.task"))  # warm: imports datasets, pyarrow
                for round_ in range(args.repeat):
                    runs["raw"].append(raw_download(server, "inat/", args.workers))
                    runs["builder"].append(builder_prepare(url, server, 2, work / f"builder-{round_}"))
                    runs["dask"].append(dask_prepare(url, server, client, work / f"out-{round_}", work / "dask-cache"))
                runs["raw"].append(raw_download(server, "inat/", args.workers))
        if not args.skip_full:
            full = Path(args.full)
            if not (full / "train.json").is_file():
                write_sample(str(full), scale="full", metadata_only=True)
            scale.append(driver_run(str(full), work, "no images, full replica", 2000, False))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {kind: best_run(r) for kind, r in runs.items()}
    dask_rate = best["dask"]["images_per_s"]
    ratios = {
        "vs_builder": dask_rate / best["builder"]["images_per_s"],
        "vs_raw": dask_rate / best["raw"]["images_per_s"],
    }
    full_run = next((r for r in scale if r["run"].endswith("full replica")), None)
    result = {
        "bench": "prepare",
        "scale": args.scale,
        "jpegs": counts.jpegs_written,
        "repeat": args.repeat,
        "best": best,
        "ratios": ratios,
        "runs": runs,
        "scale_runs": scale,
        "load_average": list(os.getloadavg()),
        "meets_images_target": ratios["vs_builder"] >= IMAGES_TARGET_VS_BUILDER
        and ratios["vs_raw"] >= IMAGES_TARGET_VS_RAW,
        "meets_driver_target": None
        if full_run is None
        else full_run["first_task_s"] <= FIRST_TASK_TARGET_S and full_run["driver_peak_rss"] < DRIVER_RSS_TARGET,
    }
    print(f"{args.scale} replica: {counts.jpegs_written:,} JPEGs in Azurite; best of {args.repeat} interleaved rounds")
    print(f"{'run':<52}{'images':>7}{'seconds':>8}{'images/s':>9}{'CPU ms/img':>11}{'Azurite':>8}")
    names = {"raw": f"raw azure-storage-blob, {args.workers} threads", "builder": "download_and_prepare, num_proc=2",
             "dask": "prepare, LocalCluster 2 workers x 1 thread"}  # fmt: skip
    for kind, run in best.items():
        print(f"{names[kind]:<52}{run['images']:>7,}{run['seconds']:>8.2f}{run['images_per_s']:>9.0f}"
              f"{run['client_cpu_ms_per_image']:>11.2f}{run['azurite_cpu_ms_per_image']:>8.2f}")  # fmt: skip
    print(f"prepare / builder {ratios['vs_builder']:.2f}x (target {IMAGES_TARGET_VS_BUILDER}), "
          f"prepare / raw {ratios['vs_raw']:.2f}x (target {IMAGES_TARGET_VS_RAW})")  # fmt: skip
    _print_scale(scale)
    print(json.dumps(result))
    return result


def _only_full(args: argparse.Namespace) -> dict[str, Any]:
    """The full-scale driver measure alone (``--only-full``)."""
    from inat_hf.replica import write_sample

    full = Path(args.full)
    if not (full / "train.json").is_file():
        write_sample(str(full), scale="full", metadata_only=True)
    work = Path(tempfile.mkdtemp(prefix="inat-bench-prepare-"))
    try:
        scale = [driver_run(str(full), work, "no images, full replica", 2000, False)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _print_scale(scale)
    result = {"bench": "prepare", "scale_runs": scale, "load_average": list(os.getloadavg())}
    print(json.dumps(result))
    return result


def _print_scale(scale: list[dict[str, Any]]) -> None:
    gib = 2**30
    print(f"{'run (LocalCluster of 2)':<36}{'files':>6}{'rows':>10}{'planning s':>11}{'+ cluster s':>12}"
          f"{'driver RSS':>11}{'worker RSS':>11}{'seconds':>8}")  # fmt: skip
    for run in scale:
        driver, worker = run["driver_peak_rss"] / gib, run["worker_peak_rss"] / gib
        print(f"{run['run']:<36}{run['files']:>6}{run['rows']:>10,}{run['planning_s']:>11.2f}{run['cluster_start_s']:>12.2f}"
              f"{driver:>10.2f}G{worker:>10.2f}G{run['seconds']:>8.1f}")  # fmt: skip
    if not all("driver_peak_rss_tasks" in run for run in scale):
        return
    print("driver RSS (GiB): while the tasks run (first progress line, last, peak), peak of prepare(), then the card")
    for run in scale:
        first, last, peak, prep, card0, card = (run[k] / gib for k in (
            "driver_rss_first_line", "driver_rss_last_line", "driver_peak_rss_tasks", "driver_peak_rss_prepare",
            "driver_rss_card_start", "driver_peak_rss_card"))  # fmt: skip
        print(f"{run['run']:<36}{first:>7.2f}G{last:>7.2f}G{peak:>7.2f}G (growth {last - first:+.2f}G)  "
              f"prepare() {prep:.2f}G  card {card0:.2f}G -> {card:.2f}G")  # fmt: skip


_TASK = """
import dataclasses, json, sys, time
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from inat_hf import storage
from inat_hf.config import config_for
from inat_hf.export.files import client_pseudonyms
from inat_hf.manifest import load_or_build_manifest
from inat_hf.prepare import Settings, plan_files, run_file
from inat_hf.prepare.rows import write_copy
from inat_hf.prepare.task import peak_rss

def rss():
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))

data, cache, out, rows, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
config = config_for("family_user")
manifest = load_or_build_manifest(data, config, cache_dir=cache)
settings = Settings(out, data, **({} if batch == "default" else {"batch_rows": int(batch)}))
first = next(t for t in plan_files(manifest, config, settings, file_rows=10**9) if t.split == "train")
train = manifest.table.slice(first.start, first.rows_in)
table = train.take(pa.array(np.arange(rows) % train.num_rows))  # the train rows repeated: ONE client
for name in ("client_id", "user"):
    table = table.set_column(table.column_names.index(name), name, pa.array([train[name][0].as_py()] * rows,
                             type=train.schema.field(name).type))
task = dataclasses.replace(first, stop=first.start + rows, rows_index=0)
names = client_pseudonyms(table, config)
write_copy(storage.resolve(out), [task], [table], manifest.label_names, names)  # the task reads its rows from it
del manifest, train, table
before, began = rss(), time.perf_counter()
result = run_file(task)
seconds = time.perf_counter() - began
meta = pq.ParquetFile(out + "/" + task.relative).metadata
print(json.dumps({"rows": rows, "rows_written": result["rows_written"], "bytes": result["bytes"],
                  "row_groups": meta.num_row_groups, "seconds": seconds, "rss_before_task": before,
                  "peak_rss": peak_rss(), "batch_rows": getattr(settings, "batch_rows", None)}))
"""


def _task_rss(args: argparse.Namespace) -> dict[str, Any]:
    """``--task-rss``: one task per client size, each in a fresh process (module docstring)."""
    from inat_hf.config import config_for
    from inat_hf.manifest import load_or_build_manifest
    from inat_hf.replica import write_sample

    work = Path(tempfile.mkdtemp(prefix="inat-bench-task-rss-"))
    try:
        data = args.data or str(work / "small")
        if args.data is None:
            write_sample(data, scale="small")
        load_or_build_manifest(data, config_for("family_user"), cache_dir=str(work / "cache"))
        batch = "default" if args.batch_rows is None else str(args.batch_rows)
        runs = []
        for rows in [int(r) for r in args.task_rows.split(",")]:
            out = work / f"out-{rows}"
            runs.append(_child(_TASK, data, str(work / "cache"), str(out), str(rows), batch))
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = runs[0]["peak_rss"]
    mib = 2**20
    print(f"one prepare task, one client, replica JPEGs; batch_rows={runs[0]['batch_rows']}")
    print(f"{'rows':>8}{'file MiB':>10}{'row groups':>11}{'seconds':>9}{'RSS before':>11}{'peak RSS':>10}{'ratio':>7}")
    for run in runs:
        run["ratio_to_first"] = run["peak_rss"] / base
        before, peak = run["rss_before_task"] / mib, run["peak_rss"] / mib
        print(f"{run['rows']:>8,}{run['bytes'] / mib:>10.1f}{run['row_groups']:>11,}{run['seconds']:>9.1f}"
              f"{before:>10.0f}M{peak:>9.0f}M{run['ratio_to_first']:>7.2f}")  # fmt: skip
    result = {"bench": "prepare-task-rss", "runs": runs, "load_average": list(os.getloadavg())}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_main(__doc__, add_parser)
