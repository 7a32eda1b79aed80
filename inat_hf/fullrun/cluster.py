"""Stage 3 of the full run: ``inat-fl prepare`` on a real Dask cluster, killed part-way and resumed.

1. A cluster of separate processes: ``dask scheduler --port P --no-dashboard`` and ``dask worker
   tcp://127.0.0.1:P --nworkers 2 --nthreads 1``; the driver ``inat-fl prepare OUT ... --scheduler
   tcp://127.0.0.1:P``. When ``kill_after`` files are complete, the driver, the workers and the scheduler
   get SIGKILL, each process by its pid.
2. A new cluster on the same port, and the same command again: it reuses the complete files and writes the
   rest. Its report must say rows in = rows written + rows skipped for the whole config, and hold as many
   rows as the manifest.
3. A sample of files (some written by the killed run, some by the resumed one) written again from scratch
   in another folder: every other file is linked there, so that the same command (synchronous scheduler)
   writes only the sample; each must be byte-identical to the resumed run's.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from inat_hf.fullrun import monitor, reports
from inat_hf.fullrun.stages import say

WORKERS = 2
"""Worker processes of the ``dask worker`` command."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _dask() -> str:
    """The ``dask`` command: on PATH, else beside this Python (an environment that is not activated)."""
    found = shutil.which("dask") or str(Path(sys.executable).with_name("dask"))
    if not Path(found).exists():
        raise RuntimeError("the dask command is not found: pip install -e '.[dask]' (it comes with distributed)")
    return found


def _wait_for_workers(address: str, scheduler: Any, timeout: float = 180.0) -> None:
    from distributed import Client

    deadline = time.monotonic() + timeout
    while True:
        if scheduler.poll() is not None:
            raise RuntimeError(f"the dask scheduler exited with status {scheduler.returncode}; see the log")
        try:
            with Client(address, timeout=5) as client:
                client.wait_for_workers(WORKERS, timeout=max(1.0, deadline - time.monotonic()))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def start_cluster(watch: monitor.Monitor, port: int, log: IO[bytes], scratch: Path) -> list[Any]:
    """Start a scheduler and a ``dask worker`` of :data:`WORKERS` processes; return them once the workers
    are connected.
    """
    address = f"tcp://127.0.0.1:{port}"
    scheduler = watch.start("scheduler", [_dask(), "scheduler", "--port", str(port), "--no-dashboard"], log)
    worker_argv = [_dask(), "worker", address, "--nworkers", str(WORKERS), "--nthreads", "1", "--no-dashboard",
                   "--local-directory", str(scratch)]  # fmt: skip
    workers = watch.start("workers", worker_argv, log)
    _wait_for_workers(address, scheduler)
    return [scheduler, workers]


def complete_files(out: Path, config: str) -> list[str]:
    """The complete files of a config (hidden temporary files left out), relative to ``out``."""
    folder = out / "data" / config
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
    return [f"data/{config}/{name}" for name in names]


def _killed_run(
    argv: list[str], out: Path, config: str, port: int, kill_after: int, log: IO[bytes], scratch: Path
) -> dict[str, Any]:
    """Phase 1: start the cluster and the driver, SIGKILL all of them once ``kill_after`` files are complete."""
    watch, began = monitor.Monitor(), time.perf_counter()
    try:
        cluster = start_cluster(watch, port, log, scratch)
        driver = watch.start("driver", argv, log)
        while len(complete_files(out, config)) < kill_after:
            if driver.poll() is not None:
                raise RuntimeError(
                    f"the driver ended (status {driver.returncode}) before {kill_after} files were complete: "
                    "lower --kill-after or --file-rows"
                )
            time.sleep(0.05)
        killed = [pid for process in (driver, *cluster) for pid in watch.kill(process)]
    finally:
        processes = watch.report()
        watch.close()
    folder = out / "data" / config
    return {
        "seconds": time.perf_counter() - began,
        "killed_pids": killed,
        "files_at_kill": complete_files(out, config),
        "temporary_files_left": sum(p.name.startswith(".") for p in folder.iterdir()),
        "card_written": (out / "README.md").exists(),
        "processes": processes,
    }


def _resumed_run(argv: list[str], port: int, log: IO[bytes], scratch: Path) -> dict[str, Any]:
    """Phase 2: a new cluster on the same port and the same command, to the end; then the cluster is stopped."""
    watch, began = monitor.Monitor(), time.perf_counter()
    try:
        cluster = start_cluster(watch, port, log, scratch)
        status = watch.start("driver", argv, log).wait()
        for process in reversed(cluster):
            watch.terminate(process)
    finally:
        processes = watch.report()
        watch.close()
    if status != 0:
        raise RuntimeError(f"the resumed prepare exited with status {status}; see the log")
    return {"seconds": time.perf_counter() - began, "processes": processes}


def _spread(items: Sequence[str], k: int) -> list[str]:
    """``k`` items spread over ``items`` (first and last included)."""
    if len(items) <= k:
        return list(items)
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)] if k > 1 else [items[0]]


def _rewrite_sample(
    argv: list[str], out: Path, again: Path, sample: list[str], planned: list[str], log: IO[bytes]
) -> dict[str, Any]:
    """Phase 3: link every planned file but the sample into ``again``, run the same command there (synchronous
    scheduler): it writes only the sample, from scratch; compare the bytes.
    """
    shutil.rmtree(again, ignore_errors=True)
    for relative in planned:
        if relative not in sample:
            (again / relative).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(out / relative, again / relative)
            except OSError:
                shutil.copyfile(out / relative, again / relative)
    rerun = [again.as_posix() if a == out.as_posix() else a for a in argv]
    rerun[rerun.index("--scheduler") + 1] = "synchronous"
    watch, began = monitor.Monitor(), time.perf_counter()
    try:
        status = watch.start("rewrite driver", rerun, log).wait()
    finally:
        processes = watch.report()
        watch.close()
    if status != 0:
        raise RuntimeError(f"the rewrite of the sample exited with status {status}; see the log")
    totals = json.loads((again / "prepare_report.json").read_text())["totals"]
    identical = {relative: (out / relative).read_bytes() == (again / relative).read_bytes() for relative in sample}
    return {
        "seconds": time.perf_counter() - began,
        "sample": sample,
        "identical": identical,
        "all_identical": all(identical.values()),
        "files_written": totals["files_written"],
        "card_identical": (out / "README.md").read_bytes() == (again / "README.md").read_bytes(),
        "processes": processes,
    }


def _rows(report: dict[str, Any], config: str) -> dict[str, Any]:
    totals = report["totals"]
    by_split: dict[str, dict[str, int]] = {}
    for entry in report["files"]:
        split = by_split.setdefault(entry["split"], {"rows_in": 0, "rows_written": 0, "rows_skipped": 0})
        for key in split:
            split[key] += entry[key]
    return {
        "rows_in": totals["rows_in"], "rows_written": totals["rows_written"], "rows_skipped": totals["rows_skipped"],
        "balanced": totals["rows_in"] == totals["rows_written"] + totals["rows_skipped"]
        and all(s["rows_in"] == s["rows_written"] + s["rows_skipped"] for s in by_split.values()),
        "manifest_rows": report["configs"][config]["rows"], "by_split": by_split,
    }  # fmt: skip


def prepare_stage(
    stage: str, report_path: str, *, data: str, out: str, config: str, cache_dir: str, file_rows: int,
    kill_after: int, sample: int = 3,
) -> dict[str, Any]:  # fmt: skip
    """Run stage 3 (the module docstring) and write its report; raise RuntimeError if a phase fails."""
    began, load = time.perf_counter(), os.getloadavg()
    target = Path(out).absolute()
    scratch = target.parent / f"{target.name}-dask-scratch"
    argv = [sys.executable, "-m", "inat_hf.cli", "prepare", target.as_posix(), "--data-dir", data, "--config", config,
            "--cache-dir", cache_dir, "--file-rows", str(file_rows), "--scheduler", ""]  # fmt: skip
    port = free_port()
    argv[-1] = f"tcp://127.0.0.1:{port}"
    log = sys.stderr.buffer
    say(f"{stage}: a cluster on port {port} and {shlex.join(argv)}; SIGKILL at {kill_after} complete files")
    killed = _killed_run(argv, target, config, port, kill_after, log, scratch)
    say(
        f"{stage}: killed at {len(killed['files_at_kill'])} files (pids {killed['killed_pids']}); a new cluster, "
        "the same command"
    )
    resumed = _resumed_run(argv, port, log, scratch)
    report = json.loads((target / "prepare_report.json").read_text())
    planned = [entry["file"] for entry in report["files"]]
    at_kill = killed["files_at_kill"]
    after = [f for f in planned if f not in at_kill]
    chosen = sorted(_spread(at_kill, sample) + _spread(after, sample))
    say(f"{stage}: resumed in {resumed['seconds']:,.1f} s; {len(chosen)} files written again from scratch elsewhere")
    rewrite = _rewrite_sample(argv, target, target.parent / f"{target.name}-rewrite", chosen, planned, log)
    rows = _rows(report, config)
    data_bytes = sum((target / f).stat().st_size for f in planned)
    t = report["totals"]
    result = {
        "command": argv, "files_planned": report["files_planned"], "files_at_kill": len(at_kill),
        "killed_part_way": 0 < len(at_kill) < report["files_planned"] and not killed["card_written"],
        "files_reused": t["files_reused"], "files_written": t["files_written"], "rows": rows, "bytes": data_bytes,
        "driver_peak_rss": report["driver_peak_rss"], "worker_peak_rss": report["worker_peak_rss"],
        "images_per_s": report["images_per_s"], "killed": {k: v for k, v in killed.items() if k != "processes"},
        "resumed_seconds": resumed["seconds"], "rewrite": {k: v for k, v in rewrite.items() if k != "processes"},
        "facts": [
            f"SIGKILL (driver, workers, scheduler) at {len(at_kill)} of {report['files_planned']} files; resumed: "
            f"{t['files_reused']} reused + {t['files_written']} written",
            f"rows in {rows['rows_in']:,} = written {rows['rows_written']:,} + skipped {rows['rows_skipped']:,} "
            f"(manifest {rows['manifest_rows']:,}); {reports.human_bytes(data_bytes)} of Parquet",
            f"{len(chosen)} files rewritten from scratch elsewhere: byte-identical {rewrite['all_identical']}",
            f"resumed run: {report['images_per_s']:,.0f} images/s (prepare's meter), driver peak RSS "
            f"{reports.human_bytes(report['driver_peak_rss'])} (prepare's report)",
        ],
    }  # fmt: skip
    processes = [{**p, "phase": phase} for phase, part in (("killed", killed), ("resumed", resumed),
                 ("rewrite", rewrite)) for p in part["processes"]]  # fmt: skip
    stage_report = reports.stage_report(stage, began, load, processes, result)
    reports.write_report(report_path, stage_report)
    say(f"{stage}: done in {stage_report['seconds']:,.1f} s; " + "; ".join(result["facts"]))
    return stage_report
