"""Stages 1, 2, 4 and 5 of the full run: a command run and watched, and what its output says.

:func:`run_stage` runs one command (its output to the stage's log), watches the peak RSS of it and of every
process below it (:mod:`inat_hf.fullrun.monitor`), and writes the stage report when it exits with status 0:
seconds, processes, load average and the stage's ``result`` (``kind``: ``replica`` counts the JPEG files and
bytes of each split; ``check`` reads ``inat-fl check --json``; ``train`` reads a run's ``metrics.json``;
``load`` reads the JSON of :func:`load_stage`).
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inat_hf.fullrun import monitor, reports

SPLIT_FOLDERS = ("train", "val", "train_mini")


def replica_result(root: str | Path) -> dict[str, Any]:
    """JPEG files and bytes per split folder of a replica, and its metadata files' sizes (one walk)."""
    root = Path(root)
    splits: dict[str, dict[str, int]] = {}
    for split in SPLIT_FOLDERS:
        files = size = 0
        for folder in os.scandir(root / split) if (root / split).is_dir() else []:
            for entry in os.scandir(folder.path):
                if entry.name.endswith(".jpg") and not entry.name.startswith("."):
                    files, size = files + 1, size + entry.stat().st_size
        splits[split] = {"jpegs": files, "bytes": size}
    metadata = {p.name: p.stat().st_size for p in sorted(root.glob("*.json"))}
    jpegs, size = sum(s["jpegs"] for s in splits.values()), sum(s["bytes"] for s in splits.values())
    facts = [
        ", ".join(f"{name} {s['jpegs']:,}" for name, s in splits.items()) + " JPEGs",
        f"{reports.human_bytes(size)} of JPEGs ({size / max(jpegs, 1):,.0f} B each) + "
        f"{reports.human_bytes(sum(metadata.values()))} of JSON",
    ]
    return {"splits": splits, "jpegs": jpegs, "jpeg_bytes": size, "metadata_bytes": metadata, "facts": facts}


def check_result(path: str | Path) -> dict[str, Any]:
    """The ``inat-fl check --json`` report and its gist."""
    report = json.loads(Path(path).read_text(encoding="utf-8"))
    counts = {c["what"]: c["found"] for c in report["counts"]}
    images = report.get("images") or {}
    facts = [
        f"ok={report['ok']}: {sum(c['ok'] is not False for c in report['counts'])}/{len(report['counts'])} counts as "
        f"expected ({counts.get('train images', 0):,} train, {counts.get('val images', 0):,} val images)",
        f"{images.get('decoded', 0)}/{images.get('sampled', 0)} sampled images decoded",
    ]
    return {"ok": report["ok"], "counts": counts, "images": images, "problems": report["problems"], "facts": facts}


def train_result(path: str | Path) -> dict[str, Any]:
    """A training run's ``metrics.json`` and its gist (rounds, clients, examples, accuracy)."""
    metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = metrics["rows"]
    trained = [r for r in rows if r.get("train_loss") is not None]
    last = rows[-1]
    facts = [
        f"{len(trained)} round(s), {sum(r.get('clients', 0) for r in trained)} client updates, "
        f"{sum(r.get('examples', 0) for r in trained):,} examples",
        f"val accuracy {rows[0]['val_accuracy']:.3f} -> {last['val_accuracy']:.3f}, val loss {rows[0]['val_loss']:.3f}"
        f" -> {last['val_loss']:.3f}",
    ]
    return {"rows": rows, "rounds": len(trained), "facts": facts}


def _result(kind: str, data: str | None) -> Any:
    if kind == "replica":
        return replica_result(data or ".")
    if kind in ("check", "train", "load"):
        if data is None:
            raise ValueError(f"--kind {kind} needs --data (the JSON file the command writes)")
        return {"check": check_result, "train": train_result, "load": _load_result}[kind](data)
    return {}


def _load_result(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def say(line: str) -> None:
    """One line of the full run's own in a stage's log (standard error)."""
    print(f"[full run] {line}", file=sys.stderr, flush=True)


def role_of(argv: Sequence[str]) -> str:
    """A short name for a command: ``inat_hf.cli sample``, ``finetune_vit.py``, ``dask worker``."""
    words = list(argv)
    if words and Path(words[0]).name.startswith("python"):
        words = words[2:] if words[1:2] == ["-m"] else words[1:]
    words = [Path(w).name if "/" in w else w for w in words[:2]]
    if len(words) == 2 and (words[1].startswith("-") or words[0].endswith(".py")):
        words = words[:1]
    return " ".join(words) or "?"


def run_stage(
    stage: str, report_path: str, argv: Sequence[str], *, kind: str = "", data: str | None = None,
    stdout: str | None = None,
) -> int:  # fmt: skip
    """Run ``argv`` watched; on status 0 write the stage report (with the ``kind``'s result) and return 0.

    ``stdout``: a file for the command's standard output (``inat-fl check --json``); its standard error (and
    standard output otherwise) go to this process's.
    """
    began, load = time.perf_counter(), os.getloadavg()
    say(f"{stage}: {shlex.join(argv)}" + (f" > {stdout}" if stdout else ""))
    watch = monitor.Monitor()
    try:
        with open(stdout, "wb") if stdout else open(os.devnull, "wb") as out:
            process = watch.start(role_of(argv), argv, sys.stderr.buffer, out if stdout else sys.stdout.buffer)
            status = process.wait()
    finally:
        processes = watch.report()
        watch.close()
    if status != 0:
        say(f"{stage}: {argv[0]} exited with status {status}")
        return status
    report = reports.stage_report(stage, began, load, processes, _result(kind, data))
    reports.write_report(report_path, report)
    say(f"{stage}: done in {report['seconds']:,.1f} s; " + "; ".join(report["result"].get("facts", [])))
    say(f"{stage}: report {report_path}")
    return 0


def _timed_clients(clients: Any) -> dict[str, Any]:
    """Time ``clients.client(cid)`` over every client; check each one's size."""
    times, wrong = [], 0
    for cid, size in zip(clients.client_ids.tolist(), clients.sizes.tolist(), strict=True):
        start = time.perf_counter()
        one = clients.client(cid)
        times.append(time.perf_counter() - start)
        wrong += one.num_rows != size
    return {
        "clients": len(times),
        "client_median_ms": 1000 * statistics.median(times) if times else None,
        "client_p99_ms": 1000 * float(np.percentile(times, 99)) if times else None,
        "clients_all_seconds": sum(times),
        "clients_wrong_size": wrong,
    }


def load_stage(prepared: str, config: str, cache_dir: str, result_path: str, few: int = 5) -> dict[str, Any]:
    """Stage 4: ``datasets.load_dataset`` of the prepared output (rows per split against the prepare report),
    ``ClientData`` over every client (time to the first client, median ``client(cid)``), and ``read_client``
    of ``few`` clients straight from the files (the same image ids as ``ClientData``'s).
    """
    import datasets

    from inat_hf import ClientData
    from inat_hf.export import read_client

    expected: dict[str, int] = {}
    for entry in json.loads((Path(prepared) / "prepare_report.json").read_text())["files"]:
        expected[entry["split"]] = expected.get(entry["split"], 0) + entry["rows_written"]
    start = time.perf_counter()
    loaded = datasets.load_dataset(prepared, config, cache_dir=cache_dir)
    load_seconds = time.perf_counter() - start
    rows = {split: loaded[split].num_rows for split in loaded}
    start = time.perf_counter()
    clients = ClientData(loaded["train"])
    first = clients.client(int(clients.client_ids[0]))
    first_seconds = time.perf_counter() - start
    image = first[0]["image"]  # decoded by datasets: the bytes prepare wrote are a real image
    timed = _timed_clients(clients)
    picks = np.unique(np.random.default_rng(0).choice(clients.client_ids, min(few, clients.num_clients), replace=False))
    direct = []
    for cid in [int(clients.client_ids[np.argmax(clients.sizes)]), *map(int, picks)]:
        start = time.perf_counter()
        table, groups = read_client(prepared, config, cid)
        same = table["image_id"].to_pylist() == list(clients.client(cid)["image_id"])
        direct.append({"client_id": cid, "rows": table.num_rows, "row_groups": groups, "same_rows": same,
                       "seconds": time.perf_counter() - start})  # fmt: skip
    result = {
        "rows": rows, "expected_rows": expected, "rows_match": rows == expected, "load_seconds": load_seconds,
        "first_client_seconds": first_seconds, "first_client_rows": first.num_rows,
        "first_image": [image.format, *image.size], **timed, "read_client": direct,
        "facts": [
            f"load_dataset {sum(rows.values()):,} rows in {load_seconds:,.1f} s ("
            + ", ".join(f"{s} {n:,}" for s, n in rows.items()) + f"), as prepared: {rows == expected}",
            f"ClientData: {timed['clients']:,} clients, first in {first_seconds:,.2f} s, median client(cid) "
            f"{timed['client_median_ms']:.3f} ms, sizes right: {timed['clients_wrong_size'] == 0}",
            f"read_client of {len(direct)} clients: same rows {all(d['same_rows'] for d in direct)}",
        ],
    }  # fmt: skip
    reports.write_report(result_path, result)
    return result
