"""Images apart from the metadata: ``images_dir`` (+ ``image_storage_options``) on the builder, ``ClientStream``,
``export_dataset`` and ``inat-fl export``; it changes no manifest, and its credentials appear nowhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import pytest
from test_secrets import FAKE_KEY, Scanner, bad_connection_string

from inat_hf import StorageAuthError
from inat_hf.cli import main
from inat_hf.export import read_client
from inat_hf.federated.stream import ClientStream, stream_client
from inat_hf.hub.folder import export_dataset
from inat_hf.manifest.examples import BadImageError
from inat_hf.realcopy.check import check_data
from inat_hf.replica import write_sample
from inat_hf.source import Source
from inaturalist_fl import INaturalistFL

CONFIG = {"min_client_size": 1}


@pytest.fixture(scope="module")
def apart(tiny_replica, tmp_path_factory) -> tuple[str, str]:
    """The tiny replica split in two folders: (metadata only, images only)."""
    root = tmp_path_factory.mktemp("apart")
    meta, images = root / "meta", root / "images"
    meta.mkdir()
    for name in ("train.json", "val.json", "train_mini.json"):
        shutil.copy2(Path(tiny_replica.url) / name, meta / name)  # same mtime: same token
    for folder in ("train", "val", "train_mini"):
        shutil.copytree(Path(tiny_replica.url) / folder, images / folder)
    return str(meta), str(images)


def _rows(builder: INaturalistFL, split: str) -> list[dict]:
    return list(builder.as_dataset(split).cast_column("image", datasets.Image(decode=False)))


@pytest.fixture(scope="module")
def together(tiny_replica, tmp_path_factory) -> INaturalistFL:
    builder = INaturalistFL(config_name="family_user", data_dir=tiny_replica.url,
                            cache_dir=str(tmp_path_factory.mktemp("together")), **CONFIG)  # fmt: skip
    builder.download_and_prepare()
    return builder


def test_builder_reads_images_from_images_dir(apart, together, tmp_path):
    meta, images = apart
    builder = INaturalistFL(config_name="family_user", data_dir=meta, images_dir=images, cache_dir=str(tmp_path),
                            **CONFIG)  # fmt: skip
    assert builder.manifest_key.fingerprint == together.manifest_key.fingerprint  # images_dir: not in it
    assert builder.image_source.root == images and builder.source.metadata.root == meta
    builder.download_and_prepare(num_proc=2)
    for split in ("train", "validation"):
        assert _rows(builder, split) == _rows(together, split)
    stream = builder.as_streaming_dataset("train").cast_column("image", datasets.Image(decode=False))
    assert list(stream) == _rows(together, "train")
    other = INaturalistFL(config_name="family_user", data_dir=meta, images_dir=images + "/", cache_dir=str(tmp_path),
                          **CONFIG)  # fmt: skip
    assert other.config_id == builder.config_id and other.cache_dir == builder.cache_dir


def test_without_images_dir_a_metadata_only_folder_names_the_missing_image(apart, tmp_path):
    meta, _ = apart
    builder = INaturalistFL(config_name="family_user", data_dir=meta, cache_dir=str(tmp_path), **CONFIG)
    with pytest.raises(datasets.exceptions.DatasetGenerationError) as info:
        builder.download_and_prepare()
    assert isinstance(info.value.__cause__, BadImageError)
    assert f"{meta}/train/" in str(info.value.__cause__)


def test_a_metadata_file_as_data_dir_finds_images_next_to_it(tiny_replica, together, tmp_path):
    builder = INaturalistFL(config_name="family_user", data_dir=f"{tiny_replica.url}/train.json",
                            cache_dir=str(tmp_path), **CONFIG)  # fmt: skip
    assert builder.image_source.root == tiny_replica.url
    builder.download_and_prepare()
    assert _rows(builder, "train") == _rows(together, "train")


def test_stream_client_and_export_with_images_dir(apart, together, tmp_path):
    meta, images = apart
    first = _rows(together, "train")[0]["client_id"]
    expected = [row for row in _rows(together, "train") if row["client_id"] == first]
    streamed = list(stream_client(meta, "family_user", first, images_dir=images, cache_dir=str(tmp_path),
                                  decode=False, **CONFIG))  # fmt: skip
    assert streamed == expected
    out = tmp_path / "export"
    written = export_dataset(str(out), meta, ["family_user"], overrides=CONFIG, cache_dir=str(tmp_path),
                             with_images=True, images_dir=images)  # fmt: skip
    assert written["family_user"]["train"]
    rows, _ = read_client(str(out), "family_user", first)
    assert [r["image"]["bytes"] for r in rows.to_pylist()] == [r["image"]["bytes"] for r in expected]
    cli_out = tmp_path / "cli-export"
    argv = ["export", str(cli_out), "--data-dir", meta, "--with-images", "--images-dir", images,
            "--set", "min_client_size=1", "--cache-dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    assert read_client(str(cli_out), "family_user", first)[0].equals(rows)


def test_a_source_stands_for_data_dir_images_dir_and_their_options(apart, together, tmp_path):
    meta, images = apart
    source = Source(meta, images_dir=images)
    builder = INaturalistFL(config_name="family_user", source=source, cache_dir=str(tmp_path), **CONFIG)
    by_keywords = INaturalistFL(config_name="family_user", data_dir=meta, images_dir=images, cache_dir=str(tmp_path),
                                **CONFIG)  # fmt: skip
    assert builder.source is source and by_keywords.source == source
    assert builder.config_id == by_keywords.config_id and builder.image_source.root == images
    first = _rows(together, "train")[0]["client_id"]
    expected = [row for row in _rows(together, "train") if row["client_id"] == first]
    stream = ClientStream(source, "family_user", cache_dir=str(tmp_path), **CONFIG)
    assert stream.source is source and list(stream.examples(first, decode=False)) == expected
    report = check_data(source, sample=5)
    assert report.ok and report.images_dir == images and report.images["decoded"] == 5
    with pytest.raises(ValueError, match=r"give source=Source\(...\) or \['images_dir'\], not both"):
        INaturalistFL(config_name="family_user", source=source, images_dir=images)
    with pytest.raises(ValueError, match=r"a Source or its arguments, not both"):
        stream_client(source, "family_user", first, images_dir=images, cache_dir=str(tmp_path))


# --- images on Azure (Azurite), metadata on local disk ----------------------------------------------------


@pytest.mark.azurite
def test_images_in_azure_metadata_on_disk(apart, together, azurite, az_container, tmp_path, caplog):
    meta, _ = apart
    url, options = f"{az_container.url}/inat", az_container.storage_options
    write_sample(url, scale="tiny", seed=0, storage_options=options)  # the same bytes, in a container
    builder = INaturalistFL(config_name="family_user", data_dir=meta, images_dir=url, image_storage_options=options,
                            cache_dir=str(tmp_path / "ok"), **CONFIG)  # fmt: skip
    builder.download_and_prepare()
    assert _rows(builder, "train") == _rows(together, "train")
    scan = Scanner([azurite.account_key, azurite.connection_string, FAKE_KEY])
    scan.text("path/id", "cache_dir", builder.cache_dir)
    scan.text("path/id", "config_id", builder.config_id)
    scan.text("path/id", "repr(config)", repr(builder.config))

    bad = {"connection_string": bad_connection_string(azurite, "fake account key")}
    failing = INaturalistFL(config_name="family_user", data_dir=meta, images_dir=url, image_storage_options=bad,
                            cache_dir=str(tmp_path / "bad"), **CONFIG)  # fmt: skip
    with pytest.raises(datasets.exceptions.DatasetGenerationError) as info:
        failing.download_and_prepare()
    error = info.value.__cause__
    assert isinstance(error, StorageAuthError) and f"{az_container.url}/inat" in str(error)
    scan.exception("images_dir with a fake key", info.value)
    with pytest.raises(StorageAuthError):
        list(stream_client(meta, "family_user", 0, images_dir=url, image_storage_options=bad,
                           cache_dir=str(tmp_path / "bad"), **CONFIG))  # fmt: skip
    scan.folder(tmp_path)
    scan.logs(caplog)
