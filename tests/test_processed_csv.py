"""The processed CSV gives every rank: the replica's ``training_image_info.csv`` (pandas' ``to_csv`` of its
``train.json``, index column first, beside ``val.json``) prepares every non-geo preset with the clients and
labels of ``train.json``, locally, through the builder, and from Azure (Azurite)."""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow.compute as pc
import pytest

from inat_hf import load_metadata, metadata_report, storage
from inat_hf.config import config_for, presets
from inat_hf.manifest import Manifest, load_or_build_manifest
from inat_hf.metadata import image_dirs
from inat_hf.taxonomy import RANKS
from inaturalist_fl import INaturalistFL

NON_GEO = [preset.name for preset in presets() if not preset.scheme.startswith("geo")]
SAME = ("split", "client_id", "image_id", "label", "species_id", *RANKS, "user", "file_name", "width", "height")
"""What the CSV has: everything but the locations, dates and licences (not in it)."""


def assert_same_manifest(csv: Manifest, official: Manifest) -> None:
    assert csv.label_names == official.label_names
    assert csv.clients.equals(official.clients)
    assert csv.dropped.equals(official.dropped)
    for column in SAME:
        assert csv.table[column].to_pylist() == official.table[column].to_pylist(), column


def test_the_csv_loads_the_table_of_train_json(tiny_csv_replica, tiny_replica):
    text = (Path(tiny_csv_replica.url) / "training_image_info.csv").read_text()
    assert text.startswith(",image_id,user,width,height,file_name,phylum,class,order,species\n0,")  # pandas' index
    csv, official = load_metadata(tiny_csv_replica.url), load_metadata(tiny_replica.url)
    for column in ("image_id", "split", "user", "width", "height", "file_name", "species_id", *RANKS):
        a, b = csv[column].combine_chunks(), official[column].combine_chunks()
        assert a.equals(b), column
        if column in RANKS:  # the same label vocabulary, in the same (official taxonomic) order
            assert a.dictionary.equals(b.dictionary), column
    report = metadata_report(csv).files[0]
    assert report.rows_in == report.rows_out == tiny_replica.counts.train_images and not report.nulled
    # The CSV alone: the same names on every row; the vocabulary is its own species, in taxonomic order.
    alone = load_metadata(f"{tiny_csv_replica.url}/training_image_info.csv")
    train = official.filter(pc.equal(official["split"], "train"))
    for rank in RANKS:
        assert alone[rank].to_pylist() == train[rank].to_pylist(), rank
    order = sorted(set(train["species_id"].to_pylist()))
    names = dict(zip(train["species_id"].to_pylist(), train["species"].to_pylist(), strict=True))
    assert alone["species"].combine_chunks().dictionary.to_pylist() == [names[i] for i in order]
    assert len(alone["family"].combine_chunks().dictionary) == tiny_replica.counts.rank_counts["family"]


def test_folders_read_slice_by_slice_give_the_same_table(tiny_csv_replica, monkeypatch):
    whole = load_metadata(tiny_csv_replica.url)
    monkeypatch.setattr(image_dirs, "_SLICE_ROWS", 7)  # 131 rows: 19 slices, folders repeated across them
    assert load_metadata(tiny_csv_replica.url).equals(whole, check_metadata=True)


def test_every_non_geo_preset_has_the_clients_and_labels_of_train_json(tiny_csv_replica, tiny_replica, tmp_path):
    assert len(NON_GEO) == 3 * len(RANKS)
    csv, official = load_metadata(tiny_csv_replica.url), load_metadata(tiny_replica.url)
    for name in NON_GEO:
        config = config_for(name, min_client_size=2, test_fraction=0.2, num_partitions=4, min_partition_size=5)
        from_csv = load_or_build_manifest(tiny_csv_replica.url, config, cache_dir=tmp_path / "csv", images=csv)
        from_json = load_or_build_manifest(tiny_replica.url, config, cache_dir=tmp_path / "json", images=official)
        assert from_csv.num_clients > 0, name
        assert_same_manifest(from_csv, from_json)


def _prepared(data_dir: str, cache: Path, **kwargs: object) -> INaturalistFL:
    builder = INaturalistFL(config_name="family_user", data_dir=data_dir, cache_dir=str(cache), **kwargs)
    builder.download_and_prepare()
    return builder


def _assert_same_examples(csv: INaturalistFL, official: INaturalistFL, columns: tuple[str, ...]) -> None:
    assert csv.info.features["label"].names == official.info.features["label"].names
    for split in ("train", "validation"):
        a, b = csv.as_dataset(split), official.as_dataset(split)
        assert a.num_rows == b.num_rows > 0
        for column in columns:
            assert a[column] == b[column], (split, column)


def test_the_builder_prepares_family_user_from_the_csv(tiny_csv_replica, tiny_replica, tmp_path):
    csv = _prepared(tiny_csv_replica.url, tmp_path / "csv", images_dir=tiny_replica.url)
    official = _prepared(tiny_replica.url, tmp_path / "json")
    columns = ("client_id", "image_id", "label", "species_id", *RANKS, "user", "file_name")
    _assert_same_examples(csv, official, columns)
    raw = datasets.Image(decode=False)
    images = [
        [row["bytes"] for row in b.as_dataset("train").cast_column("image", raw)["image"]] for b in (csv, official)
    ]
    assert images[0] == images[1]


@pytest.mark.azurite
def test_the_csv_on_azure_prepares_like_train_json(az_container, tiny_csv_replica, tiny_replica, tmp_path):
    url, options = f"{az_container.url}/inaturalist/2021", az_container.storage_options
    remote = storage.resolve(url, options)
    for name in ("training_image_info.csv", "val.json"):
        storage.write_bytes(remote, name, (Path(tiny_csv_replica.url) / name).read_bytes())
    official = load_metadata(tiny_replica.url)
    for name in ("family_user", "genus_user", "species_user"):
        config = config_for(name)
        from_azure = load_or_build_manifest(url, config, options, cache_dir=tmp_path / "azure")
        from_json = load_or_build_manifest(tiny_replica.url, config, cache_dir=tmp_path / "json", images=official)
        assert_same_manifest(from_azure, from_json)
    csv = _prepared(url, tmp_path / "azure", storage_options=options, with_images=False)
    columns = ("client_id", "image_id", "label", "species_id", *RANKS, "user", "file_name")
    _assert_same_examples(csv, _prepared(tiny_replica.url, tmp_path / "json", with_images=False), columns)
