"""The builder reading Azure Blob Storage through adlfs (Azurite): the same examples as from local disk,
streaming, bad images named by their az:// URL, and no secret in the cache."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import datasets
import pytest

from inat_hf.builder import skipped_rows
from inat_hf.manifest.examples import BadImageError
from inat_hf.replica import write_sample
from inat_hf.schema import SPLITS
from inaturalist_fl import INaturalistFL

pytestmark = pytest.mark.azurite

CONFIG = {"test_fraction": 0.2, "min_client_size": 2}


def prepare(url: str, cache: Path, num_proc: int = 1, storage_options: dict | None = None, **overrides: object):
    builder = INaturalistFL(
        config_name="family_user",
        data_dir=url,
        storage_options=storage_options,
        cache_dir=str(cache),
        **{**CONFIG, **overrides},
    )
    builder.download_and_prepare(num_proc=num_proc)
    return builder


def table(builder: INaturalistFL, split: str):
    return builder.as_dataset(split).with_format("arrow")[:]


@pytest.fixture(scope="module")
def az_replica(azurite, tiny_replica) -> Iterator[tuple[str, dict[str, str]]]:
    """The tiny replica (JPEGs too) written to a container of its own for this module."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    name = f"builder-{uuid.uuid4().hex[:16]}"
    options = azurite.storage_options()
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
        try:
            url = f"az://{name}/inat/2021"
            counts = write_sample(url, scale="tiny", seed=0, storage_options=options)
            assert counts == tiny_replica.counts
            yield url, options
        finally:
            with suppress(ResourceNotFoundError):
                service.delete_container(name)


@pytest.fixture(scope="module")
def local(tiny_replica, tmp_path_factory) -> INaturalistFL:
    return prepare(tiny_replica.url, tmp_path_factory.mktemp("local-cache"))


@pytest.fixture(scope="module")
def remote(az_replica, tmp_path_factory) -> INaturalistFL:
    url, options = az_replica
    return prepare(url, tmp_path_factory.mktemp("azure-cache"), num_proc=2, storage_options=options)


def test_prepare_from_azure_gives_the_local_examples(local, remote):
    for split in SPLITS:
        assert remote.info.splits[split].num_examples == local.info.splits[split].num_examples > 0
        assert table(remote, split).equals(table(local, split)), split


def test_streaming_from_azure_gives_the_prepared_examples(remote):
    for split in ("train", "validation"):
        stream = remote.as_streaming_dataset(split).cast_column("image", datasets.Image(decode=False))
        prepared = remote.as_dataset(split).cast_column("image", datasets.Image(decode=False))
        assert list(stream) == list(prepared), split


def test_no_secret_in_the_cache(azurite, remote):
    secrets = (azurite.account_key, azurite.connection_string)
    assert not any(s in remote.cache_dir or s in remote.config_id for s in secrets)
    root = Path(remote.cache_dir).parents[1]
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".lock", ""):
            text = path.read_text(errors="replace")
            assert not any(s in text for s in secrets), path


def test_a_missing_blob_is_named_by_its_url_or_skipped(azurite, az_container, tmp_path):
    from azure.storage.blob import BlobServiceClient

    url, options = f"{az_container.url}/inat", az_container.storage_options
    write_sample(url, scale="tiny", seed=0, storage_options=options)
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(az_container.name)
        victim = next(b.name for b in container.list_blobs(name_starts_with="inat/val/"))
        container.delete_blob(victim)
    file_name = victim.removeprefix("inat/")
    builder = INaturalistFL(config_name="family_user", data_dir=url, storage_options=options, cache_dir=str(tmp_path))
    with pytest.raises(datasets.exceptions.DatasetGenerationError) as info:
        builder.download_and_prepare()
    error = info.value.__cause__
    assert isinstance(error, BadImageError)
    assert f"{url}/{file_name}: unreadable" in str(error) and "not found" in str(error)
    assert azurite.account_key not in str(error)
    skipping = prepare(url, tmp_path / "skip", storage_options=options, on_bad_image="skip")
    assert [row["file_name"] for row in skipped_rows(skipping.cache_dir, "validation")] == [file_name]
    assert skipping.info.splits["validation"].num_examples == builder.manifest.split_range("validation")[1] - 1
