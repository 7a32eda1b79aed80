"""Stage reports of the full run: one JSON file per stage, written only when the stage succeeded.

Every report holds ``stage``, ``seconds``, ``processes`` (each process started: role, pid, command, peak
RSS), ``peak_rss`` (the largest of them), the machine's load average at the start and the end, and the
stage's own facts (``result``: rows, bytes, checks). ``scripts/full_run.sh`` skips a stage whose report
exists, and :func:`summary_table` turns the reports into the markdown table of the run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil


def machine() -> dict[str, Any]:
    """CPUs, memory and the load average now."""
    return {
        "cpus": os.cpu_count(),
        "memory": psutil.virtual_memory().total,
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
    }


def write_report(path: str | Path, report: Mapping[str, Any]) -> None:
    """Write ``report`` as JSON, complete or not at all (a temporary name, then a rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.part")
    staging.write_text(json.dumps(report, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(staging, target)


def stage_report(
    stage: str, began: float, load_before: Sequence[float], processes: list[dict[str, Any]], result: Any
) -> dict[str, Any]:
    """The common fields of a stage report (``began``: ``time.perf_counter()`` at its start)."""
    return {
        "stage": stage,
        "seconds": time.perf_counter() - began,
        "processes": processes,
        "peak_rss": max((p["peak_rss"] for p in processes), default=0),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "result": result,
    }


def human_bytes(value: float) -> str:
    """``"2.41 GB"``, ``"610 kB"``: decimal units, three significant digits (all digits from 100 up)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}" if value < 100 * scale else f"{value / scale:,.0f} {unit}"
    return f"{value:,.0f} B"


def _gib(value: float) -> str:
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def _peaks(report: Mapping[str, Any]) -> str:
    """The peak RSS of the stage's main processes (by role, the largest process of each)."""
    best: dict[str, int] = {}
    for process in report.get("processes", []):
        best[process["role"]] = max(best.get(process["role"], 0), int(process["peak_rss"]))
    return ", ".join(f"{role} {_gib(rss)}" for role, rss in best.items() if rss) or "-"


def _facts(report: Mapping[str, Any]) -> str:
    """Rows, bytes and checks of one stage, in a few words."""
    result = report.get("result") or {}
    facts = result.get("facts") if isinstance(result, dict) else None
    return "; ".join(facts) if facts else "-"


def summary_table(reports: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """The markdown table of a run: one line per stage (seconds, peak RSS per role, rows, bytes, checks)."""
    lines = [title, ""] if title else []
    lines += ["| stage | seconds | peak RSS (largest process per role) | rows, bytes, checks |", "|---|---:|---|---|"]
    total = 0.0
    for report in reports:
        total += float(report["seconds"])
        lines.append(f"| {report['stage']} | {report['seconds']:,.1f} | {_peaks(report)} | {_facts(report)} |")
    lines.append(f"| **all** | **{total:,.1f}** | | |")
    if reports:
        first, last = reports[0]["load_average_before"], reports[-1]["load_average_after"]
        lines += ["", f"Load average (1, 5, 15 min): {_loads(first)} at the start, {_loads(last)} at the end."]
    return "\n".join(lines) + "\n"


def _loads(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def read_reports(folder: str | Path) -> list[dict[str, Any]]:
    """The stage reports of a run, in stage order (file name order: ``1-replica.json``, ...)."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).glob("[0-9]*.json"))]
