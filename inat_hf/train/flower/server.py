"""The Flower ``ServerApp`` for ViT fine-tuning on iNat-FL (``app``, the component of ``flower_app/``), and
:func:`run_flower_simulation`.

The ServerApp reads the run config (:class:`inat_hf.train.flower.runconfig.AppConfig`), builds the model
and the central ``validation`` split from the run's data, waits for ``num-nodes`` nodes, and runs Flower's
strategy (:func:`make_strategy`): ``FedAvg``; ``FedAvgM`` with ``strategy = "fedavgm"``, a server momentum or
a server lr (the same update as :func:`inat_hf.train.fedavg.server_update`); ``FedProx`` (the clients add
the proximal term), ``FedAdam`` or ``FedYogi``. Each round it samples ``clients-per-round`` nodes and sends
them the global weights and the local settings (:func:`inat_hf.train.flower.apps.train_config`); the global
model is evaluated on the validation split before training and after every round (Flower's
``evaluate_fn``), giving the rows of :func:`inat_hf.train.fedavg.run_fedavg`, written to ``out`` as
``metrics.json``, ``metrics.csv`` and ``accuracy.png`` (:mod:`inat_hf.train.report`) whether the nodes
are simulated or real. A client that fails stops the run with its error (Flower's own strategies would
average the others and go on). Flower samples the cohort with ``random.sample`` over node ids, so cohorts
differ between runs unless every node trains every round (the ServerApp seeds Python's generator, so a
simulation repeats its cohorts). :func:`run_flower_simulation` and :func:`simulate` run the same apps with
``flwr.simulation.run_simulation`` (Ray backend), as ``scripts/flower_sim.py`` and ``inat-fl baselines`` do.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from inat_hf.train.fedavg import FedAvgSettings
from inat_hf.train.flower.apps import client_app_for, integer, number, train_config
from inat_hf.train.flower.nodedata import client_ids
from inat_hf.train.flower.runconfig import AppConfig
from inat_hf.train.report import round_reporter
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
    from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedProx, FedYogi
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


class Strict:
    """Mixin of a Flower strategy that stops the run when a client fails (see :func:`check_replies`)."""

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Check the replies, then aggregate as the strategy does."""
        return super().aggregate_train(server_round, check_replies(server_round, replies))  # type: ignore[misc]


class StrictFedAvg(Strict, FedAvg):
    """Flower's ``FedAvg``, strict."""


class StrictFedAvgM(Strict, FedAvgM):
    """Flower's ``FedAvgM`` (server momentum), strict."""


class StrictFedProx(Strict, FedProx):
    """Flower's ``FedProx`` (it sends ``proximal-mu``; the client adds the proximal term), strict."""


class StrictFedAdam(Strict, FedAdam):
    """Flower's ``FedAdam`` (Reddi et al. 2021, server-side Adam), strict."""


class StrictFedYogi(Strict, FedYogi):
    """Flower's ``FedYogi`` (Reddi et al. 2021, server-side Yogi), strict."""


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


def make_strategy(
    settings: FedAvgSettings,
    num_nodes: int,
    *,
    algorithm: str | None = None,
    proximal_mu: float = 0.0,
    tau: float = 1e-3,
) -> FedAvg:
    """Flower's strategy ``algorithm`` sampling ``clients_per_round`` of ``num_nodes`` nodes per round, without
    federated evaluation (the server evaluates centrally).

    ``fedavg`` (``FedAvgM`` when a server momentum or lr is set, as ``None`` does), ``fedavgm``
    (``settings.server_lr`` and ``server_momentum``), ``fedprox`` (``proximal_mu``), ``fedadam`` and
    ``fedyogi`` (``eta = settings.server_lr``, ``eta_l`` the clients' lr, ``beta_1 = settings.server_momentum``
    or Flower's 0.9, ``tau``).
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
    if algorithm == "fedprox":
        return StrictFedProx(**common, proximal_mu=proximal_mu)
    if algorithm in ("fedadam", "fedyogi"):
        kind = StrictFedAdam if algorithm == "fedadam" else StrictFedYogi
        beta_1 = settings.server_momentum or 0.9
        return kind(**common, eta=settings.server_lr, eta_l=settings.local.lr, beta_1=beta_1, tau=tau)
    if algorithm == "fedavgm" or settings.server_momentum or settings.server_lr != 1.0:
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


def run_rounds(
    grid: Grid, recorder: RoundRecorder, num_nodes: int, algorithm: str | None = None, **strategy_options: float
) -> None:
    """Flower's strategy (:func:`make_strategy`, with ``strategy_options``: ``proximal_mu``, ``tau``) over the
    grid from the recorder's model, for the settings' rounds; the recorder evaluates the global model before
    training and after every round.
    """
    settings, model = recorder.settings, recorder.model
    seed_everything(settings.seed)
    strategy = make_strategy(settings, num_nodes, algorithm=algorithm, **strategy_options)
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


def wait_for_nodes(grid: Grid, count: int, seconds: float) -> None:
    """Wait until ``count`` nodes are connected (Flower would wait for ever).

    Raises
    ------
    TimeoutError
        If fewer are connected after ``seconds``, naming how many and what to do.
    """
    deadline = time.monotonic() + seconds
    while (connected := len(list(grid.get_node_ids()))) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{connected} of num-nodes = {count} SuperNodes connected within node-wait-seconds = {seconds:g}: "
                "start the missing SuperNodes (flower-supernode --superlink ...), or lower num-nodes in the run "
                "config (a simulation has --federation-config num-supernodes=N nodes)"
            )
        time.sleep(1.0)


def server_side(config: AppConfig, on_round: Callable[[Rows], None] | None = None) -> RoundRecorder:
    """The run's model (initial weights) and its evaluation on the central validation split, in a recorder."""
    config.source.prepare(num_proc=config.num_proc)
    validation = config.source.split("validation")
    transform = make_transform(config.model.processor())
    seed_everything(config.settings.seed)
    model = config.model.build(label_names(validation))
    data = limit(with_pipeline(validation, transform), config.val_limit, config.settings.seed)
    return RoundRecorder(model, data, config.settings, on_round)


def serve(grid: Grid, run_config: Mapping[str, Any]) -> RoundRecorder:
    """The ServerApp's work: read the run config, wait for ``num-nodes`` nodes, run the rounds, and write
    ``metrics.json``, ``metrics.csv`` and ``accuracy.png`` under ``out`` after every round.

    Raises
    ------
    ClientFailedError
        If a client fails (its message included) or the strategy stops before the last round.
    """
    config = AppConfig.from_run_config(run_config)
    meta = config.meta(str(pick_device()))
    on_round = round_reporter(Path(config.out), meta, config.settings.rounds) if config.out else None
    recorder = server_side(config, on_round)
    wait_for_nodes(grid, config.num_nodes, config.node_wait_seconds)
    run_rounds(grid, recorder, config.num_nodes, config.strategy, proximal_mu=config.proximal_mu, tau=config.tau)
    if len(recorder.rows) != config.settings.rounds + 1:
        raise ClientFailedError(f"the run ended after {len(recorder.rows) - 1} of {config.settings.rounds} rounds")
    return recorder


def server_app_for(run_config: Mapping[str, Any] | None = None, results: list[Any] | None = None) -> ServerApp:
    """A ``ServerApp`` of :func:`serve`: with ``run_config`` (``scripts/flower_sim.py``), else the context's
    (``flwr run``). ``results`` gets the recorder, or the error the run raised.
    """
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            recorder = serve(grid, context.run_config if run_config is None else run_config)
        except Exception as err:
            if results is None:
                raise
            results.append(err)
        else:
            if results is not None:
                results.append(recorder)

    return server


app = server_app_for()
"""The ServerApp component of ``flower_app/pyproject.toml`` (``inat_hf.train.flower.server:app``)."""


def run_flower_simulation(
    run_config: Mapping[str, Any],
    *,
    client_resources: Mapping[str, float] | None = None,
    ray_init_args: Mapping[str, Any] | None = None,
) -> Rows:
    """The rows (one per round) of :func:`simulate`."""
    return simulate(run_config, client_resources=client_resources, ray_init_args=ray_init_args).rows


def simulate(
    run_config: Mapping[str, Any],
    *,
    client_resources: Mapping[str, float] | None = None,
    ray_init_args: Mapping[str, Any] | None = None,
) -> RoundRecorder:
    """Run the apps with ``run_config`` through ``flwr.simulation.run_simulation`` (Ray backend), on
    ``num-nodes`` simulated nodes (``partition-id`` ``0 .. num-nodes - 1``); the recorder holds one row per
    round and the final global model.

    ``client_resources`` is Flower's (``num_cpus``, ``num_gpus`` per client). The data source is prepared
    here, before Ray starts, so that bad input fails at once.

    Raises
    ------
    ValueError
        A bad run config, or ``num-nodes`` above the clients of the train split.
    ClientFailedError
        If a client fails (its error message included).
    """
    from flwr.simulation import run_simulation

    config = AppConfig.from_run_config(run_config)
    count, nodes = client_ids(config.source).size, config.num_nodes
    if nodes > count:
        raise ValueError(
            f"num_nodes={nodes}: the train split of {config.source.config} has {count} clients "
            f"(partitions 0..{count - 1})"
        )
    config.source.prepare(num_proc=config.num_proc)
    resources = dict(client_resources or {"num_cpus": 1, "num_gpus": 1.0 if torch.cuda.is_available() else 0.0})
    results: list[Any] = []
    backend: dict[str, Any] = {"client_resources": resources, "init_args": dict(ray_init_args or {})}
    run_simulation(
        server_app=server_app_for(run_config, results),
        client_app=client_app_for(run_config),
        num_supernodes=nodes,
        backend_config=backend,
    )
    if not results:
        raise ClientFailedError("the simulation ended before its ServerApp finished (see Flower's log above)")
    if isinstance(results[0], BaseException):
        raise results[0]
    recorder: RoundRecorder = results[0]
    return recorder
