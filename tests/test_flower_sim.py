"""Flower: the ClientApp/ServerApp of ``inat_hf.train.flower.apps`` / ``inat_hf.train.flower.server`` and
``scripts/flower_sim.py`` (their thin caller), run for real through ``flwr.simulation.run_simulation`` (Ray).

The ``small`` replica (images capped at 64 px), ``family_user``, a tiny random ViT on CPU; each node reads
its client from the data folder with ``ClientStream``. The Ray run's metrics must equal those of
``inat_hf.train.fedavg.run_fedavg`` on the builder's prepared clients with the same seeds (Flower's FedAvg over
our clients is our FedAvg); FedAvgM's aggregation is checked against ``server_update`` on hand-made replies.
Bad input: each error names the thing and the fix. ``flwr run`` and the Deployment Engine:
``tests/test_flower_app.py``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
from types import ModuleType

import datasets
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from test_finetune import FAMILIES, MAX_SIDE, REPO_ROOT, ROUND_KEYS  # the same replica sizes and metrics rows
from test_flower_app import app_run_config  # flower_app/pyproject.toml's run config

from inat_hf import ClientData
from inat_hf.train.data import TrainingData
from inat_hf.train.fedavg import FedAvgSettings, fedavg, run_fedavg, server_update
from inat_hf.train.flower.apps import ModelSpec, train_config, train_partition
from inat_hf.train.flower.server import ClientFailedError, make_strategy, run_flower_simulation
from inat_hf.train.training import (
    LocalSettings,
    label_names,
    limit,
    make_model,
    make_processor,
    make_transform,
    seed_everything,
    train_local,
    with_pipeline,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def source(small_replica, tmp_path_factory) -> TrainingData:
    cache = str(tmp_path_factory.mktemp("flower-sim-cache"))
    prepared = TrainingData.of(data_dir=small_replica.url, overrides={"max_image_side": MAX_SIDE}, cache_dir=cache)
    prepared.prepare(num_proc=2)
    return prepared


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flower_sim", REPO_ROOT / "scripts" / "flower_sim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def flower_run():
    """Flower creates messages only inside a run (its TaskIdentity); tests that build replies set one."""
    before = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = before


def _config(round_number: int = 1, **local) -> dict:
    settings = FedAvgSettings(local=LocalSettings(**{"batch_size": 4, "max_steps": 2, **local}), seed=1)
    return {**dict(train_config(settings)), "server-round": round_number}


def _weights(labels: list[str]) -> dict[str, torch.Tensor]:
    seed_everything(0)
    return make_model(labels, size="tiny").state_dict()


# --- the simulation, end to end -------------------------------------------------------------------------


@pytest.mark.slow
def test_flower_simulation_through_ray_is_our_fedavg(script, source, small_replica, tmp_path):
    options = "--tiny --num-supernodes 4 --clients-per-round 4 --rounds 2 --max-local-steps 3 --batch-size 4 "
    options += "--lr 3e-3 --val-limit 60 --seed 1 --threads 1 --ray-cpus 2 --client-cpus 1"
    data = ["--data-dir", small_replica.url, "--cache-dir", source.cache_dir, "--set", f"max_image_side={MAX_SIDE}"]
    args = [*data, *options.split(" "), "--out", str(tmp_path)]
    assert script.main(args) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["mode"] == "flower FedAvg" and report["num_supernodes"] == 4
    rows = report["rows"]
    assert [row["round"] for row in rows] == [0, 1, 2] and [list(row) for row in rows] == [ROUND_KEYS] * 3
    train = source.split("train")
    clients = ClientData(train)
    sizes = [int(clients.sizes[list(clients.client_ids).index(c)]) for c in range(4)]
    for row in rows[1:]:
        assert row["clients"] == 4 and row["client_ids"] == [0, 1, 2, 3]  # partition i = client i
        assert row["examples"] == sum(sizes)
        assert row["steps"] == sum(min(3, math.ceil(size / 4)) for size in sizes)
    assert rows[0]["train_loss"] is None and rows[0]["clients"] == 0
    with (tmp_path / "metrics.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ROUND_KEYS and [r["client_ids"] for r in table] == ["", "0 1 2 3", "0 1 2 3"]
    assert (tmp_path / "accuracy.png").read_bytes().startswith(b"\x89PNG")

    # the same clients, seeds and settings through our own FedAvg give the same numbers
    transform = make_transform(make_processor(size="tiny"))
    first_four = ClientData(with_pipeline(train.select(range(sum(sizes))), transform))
    validation = limit(with_pipeline(source.split("validation"), transform), 60, 1)
    seed_everything(1)
    model = make_model(label_names(train), size="tiny")
    local = LocalSettings(batch_size=4, lr=3e-3, max_steps=3)
    ours = run_fedavg(model, first_four, validation, FedAvgSettings(rounds=2, clients_per_round=4, local=local, seed=1))
    for flower_row, our_row in zip(rows, ours, strict=True):
        assert flower_row["val_loss"] == pytest.approx(our_row["val_loss"], rel=1e-4)
        assert flower_row["val_accuracy"] == pytest.approx(our_row["val_accuracy"], abs=1e-9)
        assert (flower_row["train_loss"] is None) == (our_row["train_loss"] is None)
        if our_row["train_loss"] is not None:
            assert flower_row["train_loss"] == pytest.approx(our_row["train_loss"], rel=1e-4)


def test_a_partition_trains_on_its_own_client(source):
    train = source.split("train")
    labels = label_names(train)
    state, metrics = train_partition(7, _config(), _weights(labels), source, ModelSpec())
    clients = ClientData(train)
    size = int(clients.sizes[list(clients.client_ids).index(7)])
    assert metrics["client-id"] == 7 and metrics["num-examples"] == size
    assert metrics["steps"] == min(2, math.ceil(size / 4)) and metrics["loss-examples"] == min(size, 8)
    assert set(state) == set(_weights(labels)) and all(v.device.type == "cpu" for v in state.values())
    again, _ = train_partition(7, _config(), _weights(labels), source, ModelSpec())
    assert all(torch.equal(state[k], again[k]) for k in state)  # seeded by (seed, round, client)
    other, _ = train_partition(7, _config(round_number=2), _weights(labels), source, ModelSpec())
    assert not all(torch.equal(state[k], other[k]) for k in state)


# --- Flower's strategies ----------------------------------------------------------------------------------


def _replies(states: list[dict], examples: list[int], *, error: str | None = None) -> list[Message]:
    sent = Message(RecordDict({"config": ConfigRecord({"x": 1})}), dst_node_id=1, message_type="train")
    replies = []
    for i, (state, n) in enumerate(zip(states, examples, strict=True)):
        metrics = {"num-examples": n, "steps": 1, "loss-sum": 2.0 * n, "loss-examples": n, "client-id": i}
        content = RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics)})
        replies.append(Message(content, reply_to=sent))
    if error is not None:
        replies.append(Message(Error(code=0, reason=f"<class 'ClientAppException'>:<'{error}'>"), reply_to=sent))
    return replies


def test_flowers_fedavgm_is_our_server_update(flower_run):
    strategy = make_strategy(FedAvgSettings(clients_per_round=2, server_momentum=0.9, server_lr=0.5), 4)
    assert type(strategy).__name__ == "StrictFedAvgM" and strategy.min_train_nodes == 2
    w0 = {"w": torch.tensor([1.0, 1.0]), "b": torch.tensor([0.0])}
    strategy.current_arrays = ArrayRecord(w0)
    ours, velocity = w0, None
    for step in range(2):
        states = [{k: v + (i + 1) * (step + 1) * 0.1 for k, v in ours.items()} for i in range(2)]
        arrays, metrics = strategy.aggregate_train(step + 1, _replies(states, [1, 3]))
        ours, velocity = server_update(ours, fedavg(states, [1, 3]), velocity, server_lr=0.5, momentum=0.9)
        got = arrays.to_torch_state_dict()
        for key in ours:
            torch.testing.assert_close(got[key], ours[key])
        assert metrics["num-examples"] == 4 and metrics["train-loss"] == pytest.approx(2.0)
        assert metrics["client-ids"] == [0, 1]
    plain = make_strategy(FedAvgSettings(clients_per_round=3), 3)
    assert type(plain).__name__ == "StrictFedAvg" and plain.fraction_evaluate == 0.0


def test_a_failing_client_stops_the_run_with_its_message(flower_run):
    strategy = make_strategy(FedAvgSettings(clients_per_round=2), 4)
    replies = _replies([{"w": torch.zeros(1)}], [1], error="partition_id 9 is out of range: 4 partitions")
    with pytest.raises(ClientFailedError, match=r"1 of 2 clients failed in round 3; .*partition_id 9 is out of range"):
        strategy.aggregate_train(3, replies)


# --- bad input --------------------------------------------------------------------------------------------


def test_unknown_partition_and_too_many_nodes(source, small_replica):
    labels = label_names(source.split("train"))
    count = ClientData(source.split("train")).num_clients
    with pytest.raises(ValueError, match=rf"partition_id {count} is out of range: {count} partitions.*num_supernodes"):
        train_partition(count, _config(), _weights(labels), source, ModelSpec())
    with pytest.raises(ValueError, match=r"partition_id 2 is out of range: 2 partitions, ids 0\.\.1"):
        train_partition(2, _config(), _weights(labels), source, ModelSpec(), num_partitions=2)
    with pytest.raises(
        ValueError, match=rf"num_partitions={count + 1}, but the train split of family_user has {count}"
    ):
        train_partition(0, _config(), _weights(labels), source, ModelSpec(), num_partitions=count + 1)
    data = {"data-dir": small_replica.url, "cache-dir": source.cache_dir, "set": f"max_image_side={MAX_SIDE}"}
    too_many = app_run_config(**data, **{"num-nodes": count + 1, "clients-per-round": 2})
    with pytest.raises(ValueError, match=rf"num_nodes={count + 1}: the train split of family_user has {count} clients"):
        run_flower_simulation(too_many)
    with pytest.raises(ValueError, match=r"clients-per-round = 5: more than num-nodes = 4"):
        run_flower_simulation(app_run_config(**data, **{"num-nodes": 4, "clients-per-round": 5}))


def test_a_client_with_no_rows(source):
    model = make_model(["a", "b"], size="tiny")
    empty = with_pipeline(source.split("train").select([]), make_transform(make_processor(size="tiny")))
    with pytest.raises(ValueError, match=r"no rows: a client needs at least one example .*min_client_size"):
        train_local(model, empty, LocalSettings())


def test_weights_of_another_label_count(source):
    with pytest.raises(ValueError, match=rf"classify 5 labels, but this model .* has {FAMILIES}: .*same config"):
        train_partition(0, _config(), _weights(["a", "b", "c", "d", "e"]), source, ModelSpec())


def test_a_checkpoint_with_other_labels(tmp_path):
    families = [f"family {i}" for i in range(6)]
    make_model(families[:5], size="tiny").save_pretrained(tmp_path / "five")
    with pytest.raises(ValueError, match=r"classifies 5 labels .* has 6 .*new_head=True \(--new-head\)"):
        make_model(families, checkpoint=str(tmp_path / "five"))
    assert make_model(families, checkpoint=str(tmp_path / "five"), new_head=True).config.num_labels == 6
    make_model(families[::-1], size="tiny").save_pretrained(tmp_path / "reversed")
    with pytest.raises(ValueError, match=r"6 labels like the config, but 6 differ \(label 0: 'family 5'"):
        make_model(families, checkpoint=str(tmp_path / "reversed"))
    make_model(families, size="tiny").save_pretrained(tmp_path / "same")  # fine-tuned on this config: kept
    assert make_model(families, checkpoint=str(tmp_path / "same")).config.id2label[5] == "family 5"


def test_an_export_with_a_missing_image(tiny_replica, tmp_path):
    from inat_hf.hub.folder import export_dataset

    export_dataset(str(tmp_path / "export"), tiny_replica.url, ["family_user"], cache_dir=str(tmp_path / "cache"))
    images = tmp_path / "images"
    shutil.copytree(tiny_replica.url, images)
    exported = TrainingData(export=str(tmp_path / "export"), images=str(images), cache_dir=str(tmp_path / "hf"))
    train = exported.split("train")
    labels = label_names(train)
    _, metrics = train_partition(0, _config(), _weights(labels), exported, ModelSpec())
    assert metrics["client-id"] == 0 and metrics["num-examples"] > 0  # an export trains as the builder does
    missing = train.with_format(None).filter(lambda row: row["client_id"] == 1)[0]["file_name"]
    (images / missing).unlink()
    with pytest.raises(OSError, match=rf"{missing}: not found.*copy the missing image there.*--images-dir"):
        train_partition(1, _config(max_steps=None), _weights(labels), exported, ModelSpec())  # every row
    manifest_only = TrainingData(export=str(tmp_path / "export"), cache_dir=str(tmp_path / "hf"))
    with pytest.raises(ValueError, match=r"has no images \(a manifest-only export\): pass images=URL"):
        manifest_only.split("train")
    assert isinstance(train, datasets.Dataset)


def test_an_export_written_with_images_needs_no_images_dir(tiny_replica, tmp_path):
    from inat_hf.hub.folder import export_dataset

    out = tmp_path / "export"
    export_dataset(str(out), tiny_replica.url, ["family_user"], cache_dir=str(tmp_path / "cache"), with_images=True)
    exported = TrainingData(export=str(out), cache_dir=str(tmp_path / "hf"))
    train = exported.split("train")
    assert train.features["image"] == datasets.Image()
    _, metrics = train_partition(2, _config(max_steps=None), _weights(label_names(train)), exported, ModelSpec())
    assert metrics["client-id"] == 2
    assert metrics["num-examples"] == metrics["loss-examples"] == sum(1 for c in train["client_id"] if c == 2)
