"""``train_mini``: the replica writes it like the official one, and ``train_split="train_mini"`` builds clients,
labels and the holdout from it with every scheme (validation stays the official val)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from inat_hf import replica as sample
from inat_hf.cli import main
from inat_hf.config import config_for
from inat_hf.errors import MetadataError
from inat_hf.manifest import build_manifest, load_or_build_manifest, manifest_fingerprint
from inat_hf.metadata import load_metadata
from inat_hf.storage import resolve
from inaturalist_fl import INaturalistFL

MINI = {"tiny": (20, 2, 40), "small": (100, 5, 500), "full": (10_000, 50, 500_000)}
"""Scale: (species, images per species, train_mini images)."""


@pytest.mark.parametrize("scale", ["tiny", "small", pytest.param("full", marks=pytest.mark.slow)])
def test_replica_train_mini_is_a_subset_of_train_with_exact_counts(scale):
    species, per_species, total = MINI[scale]
    built = sample.build_replica(scale, seed=0)
    mini, train = built.train_mini, built.train
    assert mini.num_rows == built.counts.train_mini_images == total
    per = np.bincount(mini["category_id"].to_numpy())
    assert np.count_nonzero(per) == species and set(per[per > 0].tolist()) == {per_species}
    ids = mini["id"].to_numpy()
    assert np.all(np.diff(ids) > 0)  # id order, no duplicate
    drawn = train.take(ids)  # train ids are 0..N-1, so an id is its row
    for name in ("id", "category_id", "rights_holder", "latitude", "longitude", "date", "license", "width"):
        assert mini[name].equals(drawn[name]), name
    moved = pc.replace_substring_regex(drawn["file_name"], "^train/", "train_mini/")
    assert mini["file_name"].equals(moved)


def test_written_train_mini_json_and_images(tiny_replica):
    root, counts = Path(tiny_replica.url), tiny_replica.counts
    data = json.loads((root / "train_mini.json").read_text())
    assert list(data) == ["info", "images", "categories", "annotations", "licenses"]
    assert len(data["images"]) == len(data["annotations"]) == counts.train_mini_images == 40
    train = {im["id"]: im for im in json.loads((root / "train.json").read_text())["images"]}
    for image in data["images"]:
        original = train[image["id"]]
        assert image == {**original, "file_name": "train_mini/" + original["file_name"].removeprefix("train/")}
        assert (root / image["file_name"]).read_bytes() == (root / original["file_name"]).read_bytes()
    assert len(list((root / "train_mini").rglob("*.jpg"))) == 40


def test_load_metadata_train_split(tiny_replica):
    table = load_metadata(tiny_replica.url, train_split="train_mini")
    assert _counts(table) == (["train_mini", "val"], [40, 40])
    with pytest.raises(ValueError, match="train_split='mini' is invalid"):
        load_metadata(tiny_replica.url, train_split="mini")


def _counts(table):
    counts = pc.value_counts(table["split"].combine_chunks().dictionary_decode()).to_pylist()
    return [c["values"] for c in counts], [c["counts"] for c in counts]


def test_config_field_is_checked_and_in_the_fingerprint(tiny_replica):
    with pytest.raises(ValueError, match=r"train_split='val' is invalid; allowed: train, train_mini"):
        config_for("family_user", train_split="val")
    source = resolve(tiny_replica.url)
    train, mini = config_for("family_user"), config_for("family_user", train_split="train_mini")
    assert mini.fingerprint_fields()["train_split"] == "train_mini"
    assert manifest_fingerprint(source, train) != manifest_fingerprint(source, mini)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("family_user", {}),
        ("family_user", {"min_client_size": 3, "test_fraction": 0.25}),
        ("species_dirichlet", {"num_partitions": 4, "min_partition_size": 2}),
        ("order_iid", {"num_partitions": 5, "holdout_client_fraction": 0.2}),
        ("class_geo1k", {"max_clients": 3}),
    ],
)
def test_every_scheme_on_train_mini(tiny_replica, name, overrides):
    images = load_metadata(tiny_replica.url, train_split="train_mini")
    config = config_for(name, train_split="train_mini", **overrides)
    manifest = build_manifest(images, config)
    train_rows = manifest.split_range("train")[1] + manifest.split_range("test")[1]
    assert train_rows + manifest.dropped.filter(pc.equal(manifest.dropped["split"], "train")).num_rows == 40
    kept = manifest.table.filter(pc.not_equal(manifest.table["split"], "validation"))
    assert all(name.startswith("train_mini/") for name in kept["file_name"].to_pylist())
    assert manifest.split_range("validation")[1] == 40  # the official val, whatever the train pool
    assert set(manifest.table.slice(*manifest.split_range("validation"))["client_id"].to_pylist()) == {-1}


def test_processed_csv_of_train_mini(tiny_replica, tmp_path):
    images = load_metadata(str(Path(tiny_replica.url) / "train_mini.json"))
    csv = images.select(["image_id", "user", "width", "height", "file_name", "phylum", "class", "order"])
    species = pc.cast(images["species_id"], "string")
    pacsv.write_csv(csv.append_column("species", species), tmp_path / "train_mini_image_info.csv")
    (tmp_path / "val.json").write_bytes((Path(tiny_replica.url) / "val.json").read_bytes())
    table = load_metadata(str(tmp_path), train_split="train_mini")
    assert _counts(table) == (["train_mini", "val"], [40, 40])
    manifest = load_or_build_manifest(str(tmp_path), config_for("order_user", train_split="train_mini"),
                                      cache_dir=tmp_path / "cache")  # fmt: skip
    assert manifest.split_range("train")[1] == 40 and manifest.split_range("validation")[1] == 40
    with pytest.raises(MetadataError, match=r"no metadata for split 'train'.*training_image_info.csv"):
        load_metadata(str(tmp_path))  # train_split="train": no train file here


def test_builder_and_cli_on_train_mini(tiny_replica, tmp_path, capsys):
    builder = INaturalistFL(
        config_name="family_user", data_dir=tiny_replica.url, cache_dir=str(tmp_path), train_split="train_mini"
    )
    builder.download_and_prepare()
    train = builder.as_dataset("train")
    assert train.num_rows == 40 and builder.as_dataset("validation").num_rows == 40
    assert all(name.startswith("train_mini/") for name in train["file_name"])
    default = INaturalistFL(config_name="family_user", data_dir=tiny_replica.url, cache_dir=str(tmp_path))
    assert default.config_id != builder.config_id
    out = tmp_path / "stats"
    argv = [
        "stats",
        "family_user",
        "--data-dir",
        tiny_replica.url,
        "--out",
        str(out),
        "--set",
        "train_split=train_mini",
    ]
    assert main([*argv, "--cache-dir", str(tmp_path)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["config_fields"]["train_split"] == "train_mini"
    users = pacsv.read_csv(out / "images_and_categories_per_users.csv")
    assert sum(users["images"].to_pylist()) == 40
    export = tmp_path / "export"
    assert main(["export", str(export), "--data-dir", tiny_replica.url, "--set", "train_split=train_mini",
                 "--cache-dir", str(tmp_path)]) == 0  # fmt: skip
    assert (export / "README.md").is_file()
    capsys.readouterr()
