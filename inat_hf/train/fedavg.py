"""Federated averaging: FedAvg (McMahan et al. 2017) and FedAvgM (server momentum, Hsu, Qi and Brown 2019).

Each round samples clients with ``ClientData.sample(k, seed + round)``, trains the global weights on each
client's rows (:func:`inat_hf.train.training.train_local`, fresh optimizer) and averages them weighted by the
clients' example counts; ``server_momentum`` applies ``v <- beta * v + (w - w_avg)``,
``w <- w - server_lr * v``. Every round is evaluated on the central validation split (round 0 is the
initial model). Needs the ``train`` extras, like :mod:`inat_hf.train.training`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch

from inat_hf.federated.clients import ClientData
from inat_hf.train.training import (
    LocalSettings,
    Rows,
    State,
    at_least_one,
    evaluate,
    pick_device,
    seed_everything,
    train_local,
)

# --- aggregation ------------------------------------------------------------------------------------------


class WeightedAverage:
    """Running weighted mean of state dicts, added one client at a time (one model's memory).

    Floating-point entries are summed in float32 and returned in their own dtype; other entries (integer
    buffers) are taken from the first state.
    """

    def __init__(self) -> None:
        self._sum: State = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self._weight = 0.0

    def add(self, state: Mapping[str, torch.Tensor], weight: float) -> None:
        """Add a state dict with its weight (a client's example count, > 0)."""
        if not weight > 0:
            raise ValueError(f"a client's weight must be positive, got {weight!r}")
        if self._sum and set(state) != set(self._sum):
            raise ValueError(f"state dict keys differ: {sorted(set(state) ^ set(self._sum))[:5]}")
        for key, value in state.items():
            value = value.detach()
            if key in self._sum and self._sum[key].shape != value.shape:
                raise ValueError(f"{key}: shape {tuple(value.shape)}, expected {tuple(self._sum[key].shape)}")
            if not torch.is_floating_point(value):
                self._sum.setdefault(key, value.clone())
            elif key in self._sum:
                self._sum[key].add_(value.float(), alpha=weight)
            else:
                self._sum[key], self._dtypes[key] = value.float() * weight, value.dtype
        self._weight += weight

    def result(self) -> State:
        """The weighted mean of the states added so far."""
        if not self._weight:
            raise ValueError("no state was added")
        return {
            k: (v / self._weight).to(self._dtypes[k]) if k in self._dtypes else v.clone() for k, v in self._sum.items()
        }


def fedavg(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> State:
    """``sum_k n_k w_k / sum_k n_k``: client states averaged with their example counts as weights."""
    average = WeightedAverage()
    for state, weight in zip(states, weights, strict=True):
        average.add(state, weight)
    return average.result()


def server_update(
    global_state: Mapping[str, torch.Tensor],
    average: Mapping[str, torch.Tensor],
    velocity: Mapping[str, torch.Tensor] | None = None,
    *,
    server_lr: float = 1.0,
    momentum: float = 0.0,
) -> tuple[State, State | None]:
    """FedAvgM's server step: ``v <- momentum * v + (w - average)``, ``w <- w - server_lr * v``.

    ``velocity`` None is zero. Returns the new global state and velocity (None when ``momentum`` is 0).
    Non-float entries come from ``average``.
    """
    state, new_velocity = {}, {}
    for key, weight in global_state.items():
        if not torch.is_floating_point(weight):
            state[key] = average[key].clone()
            continue
        step = weight.float() - average[key].float()
        if velocity is not None and momentum:
            step.add_(velocity[key], alpha=momentum)
        new_velocity[key] = step
        state[key] = (weight.float() - server_lr * step).to(weight.dtype)
    return state, (new_velocity if momentum else None)


# --- the two modes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FedAvgSettings:
    """Settings of :func:`run_fedavg`; ``server_momentum > 0`` makes it FedAvgM."""

    rounds: int = 10
    clients_per_round: int = 10
    local: LocalSettings = field(default_factory=LocalSettings)
    server_lr: float = 1.0
    server_momentum: float = 0.0
    eval_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        at_least_one(self, "rounds", "clients_per_round", "eval_batch_size")
        if not 0.0 <= self.server_momentum < 1.0:
            raise ValueError(f"server_momentum={self.server_momentum!r}: must be in [0, 1)")
        if not self.server_lr > 0:
            raise ValueError(f"server_lr={self.server_lr!r}: must be positive")


def client_seed(seed: int, round_number: int, client_id: int) -> int:
    """The seed of a client's shuffling in a round: independent of the order in which clients train."""
    return int(np.random.SeedSequence([seed, round_number, client_id]).generate_state(1)[0])


def run_fedavg(
    model: torch.nn.Module,
    clients: ClientData,
    validation: datasets.Dataset,
    settings: FedAvgSettings,
    *,
    on_round: Callable[[Rows], None] | None = None,
) -> Rows:
    """FedAvg(M) for ``settings.rounds`` rounds; returns one metrics row per round (0: the initial model).

    ``clients`` and ``validation`` yield model inputs (:func:`with_pipeline`). The model goes to
    :func:`pick_device` and ends with the final global weights. Row fields: ``round``, ``clients``,
    ``examples`` (rows of the round's clients), ``steps``, ``train_loss`` (mean over the examples of all
    local steps), ``val_loss``, ``val_accuracy``, ``seconds``, ``client_ids``. ``on_round(rows)`` is called
    after every round (0 included).
    """
    s = settings
    if s.clients_per_round > clients.num_clients:
        raise ValueError(f"clients_per_round={s.clients_per_round}, but the split has {clients.num_clients} clients")
    seed_everything(s.seed)
    model.to(pick_device())
    state: State = {k: v.detach().clone() for k, v in model.state_dict().items()}
    velocity: State | None = None
    rows: Rows = []
    for number in range(s.rounds + 1):
        start, cohort, results = time.perf_counter(), [], []
        if number:
            cohort = clients.sample(s.clients_per_round, s.seed + number)
            average = WeightedAverage()
            for cid in cohort:
                model.load_state_dict(state)
                results.append(train_local(model, clients.client(cid), s.local, seed=client_seed(s.seed, number, cid)))
                average.add(model.state_dict(), results[-1].examples)
            state, velocity = server_update(
                state, average.result(), velocity, server_lr=s.server_lr, momentum=s.server_momentum
            )
            model.load_state_dict(state)
        metrics = evaluate(model, validation, batch_size=s.eval_batch_size, workers=s.local.workers)
        losses = [loss for r in results for loss in r.losses]
        sizes = [size for r in results for size in r.batch_sizes]
        rows.append(
            {
                "round": number,
                "clients": len(cohort),
                "examples": sum(r.examples for r in results),
                "steps": len(losses),
                "train_loss": float(np.average(losses, weights=sizes)) if losses else None,
                "val_loss": metrics["loss"],
                "val_accuracy": metrics["accuracy"],
                "seconds": time.perf_counter() - start,
                "client_ids": cohort,
            }
        )
        if on_round is not None:
            on_round(rows)
    return rows
