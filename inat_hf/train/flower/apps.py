"""The Flower ``ClientApp`` for ViT fine-tuning on iNat-FL.

The ``ServerApp`` and the simulation are in :mod:`inat_hf.train.flower.server`::

    data = TrainingData.of(config="family_user", data_dir="out/small")
    data.prepare()
    rows = run_flower_simulation(data, ModelSpec(size="tiny"), FedAvgSettings(rounds=5, clients_per_round=10))

Node ``partition-id`` ``i`` (Flower's ``node_config``) trains on partition ``i`` of
:class:`inat_hf.federated.partitioner.INatPartitioner` over the data's ``train`` split (the ``i``-th client in
client-id order); the split, its input pipeline and the model are opened once per worker process. It
loads the server's weights, trains with :func:`inat_hf.train.training.train_local` for the round's
``local-epochs`` (settings in the message's ``ConfigRecord``), shuffling with
:func:`inat_hf.train.fedavg.client_seed` (seed, round, client id), and replies with its weights and its
``num-examples`` (Flower's FedAvg weight), steps and summed loss.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from inat_hf.federated.partitioner import INatPartitioner
from inat_hf.train.data import TrainingData
from inat_hf.train.fedavg import FedAvgSettings, client_seed
from inat_hf.train.training import (
    LocalSettings,
    label_names,
    load_weights,
    make_model,
    make_processor,
    make_transform,
    pick_device,
    train_local,
    with_pipeline,
)

try:
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
except ImportError as err:
    raise ImportError(
        'inat_hf.train.flower.apps needs Flower: pip install "inaturalist-fl[flower]" '
        "(the flower extra of pyproject.toml: the Flower version this project is tested with)"
    ) from err


@dataclass(frozen=True)
class ModelSpec:
    """The ViT every node builds: ``checkpoint`` (a name or path), or a random ViT of ``size``."""

    checkpoint: str | None = None
    size: str = "tiny"
    new_head: bool = False

    def processor(self) -> Any:
        """The image processor of the model (its input size and normalisation)."""
        return make_processor(checkpoint=self.checkpoint, size=self.size)

    def build(self, labels: list[str]) -> torch.nn.Module:
        """The model over ``labels`` (see :func:`inat_hf.train.training.make_model`)."""
        return make_model(labels, checkpoint=self.checkpoint, size=self.size, new_head=self.new_head)


# --- client -----------------------------------------------------------------------------------------------


def number(record: Mapping[str, Any], key: str) -> float:
    """``record[key]`` as a number (a ``ConfigRecord`` or ``MetricRecord`` entry).

    Raises
    ------
    ValueError
        If the entry is missing or not a number.
    """
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"the Flower record has no number {key!r} (got {value!r}); keys: {sorted(record)}")
    return value


def integer(record: Mapping[str, Any], key: str) -> int:
    """``record[key]`` as an int (see :func:`number`)."""
    return int(number(record, key))


@functools.lru_cache(maxsize=2)
def client_side(data: TrainingData, model: ModelSpec) -> tuple[INatPartitioner, torch.nn.Module]:
    """The partitioner over the data's ``train`` split (model inputs) and a model, once per process."""
    train = data.split("train")
    partitioner = INatPartitioner()
    partitioner.dataset = with_pipeline(train, make_transform(model.processor()))
    return partitioner, model.build(label_names(train))


def local_settings(config: Mapping[str, Any]) -> LocalSettings:
    """The :class:`LocalSettings` carried by a train message's config (see :func:`train_config`)."""
    steps = integer(config, "max-steps")
    return LocalSettings(
        epochs=integer(config, "local-epochs"),
        batch_size=integer(config, "batch-size"),
        lr=number(config, "lr"),
        optimizer=str(config.get("optimizer")),
        weight_decay=number(config, "weight-decay"),
        max_steps=steps if steps > 0 else None,
        workers=integer(config, "workers"),
    )


def train_config(settings: FedAvgSettings) -> ConfigRecord:
    """The ``ConfigRecord`` sent with every train message: local settings and the run's seed."""
    s = settings.local
    return ConfigRecord(
        {
            "local-epochs": s.epochs,
            "batch-size": s.batch_size,
            "lr": s.lr,
            "optimizer": s.optimizer,
            "weight-decay": s.weight_decay,
            "max-steps": s.max_steps or 0,
            "workers": s.workers,
            "seed": settings.seed,
        }
    )


def train_partition(
    partition_id: int,
    config: Mapping[str, Any],
    weights: Mapping[str, torch.Tensor],
    data: TrainingData,
    model_spec: ModelSpec,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """One client's round: its partition, the server's ``weights``, local training as ``config`` says.

    Returns the new weights (on the CPU) and the reply's metrics: ``num-examples`` (FedAvg's weight),
    ``steps``, ``loss-sum`` and ``loss-examples`` (the summed loss and examples of every step),
    ``client-id``.

    Raises
    ------
    ValueError
        If ``partition_id`` is not a partition of the split, the partition has no rows, the server's weights
        do not fit this client's model (another config's label count), or an image is missing.
    """
    partitioner, model = client_side(data, model_spec)
    client_id = partitioner.partition_id_to_client_id(partition_id)
    partition = partitioner.load_partition(partition_id)
    if len(partition) == 0:
        raise ValueError(
            f"partition {partition_id} (client {client_id}) of {data.config} has no train rows: give the "
            "simulation only clients with rows (raise min_client_size, or fewer num_supernodes)"
        )
    load_weights(model, weights, source="the Flower server")
    model.to(pick_device())
    seed = client_seed(integer(config, "seed"), integer(config, "server-round"), client_id)
    result = train_local(model, partition, local_settings(config), seed=seed)
    metrics: dict[str, Any] = {
        "num-examples": result.examples,
        "steps": len(result.losses),
        "loss-sum": float(np.dot(result.losses, result.batch_sizes)) if result.losses else 0.0,
        "loss-examples": int(sum(result.batch_sizes)),
        "client-id": client_id,
    }
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, metrics


def train_client(message: Message, context: Context, data: TrainingData, model_spec: ModelSpec) -> Message:
    """The ClientApp's train handler: :func:`train_partition` of the node's ``partition-id``."""
    weights = message.content.array_records["arrays"].to_torch_state_dict()
    state, metrics = train_partition(
        int(context.node_config["partition-id"]),
        message.content.config_records["config"],
        weights,
        data,
        model_spec,
    )
    reply = RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics)})
    return Message(reply, reply_to=message)


def make_client_app(data: TrainingData, model: ModelSpec) -> ClientApp:
    """The ``ClientApp`` of :func:`train_client` (picklable: Ray ships it to its worker processes)."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return train_client(message, context, data, model)

    return app
