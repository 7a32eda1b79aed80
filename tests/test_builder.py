"""The ``datasets`` builder run for real on the tiny replica (local disk): splits, keys, clients, workers,
streaming, bad images, options and config errors. Azure Blob (Azurite) is in ``test_builder_azure.py``."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
import pytest
from PIL import Image

from inat_hf.builder import skipped_rows
from inat_hf.manifest import plan_shards, read_rows
from inat_hf.manifest.examples import BadImageError, check_image, example_key, iter_examples
from inat_hf.metadata import load_metadata
from inat_hf.schema import SPLITS
from inaturalist_fl import INaturalistFL

REPO = Path(__file__).resolve().parents[1]
MIN_CLIENT_SIZE = 2
CONFIG = {"test_fraction": 0.2, "min_client_size": MIN_CLIENT_SIZE}
"""Per-client test rows, and the tiny replica's three one-image users dropped."""


def prepare(url: str, cache: Path, num_proc: int = 1, name: str = "family_user", **overrides: object) -> INaturalistFL:
    builder = INaturalistFL(config_name=name, data_dir=url, cache_dir=str(cache), **{**CONFIG, **overrides})
    builder.download_and_prepare(num_proc=num_proc)
    return builder


def examples(dataset: datasets.Dataset | datasets.IterableDataset) -> list[dict]:
    """Every example, images as their stored bytes (not decoded)."""
    if "image" in dataset.features:
        dataset = dataset.cast_column("image", datasets.Image(decode=False))
    return list(dataset)


def sha256s(rows: list[dict]) -> set[str]:
    return {hashlib.sha256(row["image"]["bytes"]).hexdigest() for row in rows}


@pytest.fixture(scope="module")
def prepared(tiny_replica, tmp_path_factory) -> dict[int, INaturalistFL]:
    """The tiny replica prepared with one and with two worker processes."""
    cache = tmp_path_factory.mktemp("builder-cache")
    return {n: prepare(tiny_replica.url, cache / f"proc{n}", num_proc=n) for n in (1, 2)}


@pytest.fixture(scope="module")
def rows(prepared) -> dict[str, list[dict]]:
    """The examples of each split (num_proc=1)."""
    return {split: examples(prepared[1].as_dataset(split)) for split in SPLITS}


def test_split_sizes_add_up_to_the_replica(prepared, rows, tiny_replica):
    counts, builder = tiny_replica.counts, prepared[1]
    images = load_metadata(tiny_replica.url)
    train_users = pc.value_counts(images.filter(pc.equal(images["split"], "train"))["user"]).to_pylist()
    expected_dropped = sum(u["counts"] for u in train_users if u["counts"] < MIN_CLIENT_SIZE)
    dropped = Counter(builder.manifest.dropped["split"].to_pylist())
    sizes = {split: builder.info.splits[split].num_examples for split in SPLITS}
    assert sizes == {split: len(rows[split]) for split in SPLITS}
    assert dropped["train"] == expected_dropped > 0
    assert sizes["train"] + sizes["test"] + dropped["train"] == counts.train_images
    assert sizes["validation"] == counts.val_images and dropped["validation"] == 0
    assert 0 < sizes["test"] < sizes["train"]
    assert set(builder.manifest.dropped["reason"].to_pylist()) == {"client_too_small"}


def test_no_image_in_two_splits(rows):
    ids = {split: [row["image_id"] for row in rows[split]] for split in SPLITS}
    digests = {split: sha256s(rows[split]) for split in SPLITS}
    for split in SPLITS:
        assert len(set(ids[split])) == len(ids[split]) == len(digests[split])
    for a, b in itertools.combinations(SPLITS, 2):
        assert not set(ids[a]) & set(ids[b]), (a, b)
        assert not digests[a] & digests[b], (a, b)


def test_keys_are_stable_unique_and_name_client_and_image(prepared, rows):
    """The builder's examples are ``iter_examples`` over its shards of the cached manifest, keyed by example_key."""
    builder = prepared[1]
    for split in SPLITS:
        shards = plan_shards(builder.manifest, split)
        if not shards:  # no rows in this split
            continue
        images = builder.source.images
        keys = [key for key, _ in iter_examples(read_rows(builder.manifest_key.parquet_file, shards), images)]
        again = [key for key, _ in iter_examples(read_rows(builder.manifest_key.parquet_file, shards), images)]
        assert keys == again and len(set(keys)) == len(keys)
        assert keys == [example_key(row) for row in rows[split]]


def test_every_client_is_one_contiguous_run(rows):
    for split in ("train", "test"):
        clients = [row["client_id"] for row in rows[split]]
        runs = [client for client, _ in itertools.groupby(clients)]
        assert runs == sorted(set(clients)) and min(clients) >= 0, split
    assert {row["client_id"] for row in rows["validation"]} == {-1}
    assert {row["client_id"] for row in rows["test"]} <= {row["client_id"] for row in rows["train"]}


def test_two_workers_write_exactly_what_one_writes(prepared):
    for split in SPLITS:
        one = prepared[1].as_dataset(split).with_format("arrow")[:]
        two = prepared[2].as_dataset(split).with_format("arrow")[:]
        assert two.num_rows == one.num_rows > 0
        assert two.equals(one), split


def test_streaming_yields_the_prepared_examples(prepared, rows):
    for split in SPLITS:
        streamed = examples(prepared[1].as_streaming_dataset(split))
        assert [r["image_id"] for r in streamed] == [r["image_id"] for r in rows[split]]
        assert streamed == rows[split], split


def test_streaming_shards_hold_whole_clients(prepared, rows):
    builder = prepared[1]
    stream = builder.as_streaming_dataset("train")
    shards = plan_shards(builder.manifest, "train")
    assert stream.num_shards == len(shards) > 1
    clients = [{row["client_id"] for row in stream.shard(stream.num_shards, i)} for i in range(stream.num_shards)]
    for a, b in itertools.combinations(clients, 2):
        assert not a & b
    assert set().union(*clients) == {row["client_id"] for row in rows["train"]}


def test_plan_shards_cover_the_split_and_never_cut_a_client(prepared):
    manifest = prepared[1].manifest
    for split in SPLITS:
        offset, length = manifest.split_range(split)
        shards = plan_shards(manifest, split)
        assert shards[0][0] == offset and shards[-1][1] == offset + length
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in itertools.pairwise(shards))
        client = manifest.table["client_id"].to_numpy()
        if split != "validation":
            assert all(client[start - 1] != client[start] for start, _ in shards[1:])


def test_labels_are_the_manifest_names_at_the_rank(prepared, rows):
    builder = prepared[1]
    names = builder.info.features["label"].names
    assert names == list(builder.manifest.label_names)
    assert all(names[row["label"]] == row["family"] for split in SPLITS for row in rows[split])


def test_a_rank_override_renames_the_config_and_relabels(tiny_replica, tmp_path):
    builder = prepare(tiny_replica.url, tmp_path, rank="genus", with_images=False)
    assert builder.config.name == "genus_user"
    dataset = builder.as_dataset("train")
    names = dataset.features["label"].names
    assert names == list(builder.manifest.label_names)
    assert all(names[row["label"]] == row["genus"] for row in dataset)


def test_without_images_the_rows_are_the_same(prepared, tiny_replica, tmp_path):
    builder = prepare(tiny_replica.url, tmp_path, with_images=False)
    for split in SPLITS:
        table = builder.as_dataset(split).with_format("arrow")[:]
        assert "image" not in table.column_names and "image" not in builder.info.features
        assert table.equals(prepared[1].as_dataset(split).with_format("arrow")[:].drop_columns(["image"]))


def test_max_image_side_shrinks_the_larger_images(rows, tiny_replica, tmp_path):
    builder = prepare(tiny_replica.url, tmp_path, max_image_side=16)
    shrunk = examples(builder.as_dataset("train"))
    assert [r["image_id"] for r in shrunk] == [r["image_id"] for r in rows["train"]]
    larger = 0
    for before, after in zip(rows["train"], shrunk, strict=True):
        old = Image.open(io.BytesIO(before["image"]["bytes"])).size
        new = Image.open(io.BytesIO(after["image"]["bytes"])).size
        assert max(new) <= 16
        if max(old) > 16:
            larger += 1
            assert new[0] / new[1] == pytest.approx(old[0] / old[1], rel=0.2)
        else:
            assert after["image"]["bytes"] == before["image"]["bytes"]
    assert larger > 0


# --- bad images ------------------------------------------------------------------------------------------

BAD_KINDS = {
    "empty": "empty file",
    "truncated": "corrupt image",
    "garbage": "corrupt image",
    "missing": "unreadable",
    "escape": "escapes the data folder",
}


def break_copy(source: str, folder: Path, victims: dict[str, str]) -> str:
    """Copy the replica to ``folder/replica`` and damage one image per kind in ``victims`` (kind -> file)."""
    root = folder / "replica"
    shutil.copytree(source, root)
    for kind, name in victims.items():
        path = root / name
        if kind == "empty":
            path.write_bytes(b"")
        elif kind == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif kind == "garbage":
            path.write_bytes(b"\xff\xd8\xff" + np.random.default_rng(0).bytes(500))
        elif kind == "missing":
            path.unlink()
        else:  # escape: a file name with ../ that points at a real JPEG outside the data folder
            (folder / "outside.jpg").write_bytes(path.read_bytes())
            metadata = json.loads((root / "train.json").read_text())
            for image in metadata["images"]:
                if image["file_name"] == name:
                    image["file_name"] = "../outside.jpg"
            (root / "train.json").write_text(json.dumps(metadata))
    return str(root)


@pytest.fixture(scope="module")
def victims(rows) -> dict[str, dict]:
    """One train row per kind of damage, spread over the split."""
    train = rows["train"]
    picks = np.linspace(0, len(train) - 1, len(BAD_KINDS)).astype(int)
    return {kind: train[i] for kind, i in zip(BAD_KINDS, picks, strict=True)}


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_a_bad_image_stops_prepare_naming_file_and_reason(kind, victims, tiny_replica, tmp_path):
    url = break_copy(tiny_replica.url, tmp_path, {kind: victims[kind]["file_name"]})
    builder = INaturalistFL(config_name="family_user", data_dir=url, cache_dir=str(tmp_path / "cache"), **CONFIG)
    with pytest.raises(datasets.exceptions.DatasetGenerationError) as info:
        builder.download_and_prepare()
    assert isinstance(info.value.__cause__, BadImageError), repr(info.value.__cause__)
    message = str(info.value.__cause__)
    name = "../outside.jpg" if kind == "escape" else victims[kind]["file_name"]
    assert name in message and BAD_KINDS[kind] in message
    assert f"image id {victims[kind]['image_id']}" in message


def test_skip_leaves_bad_rows_out_and_lists_each_reason(victims, rows, tiny_replica, tmp_path):
    url = break_copy(tiny_replica.url, tmp_path, {kind: row["file_name"] for kind, row in victims.items()})
    builder = prepare(url, tmp_path / "cache", num_proc=2, on_bad_image="skip")
    skipped = skipped_rows(builder.cache_dir)
    assert skipped == skipped_rows(builder.cache_dir, "train") and not skipped_rows(builder.cache_dir, "test")
    reasons = {row["image_id"]: row["reason"] for row in skipped}
    assert len(reasons) == len(skipped) == len(BAD_KINDS)
    for kind, victim in victims.items():
        assert BAD_KINDS[kind] in reasons[victim["image_id"]], kind
    for split in SPLITS:
        kept = [row["image_id"] for row in examples(builder.as_dataset(split))]
        gone = [row["image_id"] for row in rows[split] if row["image_id"] in reasons]
        assert len(kept) + len(gone) == len(rows[split])
        assert kept == [row["image_id"] for row in rows[split] if row["image_id"] not in reasons]


def test_check_image_catches_a_jpeg_cut_short_after_its_headers():
    pixels = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    assert check_image(data) is None
    assert check_image(data + b"\0\0") is None
    for cut in (len(data) // 2, len(data) - 64):
        assert "corrupt image" in check_image(data[:cut])
    assert check_image(b"") == "empty file"
    assert "unknown signature" in check_image(b"GIF7 not an image")


# --- configs and errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"config_name": "bogus_user"}, "unknown config name 'bogus_user'"),
        ({"config_name": "family_teams"}, "scheme='teams'"),
        ({"min_clientsize": 3}, r"unknown config field\(s\) \['min_clientsize'\]"),
        ({"test_fraction": 1.5}, "test_fraction=1.5"),
        ({"on_bad_image": "ignore"}, "on_bad_image='ignore'"),
        ({"max_image_side": 4}, "max_image_side=4"),
    ],
)
def test_bad_configs_are_value_errors_naming_the_problem(kwargs, match, tiny_replica, tmp_path):
    with pytest.raises(ValueError, match=match):
        INaturalistFL(
            **{"config_name": "family_user", "data_dir": tiny_replica.url, "cache_dir": str(tmp_path), **kwargs}
        )


def test_a_missing_data_dir_is_a_clear_error(tmp_path):
    builder = INaturalistFL(config_name="family_user", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="needs data_dir"):
        builder.download_and_prepare()
    with pytest.raises(ValueError, match="needs data_dir"):
        builder.as_streaming_dataset("train")


def test_a_scheme_that_is_not_a_preset_works(tiny_replica, tmp_path):
    builder = prepare(tiny_replica.url, tmp_path, name="species_geo300", with_images=False, test_fraction=0.0)
    assert (builder.config.name, builder.config.rank, builder.config.scheme) == ("species_geo300", "species", "geo300")
    assert builder.info.splits["train"].num_examples == builder.manifest.split_range("train")[1] > 0


def test_changed_metadata_gets_a_new_cache(tiny_replica, tmp_path):
    url = str(tmp_path / "replica")
    shutil.copytree(tiny_replica.url, url)
    first = INaturalistFL(config_name="family_user", data_dir=url, cache_dir=str(tmp_path / "cache"))
    same = INaturalistFL(config_name="family_user", data_dir=url, cache_dir=str(tmp_path / "cache"))
    val = Path(url) / "val.json"
    val.write_text(val.read_text() + "\n")
    changed = INaturalistFL(config_name="family_user", data_dir=url, cache_dir=str(tmp_path / "cache"))
    assert first.cache_dir == same.cache_dir != changed.cache_dir


def test_builder_pickles_without_its_manifest(prepared):
    import pickle

    builder = prepared[1]
    assert builder.manifest.table.num_rows > 0
    copy = pickle.loads(pickle.dumps(builder))
    assert "manifest" not in copy.__dict__ and "manifest" in builder.__dict__
    assert copy.manifest.table.equals(builder.manifest.table)


@pytest.mark.slow
def test_the_loading_script_works_under_datasets_3_6():
    """``scripts/check_datasets36.sh``: its own venv (``.venv36``) with datasets 3.6.0 from PyPI, about a
    minute from scratch; ``load_dataset("inaturalist_fl.py", ...)`` split sizes against the replica."""
    run = subprocess.run(["bash", str(REPO / "scripts" / "check_datasets36.sh")], capture_output=True, text=True)
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert "datasets 3.6 check: passed" in run.stdout and "FAIL" not in run.stdout
