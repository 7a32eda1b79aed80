"""``prepare`` in batches (a worker's memory bounded by a batch, not by a client: a client may span row groups
of its file, still in one file, and every reader gets it back whole) and ``--redo-skipped``."""

from __future__ import annotations

import itertools
import json
import shutil
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from inat_hf.cli import main
from inat_hf.config import config_for
from inat_hf.export import read_client
from inat_hf.federated.clients import ClientData
from inat_hf.federated.partitioner import INatPartitioner
from inat_hf.hub.folder import write_card
from inat_hf.manifest import load_or_build_manifest
from inat_hf.prepare import REPORT_FILE, Settings, format_report, plan_files, prepare
from inat_hf.prepare.stream import batch_bounds

FILE_ROWS = 40
BATCH = 4


def files_of(out: Path) -> dict[str, bytes]:
    """Every data file, the card and its figure: relative path -> bytes."""
    found = sorted([*out.glob("data/**/*"), out / "README.md", *out.glob("assets/*")])
    return {str(p.relative_to(out)): p.read_bytes() for p in found if p.is_file()}


def run(out: Path, data: str, cache: Path, **kwargs: object) -> dict:
    """A synchronous prepare run, then its card (as ``inat-fl prepare`` writes it)."""
    options = {"cache_dir": str(cache), "scheduler": "synchronous", "file_rows": FILE_ROWS, "progress": None}
    report = prepare(str(out), data, ["family_user"], **{**options, **kwargs})
    write_card(str(out), data, report, cache_dir=str(cache))
    return report


def test_batch_bounds_cut_at_client_starts_and_inside_large_clients_only():
    ids = np.array([0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 3])  # worked by hand: client 2 (7 rows) is cut every 3 rows
    assert batch_bounds(ids, 3) == [(0, 3), (3, 4), (4, 7), (7, 10), (10, 12)]
    assert batch_bounds(np.full(7, 5), 3) == [(0, 3), (3, 6), (6, 7)]
    assert batch_bounds(ids, 100) == [(0, 12)] and batch_bounds(np.array([], dtype=np.int64), 3) == []
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 20, 60)
    sizes[[3, 17, 40]] = [300, 45, 257]
    ids = np.repeat(np.arange(sizes.size), sizes)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    for batch in (1, 3, 7, 64, 256):
        bounds = batch_bounds(ids, batch)
        assert (
            bounds[0][0] == 0 and bounds[-1][1] == ids.size and all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        )
        assert all(0 < stop - start <= batch for start, stop in bounds)
        for cut, _ in bounds[1:]:
            client = int(np.searchsorted(starts, cut, side="right")) - 1  # the client the cut falls in
            assert (cut - starts[client]) % batch == 0  # at its start, or a whole number of batches into it
            assert cut == starts[client] or sizes[client] > batch  # a client of at most a batch is never cut
    with pytest.raises(ValueError, match="batch_rows=0 is invalid"):
        batch_bounds(ids, 0)


def test_a_client_larger_than_a_batch_spans_row_groups_and_reads_back_whole(tiny_replica, tmp_path):
    cache = tmp_path / "cache"
    whole, batched, again = tmp_path / "whole", tmp_path / "batched", tmp_path / "again"
    run(whole, tiny_replica.url, cache)  # the default batch (256 rows): every client of the tiny replica in one
    report = run(batched, tiny_replica.url, cache, batch_rows=BATCH)
    assert report["batch_rows"] == BATCH and report["totals"]["rows_written"] == 171
    run(again, tiny_replica.url, cache, batch_rows=BATCH)
    assert files_of(batched) == files_of(again)  # deterministic

    holding: Counter[int] = Counter()  # client -> row groups holding some of its rows
    for path in (batched / "data/family_user").glob("train-*.parquet"):
        parquet = pq.ParquetFile(path)
        groups = [parquet.read_row_group(g, columns=["client_id"])["client_id"].to_pylist()
                  for g in range(parquet.metadata.num_row_groups)]  # fmt: skip
        assert all(0 < len(g) <= BATCH for g in groups)
        holding.update(c for group in groups for c in set(group))
    assert max(holding.values()) >= 3, "no client of the tiny replica spans 3 batches: the test shows nothing"

    expected = datasets.load_dataset(str(whole), "family_user")
    loaded = datasets.load_dataset(str(batched), "family_user")
    for split in ("train", "validation"):  # the same rows and image bytes as with one batch per file
        a = expected[split].cast_column("image", datasets.Image(decode=False))
        b = loaded[split].cast_column("image", datasets.Image(decode=False))
        assert a["image_id"] == b["image_id"] and a["client"] == b["client"]
        assert [r["bytes"] for r in a["image"]] == [r["bytes"] for r in b["image"]]
    clients = ClientData(loaded["train"])
    partitioner = INatPartitioner()
    partitioner.dataset = loaded["train"]
    assert partitioner.mode == "contiguous" and partitioner.num_partitions == clients.num_clients
    for cid in clients.client_ids.tolist():
        rows, groups = read_client(str(batched), "family_user", cid)
        wanted = list(clients.client(cid)["image_id"])
        assert rows["image_id"].to_pylist() == wanted and groups == holding[cid]  # its row groups only
        partition = partitioner.load_partition(int(np.searchsorted(partitioner.client_ids, cid)))
        assert partition["image_id"] == wanted


def test_files_with_skipped_rows_are_reported_and_redone(tiny_replica, tmp_path, capsys):
    data, cache = tmp_path / "data", tmp_path / "cache"
    shutil.copytree(tiny_replica.url, data)
    manifest = load_or_build_manifest(str(data), config_for("family_user"), cache_dir=str(cache))
    plan = list(plan_files(manifest, config_for("family_user"), Settings(str(tmp_path), "-"), file_rows=FILE_ROWS))
    names = manifest.table["file_name"].to_pylist()
    damaged = {plan[1].start + 2: plan[1].relative, plan[3].start: plan[3].relative}
    originals = {row: (data / names[row]).read_bytes() for row in damaged}
    for row in damaged:
        (data / names[row]).write_bytes(originals[row][:150])  # cut short: skipped
    out = tmp_path / "out"
    report = run(out, str(data), cache, on_bad_image="skip")
    assert report["files_with_skipped"] == sorted(damaged.values()) and report["totals"]["rows_skipped"] == 2
    assert json.loads((out / REPORT_FILE).read_text())["files_with_skipped"] == sorted(damaged.values())
    summary = format_report(report)
    assert f"2 file(s) with skipped rows (rows and reasons in {REPORT_FILE}): " in summary
    assert all(name in summary for name in damaged.values()) and "--redo-skipped" in summary

    for row, content in originals.items():  # the images are fixed: a plain rerun keeps the files as they are
        (data / names[row]).write_bytes(content)
    assert run(out, str(data), cache, on_bad_image="skip")["totals"]["files_written"] == 0
    capsys.readouterr()
    command = ["prepare", str(out), "--data-dir", str(data), "--cache-dir", str(cache), "--scheduler", "synchronous",
               "--file-rows", str(FILE_ROWS), "--on-bad-image", "skip", "--redo-skipped"]  # fmt: skip
    assert main(command) == 0
    shown = capsys.readouterr().err
    redone = json.loads((out / REPORT_FILE).read_text())
    status = {f["file"]: f["status"] for f in redone["files"]}
    assert {name for name, s in status.items() if s == "written"} == set(damaged.values())  # exactly those
    assert redone["totals"]["rows_skipped"] == 0 and redone["files_with_skipped"] == [] and redone["redo_skipped"]
    assert "written 171 + skipped 0" in shown and "file(s) with skipped rows" not in shown
    fresh = tmp_path / "fresh"
    run(fresh, str(data), cache, on_bad_image="skip")
    assert files_of(out) == files_of(fresh)  # the same bytes as a run on the fixed images
