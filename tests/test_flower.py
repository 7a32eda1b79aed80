"""INatPartitioner: flwr-datasets partitions that are the clients of a prepared split."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from flwr_datasets import FederatedDataset
from flwr_datasets.partitioner import NaturalIdPartitioner, Partitioner

from inat_hf import ClientData
from inat_hf.federated.dataset_state import has_indices_mapping
from inat_hf.federated.partitioner import ClientGroups, INatPartitioner
from inaturalist_fl import INaturalistFL


def _prepare(url: str, cache_dir: str, **overrides) -> INaturalistFL:
    builder = INaturalistFL(config_name="family_user", data_dir=url, cache_dir=cache_dir, **overrides)
    builder.download_and_prepare()
    return builder


@pytest.fixture(scope="module")
def prepared(tiny_replica, tmp_path_factory) -> INaturalistFL:
    return _prepare(tiny_replica.url, str(tmp_path_factory.mktemp("flower-cache")), with_images=False)


def _ids(dataset) -> list[int]:
    return list(dataset["image_id"])


def test_partitions_are_the_clients(prepared, tiny_replica):
    clients = ClientData.from_builder(prepared, "train")
    partitioner = INatPartitioner.from_builder(prepared, "train")
    assert isinstance(partitioner, Partitioner) and partitioner.is_dataset_assigned()
    assert partitioner.num_partitions == clients.num_clients == tiny_replica.counts.users
    for pid in range(partitioner.num_partitions):
        partition = partitioner.load_partition(pid)
        assert partitioner.partition_id_to_client_id(pid) == pid
        assert not has_indices_mapping(partition)
        assert _ids(partition) == _ids(clients.client(pid))
        assert set(partition["client_id"]) == {pid}


def test_same_partitions_as_flowers_natural_id_partitioner(prepared):
    train = prepared.as_dataset("train")
    ours = INatPartitioner()
    ours.dataset = train  # as FederatedDataset assigns it
    flower = NaturalIdPartitioner(partition_by="user")
    flower.dataset = train
    assert ours.num_partitions == flower.num_partitions == 10
    our_sets = {frozenset(_ids(ours.load_partition(i))) for i in range(ours.num_partitions)}
    flower_sets = {frozenset(_ids(flower.load_partition(i))) for i in range(flower.num_partitions)}
    assert our_sets == flower_sets
    assert sum(len(s) for s in our_sets) == train.num_rows
    for i in range(ours.num_partitions):  # client ids number users in sorted order, as Flower does
        assert sorted(_ids(ours.load_partition(i))) == sorted(_ids(flower.load_partition(i)))
        assert ours.load_partition(i)["user"][0] == flower.partition_id_to_natural_id[i]


def _partition_sets(partitioner) -> list[frozenset[int]]:
    return [frozenset(_ids(partitioner.load_partition(i))) for i in range(partitioner.num_partitions)]


def test_inside_a_federated_dataset_shuffled_or_not(prepared, tmp_path):
    files = sorted(str(path) for path in Path(prepared.cache_dir).glob("*-train*.arrow"))
    clients = ClientData.from_builder(prepared, "train")
    expected = [frozenset(_ids(clients.client(cid))) for cid in sorted(clients.client_ids.tolist())]
    kwargs = {"dataset": "arrow", "data_files": {"train": files}, "cache_dir": str(tmp_path)}
    plain = FederatedDataset(partitioners={"train": INatPartitioner()}, shuffle=False, **kwargs)
    assert _ids(plain.load_partition(7)) == _ids(clients.client(7))
    assert plain.partitioners["train"].mode == "contiguous"
    assert _partition_sets(plain.partitioners["train"]) == expected
    shuffled = FederatedDataset(partitioners={"train": INatPartitioner()}, **kwargs)  # shuffle=True, seed=42
    partition = shuffled.load_partition(7)
    partitioner = shuffled.partitioners["train"]
    assert partitioner.mode == "grouped" and partitioner.num_partitions == 10
    assert set(partition["client_id"]) == {7}
    assert sorted(_ids(partition)) == sorted(_ids(clients.client(7)))
    assert _ids(partition) != _ids(clients.client(7))  # the shuffled order is kept inside the partition
    assert _partition_sets(partitioner) == expected
    assert sum(partitioner.load_partition(i).num_rows for i in range(10)) == prepared.as_dataset("train").num_rows


def test_filtered_and_selected_splits(prepared):
    train = prepared.as_dataset("train")
    kept = train.filter(lambda row: row["image_id"] % 3 != 0)
    ours = INatPartitioner()
    ours.dataset = kept
    assert ours.mode == "grouped"
    by_client: dict[int, set[int]] = {}
    for cid, image_id in zip(kept["client_id"], kept["image_id"], strict=True):
        by_client.setdefault(cid, set()).add(image_id)
    assert ours.client_ids.tolist() == sorted(by_client)
    for pid, cid in enumerate(sorted(by_client)):
        assert set(_ids(ours.load_partition(pid))) == by_client[cid]
    reversed_rows = train.select(range(train.num_rows - 1, -1, -1))
    backwards = INatPartitioner()
    backwards.dataset = reversed_rows
    assert backwards.num_partitions == 10
    assert _ids(backwards.load_partition(3)) == _ids(ClientData(train).client(3))[::-1]


def test_flower_export_folder_with_flowers_defaults(tiny_replica, tmp_path):
    """As a new user would: FederatedDataset over an export folder, default shuffle."""
    from inat_hf.hub.folder import export_dataset

    out = tmp_path / "export"
    export_dataset(str(out), tiny_replica.url, ["family_user"], cache_dir=str(tmp_path / "cache"))
    kwargs = {"dataset": str(out), "subset": "family_user", "cache_dir": str(tmp_path / "hf")}
    shuffled = FederatedDataset(partitioners={"train": INatPartitioner()}, **kwargs)
    plain = FederatedDataset(partitioners={"train": INatPartitioner()}, shuffle=False, **kwargs)
    first = shuffled.load_partition(0)
    assert plain.load_partition(0).num_rows == first.num_rows > 0
    assert _partition_sets(shuffled.partitioners["train"]) == _partition_sets(plain.partitioners["train"])
    assert shuffled.partitioners["train"].mode == "grouped" and plain.partitioners["train"].mode == "contiguous"


def test_client_groups_on_arrays():
    ids = np.array([5, 2, 5, 9, 2, 2, 5], dtype=np.int64)
    groups = ClientGroups(ids)
    assert groups.client_ids.tolist() == [2, 5, 9]
    assert groups.sizes.tolist() == [3, 3, 1]
    assert [groups.rows(i).tolist() for i in range(3)] == [[1, 4, 5], [0, 2, 6], [3]]
    empty = ClientGroups(np.zeros(0, dtype=np.int64))
    assert empty.client_ids.size == 0 and empty.starts.tolist() == [0]


def test_partition_ids_skip_held_out_clients(tiny_replica, tmp_path):
    builder = _prepare(tiny_replica.url, str(tmp_path), with_images=False, holdout_client_fraction=0.2)
    heldout = [row["client_id"] for row in builder.manifest.clients.to_pylist() if row["heldout"]]
    partitioner = INatPartitioner(ClientData.from_builder(builder, "train"))
    assert len(heldout) == 2 and partitioner.num_partitions == 8
    mapped = [partitioner.partition_id_to_client_id(i) for i in range(8)]
    assert mapped == sorted(set(range(10)) - set(heldout))
    for pid, cid in enumerate(mapped):
        assert set(partitioner.load_partition(pid)["client_id"]) == {cid}


def test_bad_partition_ids_and_double_assignment(prepared):
    partitioner = INatPartitioner.from_builder(prepared)
    for bad in (10, -1):
        with pytest.raises(
            ValueError, match=rf"partition_id {bad} is out of range: 10 partitions, ids 0\.\.9 .*num_supernodes"
        ):
            partitioner.load_partition(bad)
    with pytest.raises(ValueError, match="must be an integer"):
        partitioner.load_partition("0")
    with pytest.raises(ValueError, match="assigned only once"):
        partitioner.dataset = prepared.as_dataset("train")
    with pytest.raises(AttributeError, match="should be set before"):
        INatPartitioner().load_partition(0)


def test_missing_flwr_datasets_says_how_to_install(monkeypatch):
    for name in [n for n in sys.modules if n == "flwr_datasets" or n.startswith("flwr_datasets.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "flwr_datasets", None)
    monkeypatch.delitem(sys.modules, "inat_hf.federated.partitioner")
    with pytest.raises(ImportError, match=r"pip install --no-deps flwr-datasets"):
        importlib.import_module("inat_hf.federated.partitioner")
