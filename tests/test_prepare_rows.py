"""``prepare``'s tasks carry no rows: they read them from the copy of the manifest that the driver writes once
next to the output (reused after a failed run, written again for another plan, deleted when complete, never
loaded by ``datasets``), and a task refuses a copy that is not its plan's."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import pickle
import shutil
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

from inat_hf import storage
from inat_hf.config import config_for
from inat_hf.export import client_pseudonyms
from inat_hf.hub.folder import write_card
from inat_hf.manifest import load_or_build_manifest
from inat_hf.manifest.examples import BadImageError
from inat_hf.prepare import REPORT_FILE, Settings, plan_files, prepare, run_file
from inat_hf.prepare.rows import PSEUDONYM_COLUMN, ROWS_KEY, found_record, read_rows, write_copy

FILE_ROWS = 40


def run(out: Path, data: str, cache: Path, **kwargs: object) -> dict:
    options = {"cache_dir": str(cache), "scheduler": "synchronous", "file_rows": FILE_ROWS, "progress": None}
    return prepare(str(out), data, ["family_user"], **{**options, **kwargs})


def copies(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if "inat-fl-prepare-" in p.name)


def test_a_task_is_small_and_holds_no_row(small_metadata, tmp_path):
    config = config_for("family_user")
    manifest = load_or_build_manifest(small_metadata.url, config, cache_dir=str(tmp_path / "cache"))
    settings = Settings(str(tmp_path / "out"), small_metadata.url)
    sizes = {}
    for file_rows in (40, 2_000):
        plan = list(plan_files(manifest, config, settings, file_rows=file_rows))
        assert [t.rows_index for t in plan] == list(range(len(plan)))
        assert {t.rows_file for t in plan} == {f".inat-fl-prepare-family_user-{manifest.fingerprint}.arrow"}
        blobs = [pickle.dumps(task) for task in plan]
        assert all(b".jpg" not in blob and b"train/" not in blob for blob in blobs)  # no file name, no row
        sizes[file_rows] = max(len(blob) for blob in blobs)
    assert sizes[2_000] < 2_000 and sizes[2_000] <= sizes[40] + 8  # the same whatever the file's rows


def test_the_copy_is_reused_after_a_failure_rewritten_for_another_plan_and_removed(tiny_replica, tmp_path):
    data, cache, out = tmp_path / "data", tmp_path / "cache", tmp_path / "out"
    shutil.copytree(tiny_replica.url, data)
    manifest = load_or_build_manifest(str(data), config_for("family_user"), cache_dir=str(cache))
    name = f".inat-fl-prepare-family_user-{manifest.fingerprint}.arrow"
    plan = list(plan_files(manifest, config_for("family_user"), Settings(str(out), "-"), file_rows=FILE_ROWS))
    bad = data / manifest.table["file_name"][plan[-2].start].as_py()  # a file late in the plan fails
    good = bad.read_bytes()
    bad.write_bytes(good[:200])
    with pytest.raises(BadImageError):
        run(out, str(data), cache)
    failed = json.loads((out / REPORT_FILE).read_text())
    assert failed["rows_copies"] == {name: "written"} and copies(out) == [name]
    record = found_record(storage.resolve(str(out)), name)
    assert record is not None and record["files"] == [[t.relative, t.start, t.stop] for t in plan]
    (out / f".{name}.0123abcd.part").write_bytes(b"left by a killed write")  # open_output's staging name
    (out / ".inat-fl-prepare-family_user-0000000000000000.arrow").write_bytes(b"another fingerprint's")
    (out / ".inat-fl-prepare-order_user-0000000000000000.arrow").write_bytes(b"another config's: kept")
    bad.write_bytes(good)
    report = run(out, str(data), cache)
    assert report["complete"] and report["rows_copies"] == {name: "reused"}  # found, checked, not written again
    assert report["totals"]["rows_in"] == report["totals"]["rows_written"] == 171
    assert copies(out) == [".inat-fl-prepare-order_user-0000000000000000.arrow"]  # this config's: all deleted
    bad.write_bytes(good[:200])
    (out / "data/family_user/train-00003-of-00004.parquet").unlink()
    with pytest.raises(BadImageError):
        run(out, str(data), cache)
    with pytest.raises(BadImageError):  # another plan over the copy a failed run left: written again
        run(out, str(data), cache, file_rows=60)
    assert json.loads((out / REPORT_FILE).read_text())["rows_copies"] == {name: "written"}


def test_datasets_never_loads_the_copy(tiny_replica, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    write_card(str(out), tiny_replica.url, run(out, tiny_replica.url, cache), cache_dir=str(cache))
    expected = datasets.load_dataset(str(out), "family_user", cache_dir=str(tmp_path / "hf1"))
    manifest = load_or_build_manifest(tiny_replica.url, config_for("family_user"), cache_dir=str(cache))
    plan = list(plan_files(manifest, config_for("family_user"), Settings(str(out), "-"), file_rows=FILE_ROWS))
    write_copy(storage.resolve(str(out)), plan, (manifest.table.slice(t.start, t.rows_in) for t in plan),
               manifest.label_names, client_pseudonyms(manifest.table, config_for("family_user")))  # fmt: skip
    # as a killed run leaves it, beside a complete output
    assert copies(out) == [plan[0].rows_file]
    configs = DatasetCard.load(out / "README.md").data.to_dict()["configs"]
    globs = [entry["path"] for config in configs for entry in config["data_files"]]
    assert globs and not [g for g in globs if fnmatch.fnmatch(plan[0].rows_file, g)]
    resolved = datasets.load_dataset_builder(str(out), "family_user", cache_dir=str(tmp_path / "hf2")).config
    assert not [f for files in resolved.data_files.values() for f in files if "inat-fl-prepare" in f]
    loaded = datasets.load_dataset(str(out), "family_user", cache_dir=str(tmp_path / "hf2"))
    assert {s: d.num_rows for s, d in loaded.items()} == {s: d.num_rows for s, d in expected.items()}
    assert loaded["train"]["image_id"] == expected["train"]["image_id"]


def test_a_task_refuses_a_copy_that_is_not_its_plans(tiny_replica, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    manifest = load_or_build_manifest(tiny_replica.url, config_for("family_user"), cache_dir=str(cache))
    settings = Settings(str(out), tiny_replica.url)
    plan = list(plan_files(manifest, config_for("family_user"), settings, file_rows=FILE_ROWS))
    loc = storage.resolve(str(out))
    with pytest.raises(storage.StorageNotFoundError, match=r"rows copy is missing.*rerun prepare"):
        run_file(plan[1])
    names = client_pseudonyms(manifest.table, config_for("family_user"))
    write_copy(loc, plan, (manifest.table.slice(t.start, t.rows_in) for t in plan), manifest.label_names, names)
    got = read_rows(loc, plan[1])
    rows = got.table
    assert rows["image_id"].to_pylist() == manifest.table["image_id"][plan[1].start : plan[1].stop].to_pylist()
    assert got.label_names == manifest.label_names and ROWS_KEY not in (rows.schema.metadata or {})
    assert PSEUDONYM_COLUMN not in rows.column_names and rows.column_names == manifest.table.column_names
    assert got.pseudonyms == {c: names[c] for c in set(rows["client_id"].to_pylist())}  # the whole manifest's
    assert read_rows(loc, next(t for t in plan if t.split == "validation")).pseudonyms == {}  # central
    assert run_file(plan[1])["rows_written"] == plan[1].rows_in
    other = next(t for t in plan_files(manifest, config_for("family_user"), settings, file_rows=60) if t.rows_index)
    with pytest.raises(storage.StorageError, match=rf"does not hold {other.relative} .*rerun prepare"):
        run_file(other)
    with pytest.raises(storage.StorageError, match="does not hold"):
        run_file(dataclasses.replace(plan[2], fingerprint="0" * 16))  # plan[1] is written: reused, not read
    assert not (out / other.relative).exists() and not (out / plan[2].relative).exists()
