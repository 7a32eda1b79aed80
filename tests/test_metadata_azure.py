"""Metadata through Azure Blob Storage (adlfs against Azurite): the same table as from local disk."""

from __future__ import annotations

import pytest

from inat_hf import StorageAuthError, StorageNotFoundError, load_metadata
from inat_hf.replica import write_sample

pytestmark = pytest.mark.azurite


def test_replica_round_trip_through_azure(az_container, tiny_replica):
    url = f"{az_container.url}/inat/2021"
    counts = write_sample(url, scale="tiny", seed=0, metadata_only=True, storage_options=az_container.storage_options)
    assert counts.train_images == tiny_replica.counts.train_images
    remote = load_metadata(url, az_container.storage_options)
    local = load_metadata(tiny_replica.url)
    assert remote.num_rows == counts.train_images + counts.val_images
    for column in local.column_names:
        assert remote[column].to_pylist() == local[column].to_pylist(), column
    one_file = load_metadata(f"{url}/val.json", az_container.storage_options)
    assert one_file.num_rows == counts.val_images


def test_connection_string_from_the_environment(az_container, monkeypatch, tiny_replica):
    from adlfs import AzureBlobFileSystem

    url = f"{az_container.url}/env"
    write_sample(url, scale="tiny", metadata_only=True, storage_options=az_container.storage_options)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", az_container.storage_options["connection_string"])
    AzureBlobFileSystem.clear_instance_cache()
    try:
        assert load_metadata(url).num_rows == tiny_replica.counts.train_images + tiny_replica.counts.val_images
    finally:
        AzureBlobFileSystem.clear_instance_cache()


def test_wrong_key_and_missing_container(azurite, az_container):
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3Jvbmc="
    bad = azurite.connection_string.replace(azurite.account_key, wrong_key)
    with pytest.raises(StorageAuthError) as info:
        load_metadata(f"{az_container.url}/x/train.json", {"connection_string": bad})
    assert wrong_key not in str(info.value) and azurite.account_key not in str(info.value)
    with pytest.raises(StorageNotFoundError, match="no-such-container"):
        load_metadata("az://no-such-container/2021/train.json", az_container.storage_options)
    with pytest.raises(StorageNotFoundError):
        load_metadata(f"{az_container.url}/nothing/here/val.json", az_container.storage_options)
