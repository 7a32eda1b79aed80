"""The report of a prepare run: progress on the driver, totals (rows in = written + skipped), ``prepare_report.json``
and the end-of-run summary.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from inat_hf import storage
from inat_hf.prepare.plan import FileTask
from inat_hf.prepare.task import peak_rss

REPORT_FILE = "prepare_report.json"
SHOWN_FILES = 10
"""Files with skipped rows named in the end-of-run summary (the report lists all of them)."""


@dataclass
class Progress:
    """Files done / planned and images/s on the driver, a line at most every ``every`` seconds."""

    planned: int
    stream: TextIO | None = sys.stderr
    every: float = 2.0
    done: int = 0
    reused: int = 0
    images: int = 0
    started: float = field(default_factory=time.perf_counter)
    _shown: float = 0.0

    def update(self, result: Mapping[str, Any]) -> None:
        """Count one finished file and show the line if it is time."""
        self.done += 1
        if result["status"] == "reused":
            self.reused += 1
        else:
            self.images += int(result["rows_written"])
        now = time.perf_counter()
        if self.stream is not None and (now - self._shown >= self.every or self.done == self.planned):
            self._shown = now
            print(f"prepare: {self.line()}", file=self.stream, flush=True)

    @property
    def images_per_s(self) -> float:
        """Images written per second since the first task was submitted."""
        return self.images / max(1e-9, time.perf_counter() - self.started)

    def line(self) -> str:
        """``"3/12 files (1 reused), 4,000 images, 350 images/s"``."""
        return (
            f"{self.done}/{self.planned} files ({self.reused} reused), {self.images:,} images, "
            f"{self.images_per_s:,.0f} images/s"
        )


def totals(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The run's totals over the per-file results: files, rows in / written / skipped, skipped by reason."""
    reasons: Counter[str] = Counter()
    for result in results:
        reasons.update(row["reason"].split(" (", 1)[0] for row in result["skipped"])
    return {
        "files": len(results),
        "files_written": sum(r["status"] == "written" for r in results),
        "files_reused": sum(r["status"] == "reused" for r in results),
        "rows_in": sum(r["rows_in"] for r in results),
        "rows_written": sum(r["rows_written"] for r in results),
        "rows_skipped": sum(r["rows_skipped"] for r in results),
        "skipped_by_reason": dict(sorted(reasons.items())),
    }


def in_plan_order(results: list[dict[str, Any]], plans: list[list[FileTask]]) -> list[dict[str, Any]]:
    """The per-file results in the order of the plans (they finish in any order)."""
    order = {t.relative: i for i, t in enumerate(t for plan in plans for t in plan)}
    return sorted(results, key=lambda r: order.get(r["file"], len(order)))


def write_report(
    out: storage.Location,
    report: dict[str, Any],
    results: list[dict[str, Any]],
    plans: list[list[FileTask]],
    began: float,
    first_submit: list[float],
    meter: Progress,
    error: BaseException | None = None,
) -> dict[str, Any]:
    """Complete ``report`` with the totals, timings, peaks and per-file results; write ``prepare_report.json``
    (also after a failure, with the redacted ``error``) and return it.
    """
    ordered = in_plan_order(results, plans)
    per_file = [{k: v for k, v in r.items() if k not in ("key", "fingerprint")} for r in ordered]
    report = {
        **report,
        "complete": error is None,
        "error": None if error is None else out.redact(f"{type(error).__name__}: {error}"),
        "files_planned": sum(len(p) for p in plans),
        "totals": totals(ordered),
        "files_with_skipped": [r["file"] for r in ordered if r["rows_skipped"]],
        "seconds": time.perf_counter() - began,
        "seconds_to_first_task": first_submit[0] if first_submit else None,
        "planning_seconds": (first_submit[0] - report.get("cluster_start_seconds", 0.0)) if first_submit else None,
        "driver_peak_rss": peak_rss(),
        "images_per_s": meter.images_per_s,
        "worker_peak_rss": max((r["worker_peak_rss"] for r in ordered), default=0),
        "files": per_file,
    }
    storage.write_bytes(out, REPORT_FILE, (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """The end-of-run summary: files, rows in = written + skipped (with reasons), images/s."""
    t = report["totals"]
    lines = [
        f"{t['files']} of {report['files_planned']} files: {t['files_written']} written, {t['files_reused']} reused",
        f"rows in {t['rows_in']:,} = written {t['rows_written']:,} + skipped {t['rows_skipped']:,}",
    ]
    lines += [f"  skipped, {reason}: {n:,}" for reason, n in t["skipped_by_reason"].items()]
    with_skipped = report.get("files_with_skipped") or []
    if with_skipped:
        shown = ", ".join(with_skipped[:SHOWN_FILES]) + (
            f", ... ({len(with_skipped) - SHOWN_FILES:,} more)" if len(with_skipped) > SHOWN_FILES else ""
        )
        lines.append(f"{len(with_skipped):,} file(s) with skipped rows (rows and reasons in {REPORT_FILE}): {shown}")
        lines.append("  fix the images, then rerun with --redo-skipped to write exactly these files again")
    lines.append(f"{report['images_per_s']:,.0f} images/s; {report['seconds']:.1f} s; report: {REPORT_FILE}")
    return "\n".join(lines)
