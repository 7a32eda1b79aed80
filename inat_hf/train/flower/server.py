"""The Flower ``ServerApp`` for ViT fine-tuning on iNat-FL, and :func:`run_flower_simulation`.

Flower's ``FedAvg`` (``FedAvgM`` when ``server_momentum`` or ``server_lr`` is set: the same update as
:func:`inat_hf.train.fedavg.server_update`) samples ``clients_per_round`` nodes per round and sends them the
global weights and the local settings (:func:`inat_hf.train.flower.apps.train_config`); the global model is
evaluated on the central ``validation`` split before training and after every round (Flower's
``evaluate_fn``), giving the rows of :func:`inat_hf.train.fedavg.run_fedavg`. A client that fails stops the
run with its error (Flower's own strategies would average the others and go on). Flower samples the
cohort with ``random.sample`` over node ids, so cohorts differ between runs unless every node trains every
round. :func:`run_flower_simulation` runs the apps with ``flwr.simulation.run_simulation`` (Ray backend).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from inat_hf.train.data import TrainingData
from inat_hf.train.fedavg import FedAvgSettings
from inat_hf.train.flower.apps import ModelSpec, client_side, integer, make_client_app, number, train_config
from inat_hf.train.training import (
    Rows,
    evaluate,
    label_names,
    limit,
    load_weights,
    make_transform,
    pick_device,
    seed_everything,
    with_pipeline,
)

try:
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg, FedAvgM
except ImportError as err:
    raise ImportError(
        'inat_hf.train.flower.server needs Flower: pip install "inaturalist-fl[flower]" '
        "(the flower extra of pyproject.toml: the Flower version this project is tested with)"
    ) from err


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
    data: TrainingData,
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
    The data must be prepared (:meth:`TrainingData.prepare`).

    Raises
    ------
    ValueError
        If ``num_nodes`` exceeds the clients of the split, or ``clients_per_round`` exceeds ``num_nodes``.
    ClientFailedError
        If a client fails (its error message included).
    """
    from flwr.simulation import run_simulation

    partitioner, _ = client_side(data, model_spec)
    count = partitioner.num_partitions
    nodes = count if num_nodes is None else num_nodes
    if not 1 <= nodes <= count:
        raise ValueError(
            f"num_nodes={nodes}: the train split of {data.config} has {count} clients (partitions 0..{count - 1})"
        )
    make_strategy(settings, nodes)  # checks clients_per_round before Ray starts
    validation = data.split("validation")
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
        client_app=make_client_app(data, model_spec),
        num_supernodes=nodes,
        backend_config=backend,
    )
    if len(recorder.rows) != settings.rounds + 1:
        raise ClientFailedError(f"the simulation ended after {len(recorder.rows) - 1} of {settings.rounds} rounds")
    return recorder.rows
