"""Flower apps for ViT fine-tuning on iNat-FL.

A ``ClientApp`` per client, a ``ServerApp`` with Flower's ``FedAvg`` / ``FedAvgM``, and
:func:`run_flower_simulation` (``flwr.simulation.run_simulation``, Ray backend)::

    source = DataSource(config="family_user", data_dir="out/small")
    source.prepare()
    rows = run_flower_simulation(source, ModelSpec(size="tiny"), FedAvgSettings(rounds=5, clients_per_round=10))

**Client** (:func:`make_client_app`). Node ``partition-id`` ``i`` (Flower's ``node_config``) trains on
partition ``i`` of :class:`inat_hf.flower.INatPartitioner` over the source's ``train`` split (the ``i``-th
client in client-id order); the split, its input pipeline and the model are opened once per worker
process. It loads the server's weights, trains with :func:`inat_hf.train.training.train_local` for the
round's ``local-epochs`` (settings in the message's ``ConfigRecord``), shuffling with
:func:`inat_hf.train.fedavg.client_seed` (seed, round, client id), and replies with its weights and its
``num-examples`` (Flower's FedAvg weight), steps and summed loss.

**Server** (:func:`make_server_app`). Flower's ``FedAvg`` (``FedAvgM`` when ``server_momentum`` or
``server_lr`` is set: the same update as :func:`inat_hf.train.fedavg.server_update`) samples
``clients_per_round`` nodes per round; the global model is evaluated on the central ``validation`` split
before training and after every round (Flower's ``evaluate_fn``), giving the rows of
:func:`inat_hf.train.fedavg.run_fedavg`. A client that fails stops the run with its error (Flower's own
strategies would average the others and go on). Flower samples the cohort with ``random.sample`` over
node ids, so cohorts differ between runs unless every node trains every round.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from inat_hf.flower import INatPartitioner
from inat_hf.train.datasource import DataSource
from inat_hf.train.fedavg import FedAvgSettings, client_seed
from inat_hf.train.training import (
    LocalSettings,
    Rows,
    evaluate,
    label_names,
    load_weights,
    make_model,
    make_processor,
    make_transform,
    pick_device,
    seed_everything,
    train_local,
    with_pipeline,
)

try:
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg, FedAvgM
except ImportError as err:
    raise ImportError(
        'inat_hf.train.flower_apps needs Flower: pip install "inaturalist-fl[flower]" '
        '(or pip install "flwr[simulation]==1.42.0")'
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
def client_side(source: DataSource, model: ModelSpec) -> tuple[INatPartitioner, torch.nn.Module]:
    """The partitioner over the source's ``train`` split (model inputs) and a model, once per process."""
    train = source.split("train")
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


def train_client(message: Message, context: Context, source: DataSource, model_spec: ModelSpec) -> Message:
    """One client's round: its partition, the server's weights, local training; the reply.

    Raises
    ------
    ValueError
        If the node's ``partition-id`` is not a partition of the split, the partition has no rows, or the
        server's weights do not fit this client's model (another config's label count).
    """
    partition_id = int(context.node_config["partition-id"])
    partitioner, model = client_side(source, model_spec)
    client_id = partitioner.partition_id_to_client_id(partition_id)
    data = partitioner.load_partition(partition_id)
    if len(data) == 0:
        raise ValueError(
            f"partition {partition_id} (client {client_id}) of {source.config} has no train rows: give the "
            "simulation only clients with rows (raise min_client_size, or fewer num_supernodes)"
        )
    config = message.content.config_records["config"]
    local = local_settings(config)
    arrays = message.content.array_records["arrays"]
    load_weights(model, arrays.to_torch_state_dict(), source="the Flower server")
    model.to(pick_device())
    seed = client_seed(integer(config, "seed"), integer(config, "server-round"), client_id)
    result = train_local(model, data, local, seed=seed)
    metrics = MetricRecord(
        {
            "num-examples": result.examples,
            "steps": len(result.losses),
            "loss-sum": float(np.dot(result.losses, result.batch_sizes)) if result.losses else 0.0,
            "loss-examples": int(sum(result.batch_sizes)),
            "client-id": client_id,
        }
    )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return Message(RecordDict({"arrays": ArrayRecord(state), "metrics": metrics}), reply_to=message)


def make_client_app(source: DataSource, model: ModelSpec) -> ClientApp:
    """The ``ClientApp`` of :func:`train_client` (picklable: Ray ships it to its worker processes)."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return train_client(message, context, source, model)

    return app


# --- server -----------------------------------------------------------------------------------------------


class ClientFailedError(RuntimeError):
    """A client's reply carried an error; the message holds the client's own error message."""


def _client_error(reason: str) -> str:
    """The client's exception message out of Flower's ``"<class ...>:<'message'>"`` reason."""
    match = re.fullmatch(r"<class '[^']*'>:<'(.*)'>", reason, flags=re.S)
    return match.group(1) if match else reason


def check_replies(server_round: int, replies: Iterable[Message]) -> list[Message]:
    """The replies, or :class:`ClientFailedError` naming the first client error of the round."""
    replies = list(replies)
    failed = [reply for reply in replies if reply.has_error()]
    if failed:
        raise ClientFailedError(
            f"{len(failed)} of {len(replies)} clients failed in round {server_round}; the first said: "
            f"{_client_error(failed[0].error.reason or 'no reason given')}"
        )
    return replies


class StrictFedAvg(FedAvg):
    """Flower's ``FedAvg`` that stops the run when a client fails (see :func:`check_replies`)."""

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Check the replies, then aggregate as ``FedAvg`` does."""
        return super().aggregate_train(server_round, check_replies(server_round, replies))


class StrictFedAvgM(FedAvgM):
    """Flower's ``FedAvgM`` that stops the run when a client fails (see :func:`check_replies`)."""

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Check the replies, then aggregate as ``FedAvgM`` does."""
        return super().aggregate_train(server_round, check_replies(server_round, replies))


def aggregate_train_metrics(records: list[RecordDict], weighted_by_key: str) -> MetricRecord:
    """The round's totals: examples, steps, clients and their ids, and the mean loss over every example of
    every local step (``loss-sum / loss-examples``).
    """
    metrics = [next(iter(record.metric_records.values())) for record in records]
    seen = sum(integer(m, "loss-examples") for m in metrics)
    ids: list[int] = sorted(integer(m, "client-id") for m in metrics)
    return MetricRecord(
        {
            weighted_by_key: sum(integer(m, weighted_by_key) for m in metrics),
            "steps": sum(integer(m, "steps") for m in metrics),
            "train-loss": sum(number(m, "loss-sum") for m in metrics) / seen if seen else float("nan"),
            "client-ids": ids,
        }
    )


def make_strategy(settings: FedAvgSettings, num_nodes: int) -> FedAvg:
    """Flower's ``FedAvg`` (``FedAvgM`` with server momentum or a server lr) sampling ``clients_per_round``
    of ``num_nodes`` nodes per round, without federated evaluation (the server evaluates centrally).
    """
    k = settings.clients_per_round
    if k > num_nodes:
        raise ValueError(f"clients_per_round={k}, but the simulation has {num_nodes} nodes (one per client)")
    common: dict[str, Any] = {
        "fraction_train": k / num_nodes,
        "min_train_nodes": k,
        "min_available_nodes": num_nodes,
        "fraction_evaluate": 0.0,
        "train_metrics_aggr_fn": aggregate_train_metrics,
    }
    if settings.server_momentum or settings.server_lr != 1.0:
        return StrictFedAvgM(
            **common, server_learning_rate=settings.server_lr, server_momentum=settings.server_momentum
        )
    return StrictFedAvg(**common)


class RoundRecorder:
    """Flower's ``evaluate_fn`` and train-metrics hook: one row per round, as :func:`run_fedavg` writes."""

    def __init__(
        self,
        model: torch.nn.Module,
        validation: Any,
        settings: FedAvgSettings,
        on_round: Callable[[Rows], None] | None = None,
    ) -> None:
        self.model, self.validation, self.settings, self.on_round = model, validation, settings, on_round
        self.rows: Rows = []
        self._train: MetricRecord | None = None
        self._start = time.perf_counter()

    def aggregate(self, records: list[RecordDict], weighted_by_key: str) -> MetricRecord:
        """:func:`aggregate_train_metrics`, kept for the round's row."""
        self._train = aggregate_train_metrics(records, weighted_by_key)
        return self._train

    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        """Evaluate the global weights on the validation split; add and report the round's row."""
        load_weights(self.model, arrays.to_torch_state_dict(), source=f"the aggregate of round {server_round}")
        s = self.settings
        metrics = evaluate(self.model, self.validation, batch_size=s.eval_batch_size, workers=s.local.workers)
        train, self._train = (self._train if server_round else None), None
        ids = train.get("client-ids", []) if train is not None else []
        self.rows.append(
            {
                "round": server_round,
                "clients": len(ids) if isinstance(ids, list) else 0,
                "examples": integer(train, "num-examples") if train is not None else 0,
                "steps": integer(train, "steps") if train is not None else 0,
                "train_loss": number(train, "train-loss") if train is not None else None,
                "val_loss": metrics["loss"],
                "val_accuracy": metrics["accuracy"],
                "seconds": time.perf_counter() - self._start,
                "client_ids": [int(i) for i in ids] if isinstance(ids, list) else [],
            }
        )
        self._start = time.perf_counter()
        if self.on_round is not None:
            self.on_round(self.rows)
        return MetricRecord({"val-loss": metrics["loss"], "val-accuracy": metrics["accuracy"]})


def make_server_app(
    model: torch.nn.Module,
    validation: Any,
    settings: FedAvgSettings,
    *,
    num_nodes: int,
    on_round: Callable[[Rows], None] | None = None,
) -> tuple[ServerApp, RoundRecorder]:
    """The ``ServerApp`` and the recorder whose ``rows`` it fills (round 0: the initial model).

    ``model`` holds the initial weights and is evaluated on ``validation`` (model inputs) on
    :func:`pick_device`; it ends with the final global weights.
    """
    recorder = RoundRecorder(model, validation, settings, on_round)
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        seed_everything(settings.seed)
        strategy = make_strategy(settings, num_nodes)
        strategy.train_metrics_aggr_fn = recorder.aggregate
        model.to(pick_device())
        initial = ArrayRecord({k: v.detach().cpu() for k, v in model.state_dict().items()})
        strategy.start(
            grid=grid,
            initial_arrays=initial,
            num_rounds=settings.rounds,
            train_config=train_config(settings),
            evaluate_fn=recorder.evaluate,
        )

    return app, recorder


def run_flower_simulation(
    source: DataSource,
    model_spec: ModelSpec,
    settings: FedAvgSettings,
    *,
    num_nodes: int | None = None,
    client_resources: Mapping[str, float] | None = None,
    ray_init_args: Mapping[str, Any] | None = None,
    on_round: Callable[[Rows], None] | None = None,
    val_limit: int | None = None,
) -> Rows:
    """Run the apps through ``flwr.simulation.run_simulation`` (Ray backend); one row per round.

    ``num_nodes`` (default: every client of the train split) Flower nodes with ``partition-id``
    ``0 .. num_nodes - 1``; ``client_resources`` is Flower's (``num_cpus``, ``num_gpus`` per client).
    The source must be prepared (:meth:`DataSource.prepare`).

    Raises
    ------
    ValueError
        If ``num_nodes`` exceeds the clients of the split, or ``clients_per_round`` exceeds ``num_nodes``.
    ClientFailedError
        If a client fails (its error message included).
    """
    from flwr.simulation import run_simulation

    from inat_hf.train.training import limit

    partitioner, _ = client_side(source, model_spec)
    count = partitioner.num_partitions
    nodes = count if num_nodes is None else num_nodes
    if not 1 <= nodes <= count:
        raise ValueError(
            f"num_nodes={nodes}: the train split of {source.config} has {count} clients (partitions 0..{count - 1})"
        )
    make_strategy(settings, nodes)  # checks clients_per_round before Ray starts
    validation = source.split("validation")
    transform = make_transform(model_spec.processor())
    seed_everything(settings.seed)
    model = model_spec.build(label_names(validation))
    server, recorder = make_server_app(
        model, limit(with_pipeline(validation, transform), val_limit, settings.seed), settings, num_nodes=nodes,
        on_round=on_round,
    )  # fmt: skip
    resources = dict(client_resources or {"num_cpus": 1, "num_gpus": 1.0 if torch.cuda.is_available() else 0.0})
    backend = {"client_resources": resources, "init_args": dict(ray_init_args or {})}
    run_simulation(
        server_app=server,
        client_app=make_client_app(source, model_spec),
        num_supernodes=nodes,
        backend_config=backend,
    )
    if len(recorder.rows) != settings.rounds + 1:
        raise ClientFailedError(f"the simulation ended after {len(recorder.rows) - 1} of {settings.rounds} rounds")
    return recorder.rows
