"""The Flower ``ClientApp`` for ViT fine-tuning on iNat-FL: ``app``, the component of ``flower_app/``.

``flwr run flower_app`` runs it on every SuperNode (the Deployment Engine) or simulated node: it reads the
run config (:class:`inat_hf.train.flower.runconfig.AppConfig`) and the node config: ``partition-id`` ``i``
(Flower sets it in a simulation; ``flower-supernode --node-config`` on a real node) is the ``i``-th client of
the ``train`` split in client-id order, and the node reads that client's rows only
(:mod:`inat_hf.train.flower.nodedata`), from the node's own copy when its node config names one
(:func:`~inat_hf.train.flower.runconfig.node_source`). It loads the server's weights, trains with
:func:`inat_hf.train.training.train_local` for the round's ``local-epochs`` (settings in the message's
``ConfigRecord``), shuffling with :func:`inat_hf.train.fedavg.client_seed` (seed, round, client id), and
replies with its weights and its ``num-examples`` (Flower's FedAvg weight), steps and summed loss.
The ``ServerApp`` is in :mod:`inat_hf.train.flower.server`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from inat_hf.train.data import TrainingData
from inat_hf.train.fedavg import FedAvgSettings, client_seed
from inat_hf.train.flower.nodedata import client_rows, partition_client
from inat_hf.train.flower.runconfig import AppConfig, ModelSpec, node_partition, node_source
from inat_hf.train.training import (
    LocalSettings,
    label_names,
    load_weights,
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
def client_model(model: ModelSpec, labels: tuple[str, ...]) -> tuple[torch.nn.Module, Any]:
    """The model over ``labels`` and its input transform, once per process (each round loads new weights)."""
    return model.build(list(labels)), make_transform(model.processor())


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
        proximal_mu=number(config, "proximal-mu") if "proximal-mu" in config else 0.0,  # FedProx sends it
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
    source: TrainingData,
    model_spec: ModelSpec,
    num_partitions: int | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """One client's round: its partition's rows only, the server's ``weights``, local training as ``config`` says.

    Returns the new weights (on the CPU) and the reply's metrics: ``num-examples`` (FedAvg's weight),
    ``steps``, ``loss-sum`` and ``loss-examples`` (the summed loss and examples of every step),
    ``client-id``.

    Raises
    ------
    ValueError
        If ``partition_id`` is not a partition of the split, the partition has no rows, the server's weights
        do not fit this client's model (another config's label count), or an image is missing.
    """
    client_id = partition_client(source, partition_id, num_partitions)
    rows = client_rows(source, client_id)
    model, transform = client_model(model_spec, tuple(label_names(rows)))
    data = with_pipeline(rows, transform)
    if len(data) == 0:
        raise ValueError(
            f"partition {partition_id} (client {client_id}) of {source.config} has no train rows: give the "
            "simulation only clients with rows (raise min_client_size, or fewer num_supernodes)"
        )
    load_weights(model, weights, source="the Flower server")
    model.to(pick_device())
    seed = client_seed(integer(config, "seed"), integer(config, "server-round"), client_id)
    result = train_local(model, data, local_settings(config), seed=seed)
    metrics: dict[str, Any] = {
        "num-examples": result.examples,
        "steps": len(result.losses),
        "loss-sum": float(np.dot(result.losses, result.batch_sizes)) if result.losses else 0.0,
        "loss-examples": int(sum(result.batch_sizes)),
        "client-id": client_id,
    }
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, metrics


def train_client(message: Message, context: Context, run_config: Mapping[str, Any] | None = None) -> Message:
    """The ClientApp's train handler: :func:`train_partition` of the node's ``partition-id``, on the data of
    :func:`~inat_hf.train.flower.runconfig.node_source` (``run_config``, default the context's).
    """
    run = context.run_config if run_config is None else run_config
    spec = AppConfig.from_run_config(run).model
    partition_id, num_partitions = node_partition(context.node_config)
    weights = message.content.array_records["arrays"].to_torch_state_dict()
    config = message.content.config_records["config"]
    source = node_source(run, context.node_config)
    state, metrics = train_partition(partition_id, config, weights, source, spec, num_partitions)
    reply = RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics)})
    return Message(reply, reply_to=message)


def client_app_for(run_config: Mapping[str, Any] | None = None) -> ClientApp:
    """A ``ClientApp`` of :func:`train_client`: with ``run_config`` (``scripts/flower_sim.py``, whose
    ``run_simulation`` passes none), else the context's (``flwr run``). Picklable: Ray ships it to its workers.
    """
    client = ClientApp()
    fixed = dict(run_config) if run_config is not None else None

    @client.train()
    def train(message: Message, context: Context) -> Message:
        return train_client(message, context, fixed)

    return client


app = client_app_for()
"""The ClientApp component of ``flower_app/pyproject.toml`` (``inat_hf.train.flower.apps:app``)."""
