"""Fine-tuning (``inat_hf.train.training`` and ``scripts/finetune_vit.py``) with a tiny random ViT on CPU.

The ``small`` replica is written once for this module and ``family_user`` prepared with the builder
(``num_proc=2``), images capped at 64 px (``max_image_side``; the tiny ViT sees 32 px) so that decoding is
cheap. Aggregation and the server step are checked on hand-made state dicts.
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import io
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from inat_hf import ClientData
from inat_hf.train.fedavg import (
    FedAvgSettings,
    WeightedAverage,
    client_seed,
    fedavg,
    run_fedavg,
    server_update,
)
from inat_hf.train.training import (
    LocalSettings,
    autocast_dtype,
    evaluate,
    label_names,
    make_model,
    make_processor,
    make_transform,
    pick_device,
    seed_everything,
    train_local,
    with_pipeline,
)
from inaturalist_fl import INaturalistFL

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_SIDE = 64
FAMILIES = 1103
"""The ClassLabel of family_user holds every family of iNat 2021 (the replica uses 89 of them)."""
ROUND_KEYS = [
    "round",
    "clients",
    "examples",
    "steps",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "seconds",
    "client_ids",
]
EPOCH_KEYS = ["epoch", "examples", "steps", "train_loss", "val_loss", "val_accuracy", "seconds"]


class Prepared(NamedTuple):
    url: str
    cache: str
    train: datasets.Dataset
    validation: datasets.Dataset


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def prepared(small_replica, tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    cache = tmp_path_factory.mktemp("finetune-cache")
    builder = INaturalistFL(
        config_name="family_user", data_dir=small_replica.url, cache_dir=str(cache), max_image_side=MAX_SIDE
    )
    builder.download_and_prepare(num_proc=2)
    return Prepared(small_replica.url, str(cache), builder.as_dataset("train"), builder.as_dataset("validation"))


@pytest.fixture(scope="module")
def transform():
    return make_transform(make_processor(size="tiny"))


@pytest.fixture(scope="module")
def clients(prepared: Prepared, transform) -> ClientData:
    return ClientData(with_pipeline(prepared.train, transform))


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("finetune_vit", REPO_ROOT / "scripts" / "finetune_vit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_model(train: datasets.Dataset) -> torch.nn.Module:
    seed_everything(0)
    return make_model(label_names(train), size="tiny")


def _recorder(model: torch.nn.Module) -> tuple[list[dict[str, torch.Tensor]], Callable[[list], None]]:
    """A list of the model's weights after every round, and the ``on_round`` callback that fills it."""
    snapshots: list[dict[str, torch.Tensor]] = []

    def record(rows: list) -> None:
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    return snapshots, record


def _rows_of(clients: ClientData, client_ids: list[int], transform) -> datasets.Dataset:
    ranges = [clients.client_range(cid) for cid in client_ids]
    indices = [row for offset, length in ranges for row in range(offset, offset + length)]
    raw = clients.dataset.with_format(None).select(indices)
    return with_pipeline(raw, transform)


# --- model, inputs, device ----------------------------------------------------------------------------------


def test_model_labels_and_inputs_follow_the_config(prepared, clients):
    names = label_names(prepared.train)
    assert len(names) == FAMILIES and names == prepared.train.features["label"].names
    model = make_model(names, size="tiny")
    assert model.config.num_labels == FAMILIES
    assert model.config.id2label[7] == names[7] and model.config.label2id[names[7]] == 7
    client = clients.client(int(clients.client_ids[0]))
    batch = client[:3]
    assert batch["pixel_values"].shape == (3, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["labels"].tolist() == prepared.train[:3]["label"]
    assert float(batch["pixel_values"].abs().max()) <= 1.0
    assert pick_device().type == "cpu" and autocast_dtype(torch.device("cpu")) is None


def test_with_pipeline_runs_an_existing_transform_first(prepared, transform):
    # what attach_images does to a manifest-only export: a transform that adds the decoded images
    manifest = prepared.validation.remove_columns("image").select(range(5)).flatten_indices()
    images = {row["file_name"]: row["image"] for row in prepared.validation.select(range(5))}

    def add_images(batch):
        return {**batch, "image": [images[name] for name in batch["file_name"]]}

    pipeline = with_pipeline(manifest.with_transform(add_images), transform)
    batch = pipeline[:5]
    assert set(batch) == {"pixel_values", "labels"} and batch["pixel_values"].shape == (5, 3, 32, 32)
    assert batch["labels"].tolist() == manifest["label"]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['image'\]"):
        with_pipeline(manifest, transform)


# --- local training ----------------------------------------------------------------------------------------


def test_train_local_is_reproducible_and_learns_a_client(prepared, clients):
    largest = int(clients.client_ids[np.argmax(clients.sizes)])
    data = clients.client(largest)
    local = LocalSettings(epochs=2, batch_size=16, lr=3e-3)
    initial = _tiny_model(prepared.train)
    runs = []
    for _ in range(2):
        model = copy.deepcopy(initial)
        runs.append((train_local(model, data, local, seed=5), model.state_dict()))
    (first, state), (second, state2) = runs
    assert first.losses == second.losses
    assert all(torch.equal(state[k], state2[k]) for k in state)
    assert first.examples == len(data) and first.batch_sizes[0] == 16
    assert len(first.losses) == 2 * math.ceil(len(data) / 16) and sum(first.batch_sizes) == 2 * len(data)
    assert np.mean(first.losses[-3:]) < first.losses[0] - 0.5  # it fits its client's families
    other = train_local(copy.deepcopy(initial), data, local, seed=6)
    assert other.losses != first.losses  # the seed drives the shuffling
    capped = train_local(copy.deepcopy(initial), data, LocalSettings(epochs=2, batch_size=16, max_steps=3), seed=5)
    assert len(capped.losses) == 3


# --- FedAvg ------------------------------------------------------------------------------------------------


def test_fedavg_two_rounds_train_the_global_model(prepared, clients, transform):
    local = LocalSettings(epochs=1, batch_size=16, lr=3e-3, max_steps=8)
    settings = FedAvgSettings(rounds=2, clients_per_round=8, local=local, seed=3)
    model = _tiny_model(prepared.train)
    snapshots, record = _recorder(model)
    validation = with_pipeline(prepared.validation, transform)
    rows = run_fedavg(model, clients, validation, settings, on_round=record)

    assert [list(row) for row in rows] == [ROUND_KEYS] * 3 and [row["round"] for row in rows] == [0, 1, 2]
    assert rows[0]["clients"] == rows[0]["steps"] == 0 and rows[0]["train_loss"] is None
    sizes = dict(zip(clients.client_ids.tolist(), clients.sizes.tolist(), strict=True))
    for row in rows[1:]:
        assert row["client_ids"] == clients.sample(8, 3 + row["round"]) and row["clients"] == 8
        assert row["examples"] == sum(sizes[c] for c in row["client_ids"])
        assert row["steps"] == sum(min(8, math.ceil(sizes[c] / 16)) for c in row["client_ids"])
        assert math.isfinite(row["train_loss"]) and 0 <= row["val_accuracy"] <= 1
    # the global weights move every round, and the model ends holding the last ones
    assert len(snapshots) == 3
    for before, after in itertools.pairwise(snapshots):
        assert all(torch.isfinite(v).all() for v in after.values())
        assert any(not torch.equal(before[k], after[k]) for k in before)
        assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert all(torch.equal(snapshots[-1][k], v) for k, v in model.state_dict().items())
    # the loss falls: on the central validation split, and on the very rows the clients trained on
    assert rows[2]["val_loss"] < rows[1]["val_loss"] < rows[0]["val_loss"]
    seen = _rows_of(clients, rows[1]["client_ids"] + rows[2]["client_ids"], transform)
    initial = _tiny_model(prepared.train)
    initial.load_state_dict(snapshots[0])
    assert evaluate(model, seen)["loss"] < evaluate(initial, seen)["loss"] - 0.1


def test_fedavg_and_fedavgm_rounds_match_a_hand_computation(prepared, clients, transform):
    """Each client starts from the global weights, trains with its own seed; the server averages by size."""
    local = LocalSettings(batch_size=8, lr=1e-3, max_steps=3)
    validation = with_pipeline(prepared.validation.select(range(16)), transform)
    initial = _tiny_model(prepared.train)

    def client_average(state, number, settings):
        states, weights = [], []
        for cid in clients.sample(settings.clients_per_round, settings.seed + number):
            model = copy.deepcopy(initial)
            model.load_state_dict(state)
            result = train_local(model, clients.client(cid), local, seed=client_seed(settings.seed, number, cid))
            states.append(model.state_dict())
            weights.append(result.examples)
        return fedavg(states, weights)

    for momentum in (0.0, 0.9):
        settings = FedAvgSettings(rounds=2, clients_per_round=3, local=local, server_momentum=momentum, seed=7)
        model = copy.deepcopy(initial)
        snapshots, record = _recorder(model)
        run_fedavg(model, clients, validation, settings, on_round=record)
        w0 = snapshots[0]
        avg1 = client_average(w0, 1, settings)
        w1, v1 = server_update(w0, avg1, None, momentum=momentum)
        avg2 = client_average(w1, 2, settings)
        w2, _ = server_update(w1, avg2, v1, momentum=momentum)
        for key in w0:
            torch.testing.assert_close(snapshots[1][key], avg1[key])  # FedAvgM's first step is FedAvg's
            torch.testing.assert_close(snapshots[2][key], w2[key])
        if momentum:
            expected = (
                w1["classifier.weight"]
                - 0.9 * v1["classifier.weight"]
                - (w1["classifier.weight"] - avg2["classifier.weight"])
            )
            torch.testing.assert_close(snapshots[2]["classifier.weight"], expected)
            assert not torch.allclose(snapshots[2]["classifier.weight"], avg2["classifier.weight"])


def test_fedavg_checks_its_settings(prepared, clients, transform):
    with pytest.raises(ValueError, match="rounds=0"):
        FedAvgSettings(rounds=0)
    with pytest.raises(ValueError, match=r"server_momentum=1\.0"):
        FedAvgSettings(server_momentum=1.0)
    with pytest.raises(ValueError, match="optimizer='adam'"):
        LocalSettings(optimizer="adam")
    with pytest.raises(ValueError, match="max_steps=0"):
        LocalSettings(max_steps=0)
    with pytest.raises(ValueError, match="clients_per_round=166, but the split has 165 clients"):
        run_fedavg(
            _tiny_model(prepared.train),
            clients,
            with_pipeline(prepared.validation, transform),
            FedAvgSettings(clients_per_round=166),
        )


def test_fedavg_weights_states_by_example_count():
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([4.0], dtype=torch.float16), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([8.0], dtype=torch.float16), "n": torch.tensor(9)}
    c = {"w": torch.tensor([-1.0, 0.0]), "h": torch.tensor([0.0], dtype=torch.float16), "n": torch.tensor(1)}
    mean = fedavg([a, b, c], [1, 3, 4])
    torch.testing.assert_close(mean["w"], torch.tensor([(1 + 9 - 4) / 8, (2 + 18 + 0) / 8]))
    torch.testing.assert_close(mean["h"], torch.tensor([(4 + 24) / 8], dtype=torch.float16))
    assert mean["h"].dtype == torch.float16 and mean["n"].item() == 3  # integer buffers: the first state's
    torch.testing.assert_close(fedavg([a, b], [5, 5])["w"], torch.tensor([2.0, 4.0]))
    assert a["w"].tolist() == [1.0, 2.0]  # inputs are not modified
    average = WeightedAverage()
    average.add(a, 1)
    average.add(b, 3)
    torch.testing.assert_close(average.result()["w"], fedavg([a, b], [1, 3])["w"])
    with pytest.raises(ValueError, match="must be positive"):
        fedavg([a, b], [1, 0])
    with pytest.raises(ValueError, match="keys differ"):
        fedavg([a, {"w": b["w"], "n": b["n"]}], [1, 1])
    with pytest.raises(ValueError, match=r"w: shape \(3,\), expected \(2,\)"):
        fedavg([a, {**b, "w": torch.zeros(3)}], [1, 1])
    with pytest.raises(ValueError, match="no state was added"):
        WeightedAverage().result()


def test_server_update_is_fedavgm():
    w0 = {"w": torch.tensor([1.0, 1.0]), "n": torch.tensor(1)}
    avg1 = {"w": torch.tensor([0.5, 2.0]), "n": torch.tensor(2)}
    # beta = 0, server_lr = 1: plain FedAvg, the new global model is the average
    plain, velocity = server_update(w0, avg1)
    torch.testing.assert_close(plain["w"], avg1["w"])
    assert velocity is None and plain["n"].item() == 2
    # FedAvgM (Hsu et al. 2019): v <- beta v + (w - avg); w <- w - server_lr v
    w1, v1 = server_update(w0, avg1, None, momentum=0.9, server_lr=1.0)
    torch.testing.assert_close(v1["w"], torch.tensor([0.5, -1.0]))
    torch.testing.assert_close(w1["w"], torch.tensor([0.5, 2.0]))
    avg2 = {"w": w1["w"] - torch.tensor([0.1, 0.2]), "n": torch.tensor(2)}
    w2, v2 = server_update(w1, avg2, v1, momentum=0.9, server_lr=1.0)
    torch.testing.assert_close(v2["w"], torch.tensor([0.9 * 0.5 + 0.1, 0.9 * -1.0 + 0.2]))
    torch.testing.assert_close(w2["w"], torch.tensor([0.5 - 0.55, 2.0 + 0.7]))
    half, _ = server_update(w0, avg1, None, momentum=0.9, server_lr=0.5)
    torch.testing.assert_close(half["w"], torch.tensor([0.75, 1.5]))
    assert w0["w"].tolist() == [1.0, 1.0] and v1["w"].tolist() == [0.5, -1.0]  # inputs are not modified


# --- the script ---------------------------------------------------------------------------------------------


def _main(script: ModuleType, prepared: Prepared, out: Path, *args: str) -> None:
    common = ["--data-dir", prepared.url, "--cache-dir", prepared.cache, "--set", f"max_image_side={MAX_SIDE}"]
    assert script.main([*common, "--tiny", "--threads", "1", "--out", str(out), *args]) == 0


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.width >= 800 and image.height >= 300


def test_script_fedavg_writes_metrics_and_plot(script, prepared, clients, tmp_path):
    args = "--rounds 2 --clients-per-round 4 --max-local-steps 4 --lr 3e-3 --batch-size 16 --val-limit 100 --seed 1"
    _main(script, prepared, tmp_path, *args.split())
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["mode"] == "fedavg" and report["config"] == "family_user"
    assert report["settings"]["clients_per_round"] == 4 and report["settings"]["local"]["max_steps"] == 4
    rows = report["rows"]
    assert [row["round"] for row in rows] == [0, 1, 2] and [list(row) for row in rows] == [ROUND_KEYS] * 3
    assert rows[1]["client_ids"] == clients.sample(4, 2) and rows[2]["client_ids"] == clients.sample(4, 3)
    with (tmp_path / "metrics.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ROUND_KEYS and len(table) == 3
    assert table[0]["train_loss"] == "" and float(table[2]["val_loss"]) == pytest.approx(rows[2]["val_loss"])
    assert table[1]["client_ids"] == " ".join(map(str, rows[1]["client_ids"]))
    _check_png(tmp_path / "accuracy.png")


def test_script_central_runs_one_epoch(script, prepared, tmp_path):
    _main(script, prepared, tmp_path, "--mode", "central", "--epochs", "1", "--batch-size", "32", "--lr", "3e-3")
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["mode"] == "central" and report["settings"]["epochs"] == 1
    before, after = report["rows"]
    assert list(before) == list(after) == EPOCH_KEYS
    assert before["epoch"] == 0 and before["train_loss"] is None
    assert after["epoch"] == 1 and after["examples"] == prepared.train.num_rows
    assert after["steps"] == math.ceil(prepared.train.num_rows / 32)
    assert math.isfinite(after["train_loss"]) and after["val_loss"] < before["val_loss"]
    with (tmp_path / "metrics.csv").open(newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0.0", "1.0"]
    _check_png(tmp_path / "accuracy.png")


def test_script_bench_pipeline_measures_pipeline_and_model(script, prepared, tmp_path):
    args = "--bench-pipeline --bench-models tiny --bench-workers 0,1 --batch-size 4 --bench-batches 2 --bench-steps 1"
    _main(script, prepared, tmp_path, *args.split())
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [(row["model"], row["image_size"], row["workers"], row["transform"]) for row in rows] == [
        ("tiny", 32, 0, "processor"),
        ("tiny", 32, 0, "fast"),
        ("tiny", 32, 1, "processor"),
        ("tiny", 32, 1, "fast"),
    ]
    for row in rows:
        assert row["pipeline_images_per_s"] > 0 and row["step_seconds"] > 0
        assert row["model_images_per_s"] == pytest.approx(4 / row["step_seconds"])
        assert row["bound"] == ("input" if row["pipeline_images_per_s"] < row["model_images_per_s"] else "model")


def test_script_trains_on_an_export_plus_images(script, prepared, clients, tmp_path):
    from inat_hf.hub.folder import export_dataset

    export_dataset(str(tmp_path / "export"), prepared.url, ["family_user"], cache_dir=prepared.cache)
    out = tmp_path / "out"
    options = "--tiny --threads 1 --rounds 1 --clients-per-round 2 --max-local-steps 2 --val-limit 16"
    source = ["--export", str(tmp_path / "export"), "--images", prepared.url, "--cache-dir", str(tmp_path / "cache")]
    args = [*source, *options.split()]
    assert script.main([*args, "--out", str(out)]) == 0
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    sizes = dict(zip(clients.client_ids.tolist(), clients.sizes.tolist(), strict=True))
    assert rows[1]["client_ids"] == clients.sample(2, 1)  # the export keeps the builder's clients
    assert rows[1]["examples"] == sum(sizes[c] for c in rows[1]["client_ids"])
    assert rows[1]["steps"] == sum(min(2, math.ceil(sizes[c] / 32)) for c in rows[1]["client_ids"])
    with pytest.raises(SystemExit, match=r"has no images \(a manifest-only export\).*--images-dir"):
        script.main(["--export", str(tmp_path / "export"), "--tiny"])
