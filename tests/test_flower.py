"""INatPartitioner: flwr-datasets partitions that are the clients of a prepared split."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from flwr_datasets import FederatedDataset
from flwr_datasets.partitioner import NaturalIdPartitioner, Partitioner

from inat_hf import ClientData
from inat_hf.clients import has_indices_mapping
from inat_hf.flower import INatPartitioner
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


def test_inside_a_federated_dataset(prepared, tmp_path):
    files = sorted(str(path) for path in Path(prepared.cache_dir).glob("*-train*.arrow"))
    clients = ClientData.from_builder(prepared, "train")
    kwargs = {"dataset": "arrow", "data_files": {"train": files}, "cache_dir": str(tmp_path)}
    fds = FederatedDataset(partitioners={"train": INatPartitioner()}, shuffle=False, **kwargs)
    assert _ids(fds.load_partition(7)) == _ids(clients.client(7))
    assert fds.partitioners["train"].num_partitions == 10
    shuffled = FederatedDataset(partitioners={"train": INatPartitioner()}, **kwargs)  # shuffle=True by default
    with pytest.raises(ValueError, match=r"shuffled.*shuffle=False"):
        shuffled.load_partition(0)


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
        with pytest.raises(ValueError, match=rf"partition_id {bad} is out of range: 10 partitions, ids 0\.\.9"):
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
    monkeypatch.delitem(sys.modules, "inat_hf.flower")
    with pytest.raises(ImportError, match=r"pip install --no-deps flwr-datasets"):
        importlib.import_module("inat_hf.flower")
