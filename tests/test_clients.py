"""ClientData (the federated view of a prepared split) and ClientStream (one client straight from storage)."""

from __future__ import annotations

import pickle

import datasets
import datasets.table
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import inat_hf.manifest.layout as layout_module
from inat_hf import ClientData
from inat_hf.federated.clients import client_runs
from inat_hf.federated.dataset_state import (
    DATASET_STATE,
    contiguous_slice,
    dataset_fingerprint,
    has_indices_mapping,
    slice_table,
    table_rows,
)
from inat_hf.federated.stream import ClientStream, stream_client
from inaturalist_fl import INaturalistFL


def _prepare(url: str, cache_dir: str, **overrides) -> INaturalistFL:
    builder = INaturalistFL(config_name="family_user", data_dir=url, cache_dir=cache_dir, **overrides)
    builder.download_and_prepare()
    return builder


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("clients-cache"))


@pytest.fixture(scope="module")
def prepared(tiny_replica, cache_dir) -> INaturalistFL:
    """family_user on the tiny replica, with images."""
    return _prepare(tiny_replica.url, cache_dir)


@pytest.fixture(scope="module")
def with_test(tiny_replica, cache_dir) -> INaturalistFL:
    """family_user with a per-client holdout and one held-out client."""
    return _prepare(tiny_replica.url, cache_dir, test_fraction=0.3, holdout_client_fraction=0.1)


@pytest.fixture(scope="module")
def train(prepared) -> ClientData:
    return ClientData.from_builder(prepared, "train")


def _index(builder: INaturalistFL, split: str) -> tuple[list[int], list[int]]:
    """(client ids, sizes) of the clients that have rows of ``split``, from the manifest's client index."""
    index = builder.manifest.clients.to_pydict()
    pairs = [(c, n) for c, n in zip(index["client_id"], index[f"{split}_length"], strict=True) if n]
    return [c for c, _ in pairs], [n for _, n in pairs]


def test_client_index_matches_the_manifest(prepared, train, tiny_replica):
    ids, sizes = _index(prepared, "train")
    assert train.client_ids.tolist() == ids == list(range(tiny_replica.counts.users))
    assert train.sizes.tolist() == sizes
    assert train.num_clients == len(train) == tiny_replica.counts.users == 10
    assert int(train.sizes.sum()) == train.dataset.num_rows == tiny_replica.counts.train_images
    assert train.offsets.tolist() == np.concatenate(([0], np.cumsum(sizes)[:-1])).tolist()
    assert list(train) == ids and 3 in train and 10 not in train and "3" not in train and True not in train
    assert repr(train) == f"ClientData(10 clients, ids 0..9, {tiny_replica.counts.train_images} rows)"
    with pytest.raises(ValueError, match="read-only"):
        train.client_ids[0] = 5


def test_every_client_is_a_contiguous_slice_of_its_rows(prepared, train):
    seen: list[int] = []
    for cid, part in train.items():
        expected = prepared.manifest.client_rows(cid, "train")
        offset, length = train.client_range(cid)
        assert not has_indices_mapping(part)
        assert part.num_rows == length == expected.num_rows
        assert part.cache_files == train.dataset.cache_files  # the same memory-mapped files: no copy
        assert part["image_id"] == expected["image_id"].to_pylist()
        assert part["label"] == expected["label"].to_pylist()
        assert set(part["client_id"]) == {cid}
        assert part.features == train.dataset.features and part.split == train.dataset.split
        reference = train.dataset.select(range(offset, offset + length))
        assert part.data.table.equals(reference.data.table)
        seen.extend(part["image_id"])
    assert seen == train.dataset["image_id"]  # the clients tile the split, in order


def test_datasets_still_has_the_state_that_contiguous_slice_sets(train):
    """contiguous_slice is the one place that uses datasets' private state: this fails if datasets changes it."""
    state = vars(train.dataset)
    missing = [name for name in DATASET_STATE if name not in state]
    assert not missing, f"datasets no longer has {missing}: update inat_hf.federated.dataset_state.contiguous_slice"
    part = contiguous_slice(train.dataset, 3, 4, "f" * 16)
    reference = train.dataset.select(range(3, 7))
    assert part[:] == reference[:] and part.features == reference.features and part.format == reference.format
    assert dataset_fingerprint(part) == "f" * 16 and not has_indices_mapping(part)
    shuffled = train.dataset.shuffle(seed=1)
    rows = table_rows(shuffled)
    assert has_indices_mapping(shuffled) and rows is not None and table_rows(train.dataset) is None
    assert np.asarray(train.dataset["image_id"])[rows].tolist() == shuffled["image_id"]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> datasets.Dataset:
    """A split of three Arrow files (as ``load_dataset`` writes a large one), each of many small record batches
    (as a Parquet folder of 256-row groups loads), client ids in runs: a ``ConcatenationTable``."""
    rows = 2_000
    client = np.repeat(np.arange(100), np.random.default_rng(0).multinomial(rows - 100, [0.01] * 100) + 1)
    ids = np.arange(rows)
    table = pa.table({"image_id": ids, "client_id": client, "file_name": [f"train/{i}.jpg" for i in ids]})
    folder = tmp_path_factory.mktemp("sharded") / "split"
    datasets.Dataset(pa.Table.from_batches(table.to_batches(max_chunksize=7))).save_to_disk(folder, num_shards=3)
    loaded = datasets.load_from_disk(str(folder))
    assert type(loaded.data) is datasets.table.ConcatenationTable and len(loaded.data.blocks) == 3
    return loaded


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 5), (10, 300), (660, 20), (666, 1), (600, 800), (0, 2_000), (1_990, 10), (1_333, 0), (2_000, 0)],
)
def test_a_slice_of_several_shards_is_what_datasets_slices(sharded, offset, length):
    """slice_table finds the rows by binary search, and gives what ConcatenationTable.slice gives: the same rows,
    schema and shards (blocks), each shard the same memory-mapped file and replays (so a client pickles as a
    reference to the files, not as its rows)."""
    table = sharded.data
    ours, theirs = slice_table(table, offset, length), table.slice(offset, length)
    assert type(ours) is type(theirs) and ours.table.equals(theirs.table) and ours.schema == theirs.schema
    assert len(ours.blocks) == len(theirs.blocks)
    for mine, reference in zip(ours.blocks, theirs.blocks, strict=True):
        assert [(type(b), b.path, b.replays) for b in mine] == [(type(b), b.path, b.replays) for b in reference]
        assert all(b.table.equals(r.table) for b, r in zip(mine, reference, strict=True))
    if length:  # (datasets cannot unpickle a ConcatenationTable of no blocks, its own slice's nor ours)
        assert pickle.loads(pickle.dumps(ours)).table.equals(theirs.table)


def test_every_client_of_a_sharded_split_is_its_rows(sharded):
    clients = ClientData(sharded)
    ids = np.asarray(sharded["client_id"])
    assert clients.num_clients == 100
    for cid in clients.client_ids.tolist():
        part = clients.client(cid)
        assert part["image_id"] == np.flatnonzero(ids == cid).tolist() and set(part["client_id"]) == {cid}
        assert part[:] == sharded.select(np.flatnonzero(ids == cid)).to_dict()


def test_a_client_is_a_full_dataset(train):
    part = train.client(1)
    assert dataset_fingerprint(part) != dataset_fingerprint(train.dataset) != dataset_fingerprint(train.client(2))
    assert dataset_fingerprint(part) == dataset_fingerprint(train.client(1))
    doubled = part.map(lambda row: {"twice": row["label"] * 2}, remove_columns=["image"])
    assert doubled["twice"] == [2 * label for label in part["label"]]
    assert train.dataset.column_names[0] == "image" and "twice" not in train.dataset.column_names
    restored = pickle.loads(pickle.dumps(part))
    assert restored["image_id"] == part["image_id"] and restored.num_rows == 64
    numpy_view = ClientData(train.dataset.with_format("numpy", columns=["label", "client_id"])).client(7)
    assert numpy_view.format["type"] == "numpy" and numpy_view.format["columns"] == ["label", "client_id"]
    assert isinstance(numpy_view[:]["label"], np.ndarray) and numpy_view[:]["client_id"].tolist() == [7] * 30
    assert train.dataset.format["type"] is None


def test_test_and_validation_splits(with_test, tiny_replica):
    test = ClientData.from_builder(with_test, "test")
    ids, sizes = _index(with_test, "test")
    assert test.client_ids.tolist() == ids and test.sizes.tolist() == sizes
    train = ClientData.from_builder(with_test, "train")
    train_ids, _ = _index(with_test, "train")
    heldout = with_test.manifest.clients.filter(pc.field("heldout")).column("client_id").to_pylist()
    assert len(heldout) == 1 and heldout[0] not in train and heldout[0] in test
    assert train.client_ids.tolist() == train_ids and len(train_ids) == 9
    for cid in ids:
        assert test.client(cid)["image_id"] == with_test.manifest.client_rows(cid, "test")["image_id"].to_pylist()
    validation = ClientData.from_builder(with_test, "validation")
    assert validation.client_ids.tolist() == [-1]
    assert validation.sizes.tolist() == [validation.dataset.num_rows] == [tiny_replica.counts.val_images]


def test_sample_is_deterministic_per_seed(train):
    first = train.sample(4, seed=3)
    assert first == train.sample(4, seed=3)
    assert len(set(first)) == 4 and set(first) <= set(train.client_ids.tolist())
    assert all(isinstance(cid, int) for cid in first)
    draws = {tuple(train.sample(4, seed=s)) for s in range(20)}
    assert len(draws) > 10  # different seeds, different cohorts
    assert sorted(train.sample(10, seed=0)) == list(range(10))
    assert train.sample(0, seed=0) == []
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    assert [train.sample(3, rng_a) for _ in range(3)] == [train.sample(3, rng_b) for _ in range(3)]
    for bad in (11, -1, 2.0, True):
        with pytest.raises(ValueError, match="choose between 0 and 10 clients"):
            train.sample(bad, seed=0)


def test_unknown_clients_are_a_clear_error(train):
    with pytest.raises(ValueError, match=r"^client 12345 not in this split; 10 clients, ids 0\.\.9$"):
        train.client(12345)
    with pytest.raises(ValueError, match="client -1 not in this split"):
        train.client_range(-1)
    for bad in ("3", 3.0, True, None):
        with pytest.raises(TypeError, match="a client id is an integer"):
            train.client(bad)
    assert train.client(np.int64(9))["client_id"] == [9] * 13


def test_client_runs():
    ids, offsets, lengths = client_runs(np.array([4, 4, 0, 7, 7, 7]))
    assert (ids.tolist(), offsets.tolist(), lengths.tolist()) == ([4, 0, 7], [0, 2, 3], [2, 1, 3])
    assert [a.tolist() for a in client_runs(np.array([], dtype=np.int64))] == [[], [], []]
    runs = r"client 0 is not contiguous: its rows form 3 separate runs \(starting at rows 0, 3, 5\)"
    with pytest.raises(ValueError, match=runs):
        client_runs(np.array([0, 0, 1, 0, 2, 0, 1]))


def test_datasets_that_are_not_grouped_by_client():
    scattered = datasets.Dataset.from_dict({"client_id": [0, 0, 1, 0, 2], "x": [1, 2, 3, 4, 5]})
    with pytest.raises(ValueError, match="client 0 is not contiguous"):
        ClientData(scattered)
    grouped = scattered.select([0, 1, 3, 2, 4])  # grouped, through an indices mapping over the same table
    with pytest.raises(ValueError, match=r"indices mapping.*flatten_indices"):
        ClientData(grouped)
    clients = ClientData(grouped.flatten_indices())
    assert clients.sizes.tolist() == [3, 1, 1] and clients.client(0)["x"] == [1, 2, 4]
    with pytest.raises(ValueError, match="no 'client_id' column"):
        ClientData(datasets.Dataset.from_dict({"user": ["a"]}))
    empty = ClientData(
        datasets.Dataset.from_dict(
            {"client_id": []}, features=datasets.Features({"client_id": datasets.Value("int64")})
        )
    )
    assert empty.num_clients == 0 and empty.sample(0) == []
    with pytest.raises(ValueError, match="client 0 not in this split; no clients"):
        empty.client(0)
    with pytest.raises(ValueError, match="outside the dataset's 5 rows"):
        contiguous_slice(scattered, 3, 3, "f")


# --- streaming one client ----------------------------------------------------------------------------------


def test_stream_gives_the_prepared_examples(prepared, train, tiny_replica, cache_dir):
    raw = train.dataset.cast_column("image", datasets.Image(decode=False))
    for cid in (0, 1, 9):
        offset, length = train.client_range(cid)
        streamed = list(stream_client(tiny_replica.url, "family_user", cid, cache_dir=cache_dir, decode=False))
        assert streamed == list(raw.select(range(offset, offset + length)))  # ids, labels, image bytes, all
        assert [e["image_id"] for e in streamed] == train.client(cid)["image_id"]
    decoded = list(stream_client(tiny_replica.url, prepared.config, 3, cache_dir=cache_dir))
    assert decoded == list(train.client(3))  # PIL images, as datasets decodes them


def test_stream_of_test_rows_and_errors(with_test, tiny_replica, cache_dir):
    stream = ClientStream(
        tiny_replica.url, "family_user", cache_dir=cache_dir, test_fraction=0.3, holdout_client_fraction=0.1
    )
    assert stream.num_clients == 10 and stream.label_names == tuple(with_test.manifest.label_names)
    test = ClientData.from_builder(with_test, "test")
    cid = int(test.client_ids[0])
    assert [e["image_id"] for e in stream.examples(cid, "test")] == test.client(cid)["image_id"]
    with pytest.raises(ValueError, match=r"client 10 not in this manifest; 10 clients, ids 0\.\.9"):
        stream.examples(10)
    with pytest.raises(ValueError, match="not 'validation'"):
        stream.examples(0, "validation")
    with pytest.raises(ValueError, match="unknown config field"):
        ClientStream(tiny_replica.url, "family_user", cache_dir=cache_dir, min_size=3)


def test_stream_reads_only_the_clients_row_groups(tiny_replica, tmp_path, monkeypatch):
    monkeypatch.setattr(layout_module, "MANIFEST_ROW_GROUP_ROWS", 1)  # one row group per client run
    stream = ClientStream(tiny_replica.url, "family_user", cache_dir=tmp_path, with_images=False)
    manifest = pq.ParquetFile(stream.manifest_file)
    assert manifest.metadata.num_row_groups >= 10
    read: list[list[int]] = []
    original = pq.ParquetFile.read_row_groups

    def recording(self, row_groups, *args, **kwargs):
        read.append(list(row_groups))
        return original(self, row_groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", recording)
    rows = stream.rows(7)
    group = manifest.metadata.row_group(read[0][0])
    column = manifest.schema_arrow.get_field_index("client_id")
    assert len(read) == 1 and len(read[0]) == 1
    assert group.column(column).statistics.min == group.column(column).statistics.max == 7
    assert rows.num_rows == group.num_rows == 30
    assert "image" not in next(stream.examples(7))


@pytest.mark.azurite
def test_stream_from_azure_reads_only_that_clients_blobs(az_container, tiny_replica, train, tmp_path, monkeypatch):
    from adlfs import AzureBlobFileSystem

    url, options = f"{az_container.url}/inat/2021", az_container.storage_options
    from inat_hf.replica import write_sample

    write_sample(url, scale="tiny", seed=0, storage_options=options)
    stream = ClientStream(url, "family_user", storage_options=options, cache_dir=tmp_path)  # builds the manifest
    reads: list[str] = []
    opened: list[str] = []
    cat_file, open_file = AzureBlobFileSystem._cat_file, AzureBlobFileSystem._open

    async def recording_cat(self, path, *args, **kwargs):
        reads.append(path)
        return await cat_file(self, path, *args, **kwargs)

    def recording_open(self, path, *args, **kwargs):
        opened.append(path)
        return open_file(self, path, *args, **kwargs)

    monkeypatch.setattr(AzureBlobFileSystem, "_cat_file", recording_cat)
    monkeypatch.setattr(AzureBlobFileSystem, "_open", recording_open)
    cid = 2
    examples = list(stream.examples(cid, decode=False))
    root = f"{az_container.name}/inat/2021"
    mine = {f"{root}/{name}" for name in train.client(cid)["file_name"]}
    others = {f"{root}/{name}" for name in train.dataset["file_name"]} - mine
    assert len(reads) == len(mine) == len(examples) == 12  # each of its images read once
    assert set(reads) == mine and not set(reads) & others and opened == []
    local = list(train.client(cid).cast_column("image", datasets.Image(decode=False)))
    assert examples == local  # the same examples (bytes included) as the local replica's prepared client
