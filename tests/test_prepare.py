"""``inat-fl prepare`` on Dask: the plan, the builder's examples with images, resuming, bad images, a real kill."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from inat_hf.cli import main
from inat_hf.config import config_for
from inat_hf.export import read_client
from inat_hf.federated.clients import ClientData
from inat_hf.hub.folder import write_card
from inat_hf.manifest import load_or_build_manifest
from inat_hf.manifest.examples import BadImageError
from inat_hf.prepare import REPORT_FILE, Settings, plan_files, prepare, read_record
from inat_hf.storage import resolve
from inaturalist_fl import INaturalistFL

REPO_ROOT = Path(__file__).resolve().parents[1]
FILE_ROWS = 40


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


@pytest.fixture(scope="module")
def reference(tiny_replica, tmp_path_factory):
    """An uninterrupted synchronous run on the tiny replica, and the builder's train examples."""
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("prepared")
    report = run(out, tiny_replica.url, cache)
    builder = INaturalistFL(config_name="family_user", data_dir=tiny_replica.url, cache_dir=str(cache))
    builder.download_and_prepare()
    return out, cache, report, builder


def test_plan_is_whole_clients_in_order_about_even(small_metadata, tmp_path):
    config = config_for("family_user", test_fraction=0.2)
    manifest = load_or_build_manifest(small_metadata.url, config, cache_dir=str(tmp_path))
    settings = Settings(str(tmp_path / "out"), None)
    plan = list(plan_files(manifest, config, settings, file_rows=500))
    assert plan == list(plan_files(manifest, config, settings, file_rows=500))  # deterministic
    client = manifest.table["client_id"].to_numpy()
    for split in ("train", "test", "validation"):
        offset, length = manifest.split_range(split)
        files = [t for t in plan if t.split == split]
        assert [t.relative for t in files] == [
            f"data/family_user/{split}-{i:05d}-of-{len(files):05d}.parquet" for i in range(len(files))
        ]
        assert files[0].start == offset and files[-1].stop == offset + length
        assert all(a.stop == b.start for a, b in itertools.pairwise(files))
        if split != "validation":  # never a client cut in two
            assert all(client[t.start - 1] != client[t.start] for t in files[1:])
        sizes = np.array([t.rows_in for t in files])
        largest = np.bincount(client[client >= 0]).max()
        assert len(files) == int(np.ceil(length / 500)) and sizes.max() <= 500 + 2 * largest
    with pytest.raises(ValueError, match="file_rows=0 is invalid"):
        list(plan_files(manifest, config, settings, file_rows=0))


def test_the_builder_examples_with_images(reference, tiny_replica):
    out, _, report, builder = reference
    assert report["complete"] and report["totals"]["rows_skipped"] == 0
    assert report["totals"]["rows_in"] == report["totals"]["rows_written"] == 171
    assert report["totals"]["files_written"] == report["files_planned"] == len(report["files"]) == 5
    expected = builder.as_dataset("train").cast_column("image", datasets.Image(decode=False))
    loaded = datasets.load_dataset(str(out), "family_user", split="train")
    assert loaded.features["image"] == datasets.Image() and loaded.features["label"] == expected.features["label"]
    raw = loaded.cast_column("image", datasets.Image(decode=False))
    for name in ("image_id", "client_id", "label", "species", "file_name"):
        assert raw[name] == expected[name]
    assert [r["bytes"] for r in raw["image"]] == [r["bytes"] for r in expected["image"]]
    assert loaded[0]["image"].size[0] > 0  # decodes to PIL
    streamed = datasets.load_dataset(str(out), "family_user", split="train", streaming=True)
    assert [row["image_id"] for row in streamed] == expected["image_id"]
    clients = ClientData(loaded)
    for cid in clients.client_ids.tolist():
        rows, groups = read_client(str(out), "family_user", cid)
        assert rows["image_id"].to_pylist() == list(clients.client(cid)["image_id"]) and groups == 1
        offset, length = clients.client_range(cid)
        assert [r["bytes"] for r in rows["image"].to_pylist()] == [
            r["bytes"] for r in raw.select(range(offset, offset + length))["image"]
        ]
    for path in (out / "data/family_user").iterdir():  # every row group holds whole clients
        parquet = pq.ParquetFile(path)
        ids = [set(parquet.read_row_group(g, columns=["client_id"])["client_id"].to_pylist())
               for g in range(parquet.metadata.num_row_groups)]  # fmt: skip
        assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1 :])
        leaf = [parquet.metadata.schema.column(i).path for i in range(len(parquet.metadata.schema))].index("client_id")
        stats = parquet.metadata.row_group(0).column(leaf).statistics
        assert stats.has_min_max and stats.min == min(ids[0]) and stats.max == max(ids[0])


def test_max_image_side_shrinks_like_the_builder(tiny_replica, tmp_path):
    run(tmp_path / "out", tiny_replica.url, tmp_path / "cache", max_image_side=16, file_rows=200)
    builder = INaturalistFL(
        config_name="family_user", data_dir=tiny_replica.url, cache_dir=str(tmp_path / "cache"), max_image_side=16
    )
    builder.download_and_prepare()
    expected = builder.as_dataset("validation").cast_column("image", datasets.Image(decode=False))
    got = datasets.load_dataset(str(tmp_path / "out"), "family_user", split="validation")
    assert [r["bytes"] for r in got.cast_column("image", datasets.Image(decode=False))["image"]] == [
        r["bytes"] for r in expected["image"]
    ]
    assert max(max(image.size) for image in got["image"]) <= 16


def test_rerun_writes_only_what_is_missing_or_wrong(reference, tiny_replica, tmp_path):
    first, cache, _, _ = reference
    out = tmp_path / "out"
    shutil.copytree(first, out)
    folder = out / "data/family_user"
    (folder / "train-00001-of-00004.parquet").unlink()
    broken = folder / "train-00002-of-00004.parquet"
    broken.write_bytes(broken.read_bytes()[:1000])  # cut short: not a complete Parquet file
    (folder / ".tmp-train-00003-of-00004.parquet-0123456789ab").write_bytes(b"left by a killed run")
    (folder / "train-00000-of-00009.parquet").write_bytes(b"a file of another plan")
    report = run(out, tiny_replica.url, cache)
    status = {f["file"].rsplit("/", 1)[-1]: f["status"] for f in report["files"]}
    assert status == {
        "train-00000-of-00004.parquet": "reused",
        "train-00001-of-00004.parquet": "written",
        "train-00002-of-00004.parquet": "written",
        "train-00003-of-00004.parquet": "reused",
        "validation-00000-of-00001.parquet": "reused",
    }
    assert files_of(out) == files_of(first)  # the same bytes; stale and temporary files gone
    record, rows = read_record(resolve(str(out)), "data/family_user/train-00001-of-00004.parquet")
    assert record["rows_in"] == rows + record["rows_skipped"] and record["fingerprint"] in report["configs"][
        "family_user"]["fingerprint"]  # fmt: skip


def test_bad_images_stop_or_are_skipped_and_counted(tiny_replica, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_replica.url, data)
    manifest = load_or_build_manifest(str(data), config_for("family_user"), cache_dir=str(tmp_path / "cache"))
    names = manifest.table["file_name"].to_pylist()
    out = tmp_path / "out"
    plan = list(plan_files(manifest, config_for("family_user"), Settings(str(out), "-"), file_rows=FILE_ROWS))
    last = [t for t in plan if t.split == "train"][-1]  # its first image is bad: the files before it complete
    bad, gone = last.start, 5
    truncated, missing = data / names[bad], data / names[gone]
    truncated.write_bytes(truncated.read_bytes()[:200])
    expected = rf"{last.relative}: .*{names[bad]}: corrupt image .*image id .*3 of 5 files complete; rerun"
    with pytest.raises(BadImageError, match=expected):
        run(out, str(data), tmp_path / "cache")
    failed = json.loads((out / REPORT_FILE).read_text())
    assert not failed["complete"] and "BadImageError" in failed["error"] and failed["totals"]["files"] == 3
    done = sorted(p.name for p in (out / "data/family_user").glob("train-*"))  # complete files stay
    assert done == [f"train-{i:05d}-of-00004.parquet" for i in range(3)]
    missing.unlink()
    report = run(out, str(data), tmp_path / "cache", on_bad_image="skip")
    totals = report["totals"]
    assert totals["rows_in"] == 171 and totals["rows_written"] == 169 and totals["rows_skipped"] == 2
    assert totals["skipped_by_reason"] == {"corrupt image": 1, "unreadable": 1}
    skipped = {row["file_name"]: row["reason"] for f in report["files"] for row in f["skipped"]}
    assert set(skipped) == {names[bad], names[gone]} and "not found" in skipped[names[gone]].lower()
    for entry in report["files"]:
        assert entry["rows_in"] == entry["rows_written"] + entry["rows_skipped"]
    loaded = datasets.load_dataset(str(out), "family_user")
    assert loaded["train"].num_rows + loaded["validation"].num_rows == 169
    card = (out / "README.md").read_text()
    assert "num_examples: 169" in card or "num_examples: 129" in card
    again = run(out, str(data), tmp_path / "cache", on_bad_image="skip")  # reused files keep their skip lists
    assert again["totals"] == {**totals, "files_written": 0, "files_reused": totals["files"]}


@pytest.mark.slow
def test_killed_driver_and_rerun_give_the_same_bytes(reference, tiny_replica, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    shutil.copytree(reference[1], cache)  # the manifest is cached: the run starts quickly
    command = [sys.executable, "-m", "inat_hf.cli", "prepare", str(out), "--data-dir", tiny_replica.url,
               "--cache-dir", str(cache), "--scheduler", "local", "--workers", "2", "--file-rows", "5"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, env=env, start_new_session=True, stderr=subprocess.PIPE)
    folder, deadline = out / "data/family_user", time.monotonic() + 240
    while not (folder.is_dir() and any(p.name.startswith("train-") for p in folder.iterdir())):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()[-2000:]
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # the driver, the nannies and the workers, at once
    process.wait()
    time.sleep(0.5)
    complete = [p for p in folder.iterdir() if not p.name.startswith(".")]
    assert process.returncode == -signal.SIGKILL and complete and not (out / "README.md").exists()
    copy = [p.name for p in out.glob(".inat-fl-prepare-family_user-*.arrow")]  # the tasks' rows, written first
    assert len(copy) == 1
    report = run(out, tiny_replica.url, cache, file_rows=5)
    assert len(complete) < report["files_planned"]  # killed part-way
    assert report["totals"]["files_reused"] >= 1 and report["totals"]["files_written"] >= 1
    assert report["rows_copies"] == {copy[0]: "reused"} and not list(out.glob(".inat-fl-prepare-*"))
    uninterrupted = tmp_path / "uninterrupted"
    run(uninterrupted, tiny_replica.url, cache, file_rows=5)
    assert files_of(out) == files_of(uninterrupted)


def test_prepare_set_train_split_train_mini(tiny_replica, tmp_path, capsys):
    """``inat-fl prepare --set train_split=train_mini``: train_mini's rows, and a card that says so; a rerun (every
    manifest cached) writes the same card; configs of both pools in one run each get their own metadata."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["prepare", str(out), "--data-dir", tiny_replica.url, "--set", "train_split=train_mini",
            "--scheduler", "synchronous", "--cache-dir", str(cache)]  # fmt: skip
    assert main(argv) == 0
    mini = tiny_replica.counts.train_mini_images
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["totals"]["rows_in"] == report["totals"]["rows_written"] == mini + tiny_replica.counts.val_images
    manifest = load_or_build_manifest(tiny_replica.url, config_for("family_user", train_split="train_mini"),
                                      cache_dir=cache)  # fmt: skip
    train = datasets.load_dataset(str(out), "family_user", split="train")
    assert train.num_rows == manifest.split_range("train")[1] == mini
    assert all(name.startswith("train_mini/") for name in train["file_name"])
    card = (out / "README.md").read_text()
    assert f"({mini:,} train_mini, {tiny_replica.counts.val_images:,} val images" in card
    assert "from `train_mini` (not `train`)" in card and 'train_split="train_mini")' in card
    assert "| rank | names in train_mini |" in card and f"Computed on the {mini:,} train_mini images" in card
    assert main(argv) == 0  # every manifest cached now: the card loads train_mini's metadata itself
    assert (out / "README.md").read_text() == card
    capsys.readouterr()
    both = tmp_path / "both"
    configs = [config_for("family_user", train_split="train_mini"), config_for("order_user")]
    report = prepare(str(both), tiny_replica.url, configs, cache_dir=str(tmp_path / "cache-both"),
                     scheduler="synchronous", progress=None)  # fmt: skip
    write_card(str(both), tiny_replica.url, report, cache_dir=str(tmp_path / "cache-both"))
    rows = {name: c["rows"] for name, c in report["configs"].items()}
    counts = tiny_replica.counts
    assert rows == {"family_user": mini + counts.val_images, "order_user": counts.train_images + counts.val_images}
    assert "names in train_mini" in (both / "README.md").read_text()  # the default config's pool
