"""The baselines grid: which data, which algorithms, under which budget (:func:`run_grid` runs it).

A cell is one data config (a builder config name with its overrides, e.g. ``family_dirichlet`` with
``alpha=0.1``) trained by one algorithm: ``central`` (the pooled train split, our loop) or one of Flower's
strategies (``fedavg``, ``fedavgm``, ``fedprox``, ``fedadam``, ``fedyogi``: the Flower App's ServerApp and
ClientApp in a Flower simulation). Every cell of a grid runs under one :class:`Budget`; its seeds are fixed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from inat_hf.train.strategies import STRATEGIES, STRATEGY_NAMES

ALGORITHMS = ("central", *STRATEGIES)
"""``central`` and Flower's strategies (:data:`inat_hf.train.strategies.STRATEGIES`)."""
ALGORITHM_NAMES = {"central": "central", **STRATEGY_NAMES}
DEFAULT_ALGORITHMS = ("central", "fedavg", "fedavgm", "fedprox", "fedadam")


@dataclass(frozen=True)
class DataCell:
    """A builder config and its overrides, e.g. ``DataCell("family_dirichlet", (("alpha", 0.1),))``."""

    config: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> DataCell:
        """``family_user`` or ``family_dirichlet:alpha=0.1,num_partitions=500`` (typed as ``--set`` is).

        Raises
        ------
        ValueError
            A field that is not a config field, or a value of the wrong type.
        """
        from inat_hf.cli.overrides import parse_overrides

        name, _, fields = text.partition(":")
        pairs = parse_overrides([pair for pair in fields.split(",") if pair]) if fields else {}
        if "test_fraction" in pairs:
            raise ValueError(f"{text}: test_fraction is the budget's (--test-fraction), the same for every cell")
        return cls(name.strip(), tuple(sorted(pairs.items())))

    @property
    def text(self) -> str:
        """``family_dirichlet:alpha=0.1``: the form :meth:`parse` reads (``inat-fl baselines --configs``)."""
        return self.config + (":" + ",".join(f"{k}={v}" for k, v in self.overrides) if self.overrides else "")

    @property
    def label(self) -> str:
        """``family_dirichlet(alpha=0.1)``: the name in tables and file names."""
        return self.config + (f"({', '.join(f'{k}={v}' for k, v in self.overrides)})" if self.overrides else "")


DEFAULT_DATA = (
    DataCell("family_user"),
    DataCell("family_geo1k"),
    DataCell("family_dirichlet", (("alpha", 1.0),)),
    DataCell("family_dirichlet", (("alpha", 0.1),)),
    DataCell("family_iid"),
)
"""The natural splits (by user, by place), Dirichlet label skew at two concentrations, and IID."""


@dataclass(frozen=True)
class Budget:
    """What every cell of a grid gets (stated with the results).

    Federated cells: ``rounds`` rounds of ``clients_per_round`` clients sampled by Flower, each training
    ``local_epochs`` epochs (at most ``max_local_steps`` steps) with a fresh ``optimizer`` at ``lr``, batches
    of ``batch_size``. The default gives every client the same work per round whatever its size (10 steps:
    10 epochs of a client of at most one batch, 10 batches of a larger one), so that configs with small
    clients (``user``, 1,000 Dirichlet or IID partitions) and large ones (``geo1k``) compare at equal compute.
    SGD with momentum (fresh each round), as in Hsu, Qi and Brown: with AdamW at 1e-3 (ten steps of a fresh
    Adam on a client of a few rows), FedAvg on the medium replica sat at the majority class (5.2%) after 15
    rounds on every config, IID included, and at 5.8% after 80 rounds on ``user``; SGD at 0.03 reached about
    20% on IID in 30 rounds (BENCHMARKS.md). FedAvgM: server lr ``fedavgm_server_lr``, momentum
    ``server_momentum``; FedProx: ``proximal_mu``; FedAdam and FedYogi: ``eta = adaptive_server_lr``,
    ``tau``. The central cell trains the pooled train split ``central_epochs`` epochs with the same optimizer,
    lr and batch size. Each client keeps ``test_fraction`` of its rows as its holdout (the config's ``test``
    split); every model is evaluated on ``val_limit`` rows of the central validation split (a seeded subset;
    0: all).
    """

    rounds: int = 80
    clients_per_round: int = 10
    local_epochs: int = 10
    max_local_steps: int = 10
    batch_size: int = 32
    lr: float = 0.03
    optimizer: str = "sgd"
    central_epochs: int = 1
    fedavgm_server_lr: float = 1.0
    server_momentum: float = 0.9
    proximal_mu: float = 0.01
    adaptive_server_lr: float = 0.01
    tau: float = 1e-3
    test_fraction: float = 0.2
    val_limit: int = 500
    eval_batch_size: int = 256
    model: str = "tiny"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rounds", "clients_per_round", "local_epochs", "batch_size", "central_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be at least 1")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction={self.test_fraction!r}: each client's holdout must be in (0, 1)")

    def describe(self) -> str:
        """The budget in one sentence (the card and the table state it)."""
        steps = f", at most {self.max_local_steps} steps" if self.max_local_steps else ""
        return (
            f"{self.rounds} rounds x {self.clients_per_round} clients, {self.local_epochs} local epoch(s){steps}, "
            f"batch {self.batch_size}, {self.optimizer} lr {self.lr:g} (fresh each round); FedAvgM server lr "
            f"{self.fedavgm_server_lr:g} momentum {self.server_momentum:g}; FedProx mu {self.proximal_mu:g}; "
            f"FedAdam/FedYogi eta {self.adaptive_server_lr:g} tau {self.tau:g}; central: {self.central_epochs} "
            f"epoch(s) of the pooled train split; {self.model} ViT; holdout {self.test_fraction:g} of each client's "
            f"rows; validation {self.val_limit or 'all'} rows; seed {self.seed}"
        )


@dataclass(frozen=True)
class Cell:
    """One data config trained by one algorithm."""

    data: DataCell
    algorithm: str

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {self.algorithm!r}: choose from {', '.join(ALGORITHMS)}")

    @property
    def slug(self) -> str:
        """A file name: ``family_dirichlet-alpha-0.1--fedavg``."""
        return re.sub(r"[^\w.-]+", "-", self.data.label).strip("-") + "--" + self.algorithm

    def key(self, budget: Budget, data_dir: str, images: str | None = None) -> str:
        """Fingerprint of what the cell's result depends on: a stored result with another key is stale."""
        what = {"data": asdict(self.data), "algorithm": self.algorithm, "budget": asdict(budget), "dir": data_dir,
                "images": images}  # fmt: skip
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Grid:
    """The cells of ``data`` x ``algorithms``, in that order."""

    data: Sequence[DataCell] = DEFAULT_DATA
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    budget: Budget = field(default_factory=Budget)

    def cells(self) -> list[Cell]:
        """Every cell, data-major."""
        return [Cell(data, algorithm) for data in self.data for algorithm in self.algorithms]

    def to_json(self) -> dict[str, Any]:
        """The grid as ``results.json`` states it."""
        return {
            "data": [data.label for data in self.data],
            "algorithms": list(self.algorithms),
            "budget": asdict(self.budget),
            "budget_text": self.budget.describe(),
        }


def run_config(
    cell: Cell,
    budget: Budget,
    num_nodes: int,
    data_dir: str,
    images: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """The Flower App's run config (the keys of ``flower_app/pyproject.toml``) of a federated cell."""
    fields: Mapping[str, Any] = {**dict(cell.data.overrides), "test_fraction": budget.test_fraction}
    adaptive = cell.algorithm in ("fedadam", "fedyogi")
    server_lr = budget.adaptive_server_lr if adaptive else budget.fedavgm_server_lr
    return {
        "config": cell.data.config,
        "set": " ".join(f"{k}={v}" for k, v in fields.items()),
        "data-dir": data_dir,
        "export": "",
        "images": images or "",
        "storage-options": " ".join(f"{k}={v}" for k, v in (storage_options or {}).items()),
        "cache-dir": cache_dir or "",
        "num-proc": 0,
        "model": budget.model,
        "new-head": False,
        "strategy": cell.algorithm,
        "server-lr": server_lr if cell.algorithm in ("fedavgm", "fedadam", "fedyogi") else 1.0,
        "server-momentum": budget.server_momentum if cell.algorithm == "fedavgm" else 0.0,
        "proximal-mu": budget.proximal_mu,
        "tau": budget.tau,
        "rounds": budget.rounds,
        "num-nodes": num_nodes,
        "clients-per-round": budget.clients_per_round,
        "node-wait-seconds": 60.0,
        "local-epochs": budget.local_epochs,
        "max-local-steps": budget.max_local_steps,
        "batch-size": budget.batch_size,
        "lr": budget.lr,
        "optimizer": budget.optimizer,
        "weight-decay": 0.0,
        "workers": 0,
        "eval-batch-size": budget.eval_batch_size,
        "val-limit": budget.val_limit,
        "seed": budget.seed,
        "out": "",
    }
