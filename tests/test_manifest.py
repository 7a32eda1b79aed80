"""The manifest: partition + sort + client index + dropped rows, its determinism and its cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import inat_hf.manifest as manifest_module
import inat_hf.manifest.cache as cache_module
import inat_hf.manifest.layout as layout_module
from inat_hf import MetadataError, load_metadata, storage
from inat_hf.config import config_for
from inat_hf.manifest import (
    build_manifest,
    load_or_build_manifest,
    manifest_fingerprint,
    read_client_rows,
    read_manifest,
    row_group_bounds,
    write_manifest,
)
from inat_hf.metadata.load import metadata_tokens

CONFIGS = [
    ("family_user", {}),
    ("species_user", {"min_client_size": 20}),
    ("order_geo300", {}),
    ("class_dirichlet", {"num_partitions": 12, "alpha": 0.3, "min_partition_size": 20}),
    ("phylum_iid", {"num_partitions": 16, "test_fraction": 0.2}),
    ("genus_user", {"group_size": 5, "max_clients": 20, "holdout_client_fraction": 0.25}),
    ("kingdom_user", {"client_fraction": 0.5, "test_fraction": 0.3}),
]


@pytest.fixture(scope="module")
def images(small_metadata):
    return load_metadata(small_metadata.url)


def _split(table: pa.Table, name: str) -> pa.Table:
    return table.filter(pc.equal(table["split"], name))


@pytest.mark.parametrize(("name", "overrides"), CONFIGS)
def test_every_row_accounted_once_and_clients_contiguous(images, small_metadata, name, overrides):
    config = config_for(name, **overrides)
    manifest = build_manifest(images, config)
    table = manifest.table
    counts = small_metadata.counts
    train_rows = _split(table, "train").num_rows + _split(table, "test").num_rows
    dropped = manifest.dropped["split"].to_pylist()
    assert train_rows + dropped.count("train") == counts.train_images
    assert _split(table, "validation").num_rows + dropped.count("validation") == counts.val_images
    # No image in two splits, no image twice.
    ids = table["image_id"].to_numpy()
    assert np.unique(ids).size == ids.size
    assert not set(ids.tolist()) & set(manifest.dropped["image_id"].to_pylist())
    # Sorted by split, then client; each client's rows contiguous and matching the index.
    clients = manifest.clients.to_pylist()
    for row in clients:
        for split in ("train", "test"):
            rows = table.slice(row[f"{split}_offset"], row[f"{split}_length"])
            assert set(rows["client_id"].to_pylist()) <= {row["client_id"]}
            assert set(rows["split"].to_pylist()) <= {split}
    assert sum(r["train_length"] + r["test_length"] for r in clients) == train_rows
    train = _split(table, "train")["client_id"].to_numpy()
    assert np.all(np.diff(train) >= 0)
    assert np.all(_split(table, "validation")["client_id"].to_numpy() == -1)
    # Labels index the config's rank vocabulary.
    names = np.asarray(manifest.label_names, dtype=object)
    assert names[table["label"].to_numpy()].tolist() == table[config.rank].to_pylist()


def test_user_scheme_is_one_client_per_user(images, small_metadata):
    manifest = build_manifest(images, config_for("family_user"))
    assert manifest.num_clients == small_metadata.counts.users
    for row in manifest.clients.to_pylist()[::17]:
        assert len(set(manifest.client_rows(row["client_id"])["user"].to_pylist())) == 1


def test_holdout_and_filters(images):
    manifest = build_manifest(images, config_for("family_user", test_fraction=0.25, min_client_size=10))
    sizes = manifest.clients["train_length"].to_numpy() + manifest.clients["test_length"].to_numpy()
    assert sizes.min() >= 10
    assert np.array_equal(manifest.clients["test_length"].to_numpy(), np.round(sizes * 0.25).astype(int))
    reasons = set(manifest.dropped["reason"].to_pylist())
    assert reasons == {"client_too_small"}
    held = build_manifest(images, config_for("family_user", holdout_client_fraction=0.2))
    heldout = held.clients.filter(held.clients["heldout"])
    assert heldout.num_rows == round(held.num_clients * 0.2)
    assert pc.sum(heldout["train_length"]).as_py() == 0


@pytest.mark.parametrize(("name", "overrides"), CONFIGS[:5])
def test_same_inputs_byte_identical_and_row_order_moot(images, tmp_path, name, overrides):
    config = config_for(name, **overrides)
    first = build_manifest(images, config)
    shuffled = images.take(pa.array(np.random.default_rng(5).permutation(images.num_rows)))
    second = build_manifest(shuffled, config)
    assert first.table.equals(second.table) and first.clients.equals(second.clients)
    write_manifest(first, tmp_path / "a")
    write_manifest(second, tmp_path / "b")
    for file in ("manifest.parquet", "clients.parquet", "dropped.parquet", "info.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    other_seed = build_manifest(images, config_for(name, **{**overrides, "seed": 1}))
    if "dirichlet" in name or "iid" in name:
        assert not first.table["image_id"].equals(other_seed.table["image_id"])


def test_parquet_row_groups_are_client_aligned(images, tmp_path, monkeypatch):
    manifest = build_manifest(images, config_for("family_user", test_fraction=0.2))
    monkeypatch.setattr(layout_module, "MANIFEST_ROW_GROUP_ROWS", 300)
    bounds = row_group_bounds(manifest.table, 300)
    assert len(bounds) > 5
    write_manifest(manifest, tmp_path)
    parquet = pq.ParquetFile(tmp_path / "manifest.parquet")
    assert parquet.metadata.num_row_groups == len(bounds)
    seen: dict[tuple[str, int], int] = {}
    for index in range(parquet.metadata.num_row_groups):
        group = parquet.read_row_group(index, columns=["split", "client_id"])
        for key in set(zip(group["split"].to_pylist(), group["client_id"].to_pylist(), strict=True)):
            assert key not in seen, f"{key} straddles row groups {seen.get(key)} and {index}"
            seen[key] = index
    for client in (0, 7, manifest.num_clients - 1):
        rows = read_client_rows(parquet, client, "train")
        assert rows["image_id"].to_pylist() == manifest.client_rows(client)["image_id"].to_pylist()
        assert manifest_module.client_row_groups(parquet.metadata, client, "train") == [seen[("train", client)]]


def test_cache_reads_back_without_reloading(small_metadata, tmp_path, monkeypatch):
    config = config_for("order_user", test_fraction=0.1)
    built = load_or_build_manifest(small_metadata.url, config, cache_dir=tmp_path)
    folders = list((tmp_path / "inaturalist_fl" / "manifests").iterdir())
    assert [f.name for f in folders] == [f"order_user-{built.fingerprint}"]

    def fail(*args, **kwargs):
        raise AssertionError("the cached manifest should have been used")

    monkeypatch.setattr(cache_module, "load_metadata", fail)
    again = load_or_build_manifest(small_metadata.url, config, cache_dir=tmp_path)
    assert again.table.equals(built.table) and again.fingerprint == built.fingerprint
    assert read_manifest(folders[0]).label_names == built.label_names
    other = manifest_module.manifest_fingerprint(storage.resolve(small_metadata.url), config_for("order_user", seed=3))
    assert other != built.fingerprint


def test_matches_flower_natural_id_partitioner(images):
    datasets = pytest.importorskip("datasets")
    from flwr_datasets.partitioner import NaturalIdPartitioner

    train = _split(images, "train")
    dataset = datasets.Dataset.from_dict(
        {"image_id": train["image_id"].to_pylist(), "user": train["user"].combine_chunks().dictionary_decode()}
    )
    partitioner = NaturalIdPartitioner(partition_by="user")
    partitioner.dataset = dataset
    flower = {frozenset(partitioner.load_partition(i)["image_id"]) for i in range(partitioner.num_partitions)}
    manifest = build_manifest(images, config_for("family_user"))
    ours = {frozenset(manifest.client_rows(c)["image_id"].to_pylist()) for c in range(manifest.num_clients)}
    assert ours == flower


def test_a_manifest_built_by_inat_fl_stats_is_the_one_the_builder_reads(tiny_replica, tmp_path):
    """One cache for every caller: after `inat-fl stats`, the builder and ClientStream read the cached
    manifest instead of the metadata (here made unreadable, with its size and mtime kept, so that only a
    re-read would notice)."""
    from inat_hf.cli import main
    from inat_hf.federated.stream import ClientStream
    from inaturalist_fl import INaturalistFL

    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    for name in ("train.json", "val.json"):
        shutil.copy2(Path(tiny_replica.url) / name, data / name)
    assert (
        main(
            [
                "stats",
                "family_user",
                "--data-dir",
                str(data),
                "--out",
                str(tmp_path / "stats"),
                "--cache-dir",
                str(cache),
            ]
        )
        == 0
    )
    folders = list((cache / "inaturalist_fl" / "manifests").iterdir())
    assert len(folders) == 1
    stat = (data / "train.json").stat()
    (data / "train.json").write_bytes(b"x" * stat.st_size)  # garbage of the same size ...
    os.utime(data / "train.json", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the same mtime
    with pytest.raises(MetadataError):
        load_metadata(str(data))

    builder = INaturalistFL(config_name="family_user", data_dir=str(data), cache_dir=str(cache), with_images=False)
    assert builder.manifest_key.folder == folders[0]
    assert builder.manifest.table.equals(read_manifest(folders[0]).table)
    stream = ClientStream(str(data), "family_user", cache_dir=cache, with_images=False)
    assert stream.num_clients == builder.manifest.num_clients
    assert list((cache / "inaturalist_fl" / "manifests").iterdir()) == folders


HttpFiles = tuple[str, dict[str, tuple[bytes, str | None]], list[tuple[str, str]]]


@pytest.fixture
def http_files() -> Iterator[HttpFiles]:
    """A plain HTTP server on this machine: ``files`` path -> (content, ``Last-Modified`` or None), a folder
    index (links) at ``/inat``; no ``ETag``. Yields its base URL, the files and the requests it got."""
    files: dict[str, tuple[bytes, str | None]] = {}
    requests: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self, body: bool) -> None:
            requests.append((self.command, self.path))
            if self.path.rstrip("/") == "/inat":
                links = "".join(f'<a href="{Path(name).name}">x</a>' for name in files)
                content, modified = f"<html><body>{links}</body></html>".encode(), None
            elif self.path in files:
                content, modified = files[self.path]
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(content)))
            if modified:
                self.send_header("Last-Modified", modified)
            self.end_headers()
            if body:
                self.wfile.write(content)

        def do_HEAD(self) -> None:
            self.answer(False)

        def do_GET(self) -> None:
            self.answer(True)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", files, requests
    finally:
        server.shutdown()
        thread.join()


def test_a_source_without_etag_or_mtime_is_fingerprinted_by_content(http_files):
    base, files, requests = http_files
    config = config_for("family_user")
    files["/inat/val.json"] = (b'{"images": []}', None)
    for url in (f"{base}/inat/train.json", f"{base}/inat/"):  # one file (HEAD), a folder (its index: no sizes)
        files["/inat/train.json"] = (b'{"a": 1}', None)
        first = manifest_fingerprint(storage.resolve(url), config)
        assert manifest_fingerprint(storage.resolve(url), config) == first  # stable
        files["/inat/train.json"] = (b'{"b": 2}', None)  # the same size, another content
        assert manifest_fingerprint(storage.resolve(url), config) != first, url
    contents = {name: files[f"/inat/{name}"][0] for name in ("train.json", "val.json")}
    assert dict(metadata_tokens(storage.resolve(f"{base}/inat/"))) == {
        name: f"{len(content)}:sha256-{hashlib.sha256(content).hexdigest()}" for name, content in contents.items()
    }
    # With a version (Last-Modified), the token is the size and that time, and the content is not read.
    files["/inat/train.json"] = (b'{"b": 2}', "Wed, 21 Oct 2015 07:28:00 GMT")
    requests.clear()
    assert metadata_tokens(storage.resolve(f"{base}/inat/train.json")) == [
        ("train.json", "8:Wed, 21 Oct 2015 07:28:00 GMT")
    ]
    assert ("GET", "/inat/train.json") not in requests
