"""``scripts/full_run.sh`` at the small scale, for real: a Dask cluster of separate processes killed part-way and
resumed, each stage's report checked; a rerun skips every stage. Plus the report helpers on their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inat_hf.fullrun.reports import human_bytes, summary_table
from inat_hf.fullrun.stages import role_of

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("1-replica", "2-check", "3-prepare", "4-load", "5-fedavg", "6-flower")


def _run(out: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)  # dask, inat-fl and python of this environment
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
           "PYTHON": sys.executable}  # fmt: skip
    command = ["bash", str(REPO_ROOT / "scripts/full_run.sh"), str(out), "--scale", "small"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800, check=False)


@pytest.mark.slow
def test_full_run_small(tmp_path):
    out = tmp_path / "run"
    done = _run(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reports = {name: json.loads((out / "reports" / f"{name}.json").read_text()) for name in STAGES}
    for name, report in reports.items():
        assert report["stage"] == name and report["seconds"] > 0 and report["processes"], name
        assert all(p["peak_rss"] > 0 for p in report["processes"]), name
        assert (out / "logs" / f"{name}.log").stat().st_size > 0

    replica, check = reports["1-replica"]["result"], reports["2-check"]["result"]
    assert check["ok"] and check["images"]["decoded"] == check["images"]["sampled"] > 0
    for split, what in (("train", "train images"), ("val", "val images"), ("train_mini", "train_mini images")):
        assert replica["splits"][split]["jpegs"] == check["counts"][what] > 0
    assert replica["jpeg_bytes"] == sum(s["bytes"] for s in replica["splits"].values()) > 0

    prepared = reports["3-prepare"]["result"]
    roles = {p["role"] for p in reports["3-prepare"]["processes"]}
    assert {"scheduler", "workers", "workers/child", "driver", "rewrite driver"} <= roles
    assert prepared["killed_part_way"] and prepared["files_reused"] >= 1 and prepared["files_written"] >= 1
    assert prepared["files_reused"] + prepared["files_written"] == prepared["files_planned"]
    assert len(prepared["killed"]["killed_pids"]) >= 4  # the driver, the scheduler, the worker and its processes
    rows = prepared["rows"]
    assert rows["balanced"] and rows["rows_in"] == rows["manifest_rows"] == rows["rows_written"] + rows["rows_skipped"]
    assert rows["rows_in"] == check["counts"]["train images"] + check["counts"]["val images"]
    rewrite, at_kill = prepared["rewrite"], set(prepared["killed"]["files_at_kill"])
    assert rewrite["all_identical"] and rewrite["files_written"] == len(rewrite["sample"]) >= 2
    assert at_kill & set(rewrite["sample"]) and set(rewrite["sample"]) - at_kill  # files of both runs

    loaded = reports["4-load"]["result"]
    assert loaded["rows_match"] and loaded["rows"]["train"] == rows["by_split"]["train"]["rows_written"]
    assert loaded["clients"] > 100 and loaded["clients_wrong_size"] == 0 and loaded["first_image"][0] == "JPEG"
    assert all(c["same_rows"] and c["rows"] > 0 for c in loaded["read_client"])
    for name in ("5-fedavg", "6-flower"):
        result = reports[name]["result"]
        assert result["rounds"] == 1 and result["rows"][-1]["clients"] == 10
    summary = (out / "summary.md").read_text()
    assert all(f"| {name} |" in summary for name in STAGES) and "Load average" in summary

    stamps = {p: p.stat().st_mtime_ns for p in (out / "reports").iterdir()}
    again = _run(out)  # every stage is done: each is skipped, no report rewritten
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(f"[{name}] done before" in again.stdout for name in STAGES)
    assert {p: p.stat().st_mtime_ns for p in (out / "reports").iterdir()} == stamps


def test_summary_table_and_helpers():
    report = {
        "stage": "3-prepare", "seconds": 12.5, "load_average_before": [1.0, 2.0, 3.0], "load_average_after": [2, 2, 2],
        "processes": [{"role": "driver", "pid": 1, "command": "x", "peak_rss": 3 * 2**30},
                      {"role": "workers/child", "pid": 2, "command": "y", "peak_rss": 2**29}],
        "result": {"facts": ["rows in 3 = written 3 + skipped 0", "byte-identical True"]},
    }  # fmt: skip
    table = summary_table([report], "A title")
    assert table.startswith("A title\n")
    assert "| 3-prepare | 12.5 | driver 3.00 GiB, workers/child 512 MiB | rows in 3 = written 3 + skipped 0; " in table
    assert "| **all** | **12.5** |" in table and "1.0, 2.0, 3.0 at the start, 2.0, 2.0, 2.0 at the end" in table
    assert [human_bytes(v) for v in (999, 609_891, 2.4e9, 3.2e12)] == ["999 B", "610 kB", "2.4 GB", "3,200 GB"]
    assert role_of(["/v/bin/python", "-m", "inat_hf.cli", "sample", "/tmp/x"]) == "inat_hf.cli sample"
    assert role_of(["python", "/r/scripts/finetune_vit.py", "--export", "x"]) == "finetune_vit.py"
    assert role_of(["/v/bin/dask", "worker", "tcp://127.0.0.1:1"]) == "dask worker"
