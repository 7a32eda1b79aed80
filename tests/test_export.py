"""The Hub-ready export: load_dataset by config name, attach_images, one client's row groups, privacy."""

from __future__ import annotations

import json

import datasets
import pyarrow.parquet as pq
import pytest

import inat_hf.export.files as export_module
import inat_hf.manifest.layout as layout_module
from inat_hf import load_metadata
from inat_hf.config import config_for
from inat_hf.export import attach_images, pseudonym, read_client
from inat_hf.hub.folder import export_dataset, write_card
from inat_hf.hub.push import plan_push
from inat_hf.manifest import load_or_build_manifest
from inat_hf.prepare import REPORT_FILE, prepare
from inaturalist_fl import INaturalistFL

CONFIGS = ["family_user", "class_geo1k"]


@pytest.fixture(scope="module")
def exported(small_metadata, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    cache = tmp_path_factory.mktemp("cache")
    written = export_dataset(str(out), small_metadata.url, CONFIGS, cache_dir=str(cache))
    return out, cache, written


def test_configs_load_by_name_normal_and_streaming(exported, small_metadata):
    out, cache, written = exported
    assert sorted(datasets.get_dataset_config_names(str(out))) == sorted(CONFIGS)
    for name in CONFIGS:
        manifest = load_or_build_manifest(small_metadata.url, config_for(name), cache_dir=str(cache))
        loaded = datasets.load_dataset(str(out), name)
        assert set(loaded) == set(written[name]) == {"train", "validation"}
        assert loaded["train"].features["label"].names == list(manifest.label_names)
        train = manifest.table.slice(*manifest.split_range("train"))
        assert loaded["train"]["image_id"] == train["image_id"].to_pylist()
        assert loaded["train"]["client_id"] == train["client_id"].to_pylist()
        assert loaded["train"]["label"] == train["label"].to_pylist()
        assert loaded["validation"].num_rows == small_metadata.counts.val_images
        streamed = datasets.load_dataset(str(out), name, streaming=True)
        assert [row["image_id"] for row in streamed["train"]] == loaded["train"]["image_id"]
    default = datasets.load_dataset(str(out), split="train")
    assert default["client"][0].startswith("u")  # family_user is the default config


def test_manifest_only_and_pseudonymous_by_default(exported, small_metadata):
    out, _, _ = exported
    loaded = datasets.load_dataset(str(out), "family_user", split="train")
    assert "image" not in loaded.features and "user" not in loaded.features
    images = load_metadata(small_metadata.url)
    user_of = dict(zip(images["image_id"].to_pylist(), images["user"].to_pylist(), strict=True))
    for row in loaded.select(range(0, loaded.num_rows, 97)):
        assert row["client"] == pseudonym(user_of[row["image_id"]])
    geo = datasets.load_dataset(str(out), "class_geo1k", split="validation")
    assert set(geo["client"]) == {"central"} and set(geo["client_id"]) == {-1}


def test_one_client_reads_only_its_row_groups(small_metadata, tmp_path, monkeypatch):
    monkeypatch.setattr(layout_module, "EXPORT_ROW_GROUP_ROWS", 100)
    out = tmp_path / "export"
    export_dataset(str(out), small_metadata.url, ["family_user"], cache_dir=str(tmp_path / "cache"))
    path = out / "data" / "family_user" / "train-00000-of-00001.parquet"
    total_groups = pq.ParquetFile(path).metadata.num_row_groups
    assert total_groups > 10
    reads: list[int] = []
    real_open = export_module.storage.open_binary

    class Counting:
        def __init__(self, handle):
            self.handle = handle

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def read(self, size=-1):
            data = self.handle.read(size)
            reads.append(len(data))
            return data

    def counting_open(loc, relative=""):
        context = real_open(loc, relative)

        class Wrapper:
            def __enter__(self):
                return Counting(context.__enter__())

            def __exit__(self, *exc):
                return context.__exit__(*exc)

        return Wrapper()

    monkeypatch.setattr(export_module.storage, "open_binary", counting_open)
    full = datasets.load_dataset(str(out), "family_user", split="train")
    for client in (0, 50, max(full["client_id"])):
        reads.clear()
        rows, groups = read_client(str(out), "family_user", client)
        assert rows["image_id"].to_pylist() == [r["image_id"] for r in full if r["client_id"] == client]
        assert groups == 1 < total_groups
        # The footer (with its 64 KiB read-ahead) plus one row group: a small part of the row data.
        footer = pq.ParquetFile(path).metadata.serialized_size + 65_536
        assert sum(reads) - footer < (path.stat().st_size - footer) / 5


def test_attach_images_gives_the_builder_examples(tiny_replica, tmp_path):
    out = tmp_path / "export"
    export_dataset(str(out), tiny_replica.url, ["family_user"], cache_dir=str(tmp_path / "cache"))
    builder = INaturalistFL(config_name="family_user", data_dir=tiny_replica.url, cache_dir=str(tmp_path / "hf"))
    builder.download_and_prepare()
    reference = builder.as_dataset("train").cast_column("image", datasets.Image(decode=False))
    loaded = attach_images(datasets.load_dataset(str(out), "family_user", split="train"), tiny_replica.url)
    streamed = attach_images(
        datasets.load_dataset(str(out), "family_user", split="train", streaming=True), tiny_replica.url
    )
    common = [name for name in reference.features if name in loaded.features or name == "image"]
    for ref, got, flowing in zip(reference, loaded, streamed, strict=True):
        for name in common:
            if name == "image":
                with open(f"{tiny_replica.url}/{ref['file_name']}", "rb") as handle:
                    raw = handle.read()
                assert ref["image"]["bytes"] == raw
                assert got["image"].tobytes() == flowing["image"].tobytes()
                assert got["image"].size == (ref["width"], ref["height"])
            else:
                assert got[name] == ref[name] == flowing[name], name


def test_with_images_and_push_plan(tiny_replica, tmp_path):
    out = tmp_path / "export"
    export_dataset(
        str(out), tiny_replica.url, ["family_user"], cache_dir=str(tmp_path / "c"), with_images=True, include_user=True
    )
    loaded = datasets.load_dataset(str(out), "family_user", split="validation")
    row = loaded.cast_column("image", datasets.Image(decode=False))[0]
    with open(f"{tiny_replica.url}/{row['file_name']}", "rb") as handle:
        assert row["image"]["bytes"] == handle.read()
    assert "user" in loaded.features
    with pytest.raises(ValueError, match="holds image bytes; the iNat terms forbid redistributing"):
        plan_push(out)
    plan = plan_push(out, allow_images=True)
    assert plan.configs == {"family_user": ["train", "validation"]}
    assert "README.md" in plan.files and plan.total_bytes > 0
    assert (out / REPORT_FILE).is_file() and REPORT_FILE not in plan.files  # the run's log stays local


def test_push_plan_refuses_a_folder_without_card(tmp_path):
    with pytest.raises(ValueError, match=r"no README\.md"):
        plan_push(tmp_path)


@pytest.mark.azurite
def test_export_to_azure_and_read_one_client(small_metadata, az_container, tmp_path):
    url = f"{az_container.url}/export"
    export_dataset(
        url,
        small_metadata.url,
        ["family_user"],
        cache_dir=str(tmp_path / "cache"),
        out_storage_options=az_container.storage_options,
    )
    rows, groups = read_client(url, "family_user", 3, storage_options=az_container.storage_options)
    local = tmp_path / "local"
    export_dataset(str(local), small_metadata.url, ["family_user"], cache_dir=str(tmp_path / "cache"))
    expected, _ = read_client(str(local), "family_user", 3)
    assert rows.equals(expected) and groups == 1


# --- one write path: the export is prepare run in this process ----------------------------------------------


def _written(out) -> dict[str, bytes]:
    """Every data file, the card and its figure of a folder: relative path -> bytes."""
    found = sorted([*out.glob("data/**/*.parquet"), out / "README.md", *out.glob("assets/*")])
    return {str(p.relative_to(out)): p.read_bytes() for p in found}


def test_export_and_prepare_on_a_cluster_write_identical_files(small_metadata, tmp_path):
    from inat_hf.cli import main

    data, cache = small_metadata.url, str(tmp_path / "cache")
    configs = ["--config", "family_user", "--config", "class_geo1k", "--set", "test_fraction=0.25"]
    exported, prepared = tmp_path / "exported", tmp_path / "prepared"
    assert main(["export", str(exported), "--data-dir", data, *configs, "--cache-dir", cache]) == 0
    argv = ["prepare", str(prepared), "--data-dir", data, *configs, "--set", "with_images=false",
            "--scheduler", "local", "--workers", "1", "--cache-dir", cache]  # fmt: skip
    assert main(argv) == 0
    export_files, prepare_files = _written(exported), _written(prepared)
    names = [n for n in export_files if n.startswith("data/")]
    assert {n.split("/")[1] for n in names} == {"family_user", "class_geo1k"}
    assert {n.rsplit("/", 1)[1].split("-")[0] for n in names} == {"train", "test", "validation"}
    assert export_files == prepare_files  # every Parquet file byte for byte, the card and its figure
    reports = [json.loads((out / REPORT_FILE).read_text()) for out in (exported, prepared)]
    assert reports[0]["totals"] == reports[1]["totals"] and reports[0]["scheduler"] == "synchronous"
    card = export_files["README.md"].decode()
    assert "**No image bytes are included**" in card and "with_images" not in card
    assert "from inat_hf.export import attach_images" in card


def test_export_with_images_is_prepare_and_its_card_says_so(tiny_replica, tmp_path):
    cache = str(tmp_path / "cache")
    export_dataset(str(tmp_path / "exported"), tiny_replica.url, ["family_user"], cache_dir=cache, with_images=True)
    report = prepare(str(tmp_path / "prepared"), tiny_replica.url, ["family_user"], cache_dir=cache,
                     scheduler="synchronous", progress=None)  # fmt: skip
    write_card(str(tmp_path / "prepared"), tiny_replica.url, report, cache_dir=cache)
    exported = _written(tmp_path / "exported")
    assert exported == _written(tmp_path / "prepared")
    parquet = [n for n in exported if n.endswith(".parquet")]
    assert parquet and all(pq.read_schema(tmp_path / "exported" / n).names[0] == "image" for n in parquet)
    card = exported["README.md"].decode()
    assert "**The image bytes are included**" in card and "No image bytes" not in card
    assert "for private use only" in card and "not redistributed here" not in card
    assert "attach_images" not in card and "with_images" not in card
    with pytest.raises(ValueError, match=r"overrides with_images=True contradicts with_images=False"):
        export_dataset(str(tmp_path / "x"), tiny_replica.url, ["family_user"], overrides={"with_images": True})


def test_the_card_of_an_unfinished_run_is_refused(tiny_replica, tmp_path):
    out = tmp_path / "out"
    export_dataset(str(out), tiny_replica.url, ["family_user"], cache_dir=str(tmp_path / "cache"))
    report = json.loads((out / REPORT_FILE).read_text())
    assert write_card(str(out), tiny_replica.url, cache_dir=str(tmp_path / "cache")) == (out / "README.md").read_text()
    (out / REPORT_FILE).write_text(json.dumps({**report, "complete": False, "error": "KeyboardInterrupt: "}))
    with pytest.raises(ValueError, match=r"prepare_report\.json: the prepare run did not complete"):
        write_card(str(out), tiny_replica.url, cache_dir=str(tmp_path / "cache"))
