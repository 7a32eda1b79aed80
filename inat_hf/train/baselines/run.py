"""Run a baselines grid: every cell once, resumable, a progress line per cell.

:func:`run_grid` writes, under ``out``: ``cells/{slug}.json`` (one per finished cell, reused by a rerun when
its key, the fingerprint of the cell, the budget and the data, is the same), ``results.json`` (the grid, the
data it was measured on and every cell), ``results.md`` (the table) and ``curves/{config}.png`` (validation
accuracy per round, one figure per data config), rewritten after each cell.

A federated cell is the Flower App (:mod:`inat_hf.train.flower`: its ServerApp and ClientApp, Flower's
strategy) in a Flower simulation with one node per client of the train split; the central cell trains the
pooled train split with the same local loop (:func:`inat_hf.train.training.train_local`). Both evaluate on
the same seeded subset of the central ``validation`` split after every round (epoch), and the final model on
each client's holdout (the config's ``test`` split, ``test_fraction`` of each client's rows): top-1 per client,
then the mean, p10 and p90 over clients.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from inat_hf.storage.redaction import redact, secrets_of_url
from inat_hf.train.baselines.grid import ALGORITHM_NAMES, Budget, Cell, Grid, run_config
from inat_hf.train.data import TrainingData
from inat_hf.train.fedavg import client_seed
from inat_hf.train.flower.nodedata import client_ids
from inat_hf.train.flower.runconfig import model_spec
from inat_hf.train.training import (
    LocalSettings,
    Rows,
    evaluate,
    label_names,
    limit,
    make_loader,
    make_transform,
    pick_device,
    seed_everything,
    train_local,
    with_pipeline,
)

POOLED = 2**31 - 1
"""The client id of the pooled train split in :func:`~inat_hf.train.fedavg.client_seed` (no client has it)."""


@dataclass(frozen=True)
class Where:
    """Where the grid's data is: the data folder (any fsspec URL), the images if apart, their non-secret
    storage options (credentials come from the environment), the cache.
    """

    data_dir: str
    images: str | None = None
    storage_options: tuple[tuple[str, Any], ...] = ()
    cache_dir: str | None = None


def training_data(cell: Cell, budget: Budget, where: Where) -> TrainingData:
    """The cell's data: its config with its overrides and the budget's per-client holdout."""
    overrides = {**dict(cell.data.overrides), "test_fraction": budget.test_fraction}
    return TrainingData.of(
        config=cell.data.config,
        data_dir=where.data_dir,
        images=where.images,
        storage_options=dict(where.storage_options) or None,
        overrides=overrides,
        cache_dir=where.cache_dir,
    )


@torch.no_grad()
def per_client_accuracy(model: torch.nn.Module, test: Any, transform: Any, batch_size: int) -> dict[str, Any]:
    """Top-1 of ``model`` on each client's holdout rows (``test``), summarised over clients.

    Returns ``clients`` (with at least one holdout row), ``examples``, ``mean``, ``p10``, ``p90`` (of the
    per-client accuracies, each client counting once) and ``pooled`` (over all holdout rows).
    """
    if len(test) == 0:
        raise ValueError("the test split has no rows: raise test_fraction so that clients keep a holdout")
    clients = np.asarray(test.with_format("numpy", columns=["client_id"])["client_id"], dtype=np.int64)
    device = next(model.parameters()).device
    model.eval()
    hits = []
    for batch in make_loader(with_pipeline(test, transform), batch_size):
        logits = model(pixel_values=batch["pixel_values"].to(device)).logits
        hits.append((logits.argmax(-1).cpu() == batch["labels"]).numpy())
    correct = np.concatenate(hits).astype(np.float64)
    _, inverse = np.unique(clients, return_inverse=True)
    accuracy = np.bincount(inverse, weights=correct) / np.bincount(inverse)
    return {
        "clients": int(accuracy.size),
        "examples": int(correct.size),
        "mean": float(accuracy.mean()),
        "p10": float(np.percentile(accuracy, 10)),
        "p90": float(np.percentile(accuracy, 90)),
        "pooled": float(correct.mean()),
    }


def run_central(cell: Cell, budget: Budget, data: TrainingData) -> tuple[Rows, torch.nn.Module, Any]:
    """Train the pooled train split ``central_epochs`` epochs; one row per epoch (0: the initial model)."""
    spec = model_spec(budget.model)
    transform = make_transform(spec.processor())
    pooled = data.split("train")
    train = with_pipeline(pooled, transform)
    validation = limit(with_pipeline(data.split("validation"), transform), budget.val_limit or None, budget.seed)
    seed_everything(budget.seed)
    model = spec.build(label_names(pooled)).to(pick_device())
    local = LocalSettings(epochs=1, batch_size=budget.batch_size, lr=budget.lr, optimizer=budget.optimizer)
    rows: Rows = []
    for epoch in range(budget.central_epochs + 1):
        start = time.perf_counter()
        result = train_local(model, train, local, seed=client_seed(budget.seed, epoch, POOLED)) if epoch else None
        metrics = evaluate(model, validation, batch_size=budget.eval_batch_size)
        rows.append(
            {
                "round": epoch,
                "examples": result.examples if result else 0,
                "train_loss": float(np.average(result.losses, weights=result.batch_sizes)) if result else None,
                "val_loss": metrics["loss"],
                "val_accuracy": metrics["accuracy"],
                "seconds": time.perf_counter() - start,
            }
        )
    return rows, model, transform


def run_federated(
    cell: Cell, budget: Budget, data: TrainingData, where: Where, resources: dict[str, float]
) -> tuple[Rows, torch.nn.Module, Any]:
    """The Flower App in a simulation, one node per client of the train split; one row per round."""
    from inat_hf.train.flower.server import simulate  # on use: it needs Flower

    nodes = int(client_ids(data).size)
    if budget.clients_per_round > nodes:
        raise ValueError(
            f"{cell.data.label}: clients_per_round={budget.clients_per_round}, but the train split has {nodes} "
            "clients: lower --clients-per-round"
        )
    config = run_config(cell, budget, nodes, where.data_dir, where.images, dict(where.storage_options), where.cache_dir)
    recorder = simulate(config, client_resources=resources)
    rows = [{k: v for k, v in row.items() if k != "client_ids"} for row in recorder.rows]
    return rows, recorder.model, make_transform(model_spec(budget.model).processor())


def run_cell(cell: Cell, budget: Budget, where: Where, resources: dict[str, float]) -> dict[str, Any]:
    """One cell: its rounds, its final top-1 on the validation subset and its per-client holdout accuracy."""
    began = time.perf_counter()
    data = training_data(cell, budget, where)
    data.prepare()
    if cell.algorithm == "central":
        rows, model, transform = run_central(cell, budget, data)
    else:
        rows, model, transform = run_federated(cell, budget, data, where, resources)
    clients = per_client_accuracy(model, data.split("test"), transform, budget.eval_batch_size)
    return {
        "data": cell.data.label,
        "config": cell.data.config,
        "overrides": dict(cell.data.overrides),
        "algorithm": cell.algorithm,
        "name": ALGORITHM_NAMES[cell.algorithm],
        "train_clients": int(client_ids(data).size),
        "val_accuracy": rows[-1]["val_accuracy"],
        "val_loss": rows[-1]["val_loss"],
        "holdout": clients,
        "rows": rows,
        "seconds": time.perf_counter() - began,
    }


def _stored(path: Path, key: str) -> dict[str, Any] | None:
    """The cell stored at ``path`` if its key is ``key``."""
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return stored if stored.get("key") == key else None


def run_grid(
    grid: Grid,
    data_dir: str,
    out: str | Path,
    *,
    measured_on: str,
    images: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    client_resources: Mapping[str, float] | None = None,
    progress: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Run every cell of ``grid`` not already stored under ``out``; write the results; return them.

    ``measured_on`` says what the data is (e.g. ``"the synthetic medium replica"`` or ``"iNat 2021"``);
    ``images`` and ``storage_options`` (non-secret) as for the Flower App's run config; ``client_resources``
    are Ray's per simulated client (default 1 CPU, and 1 GPU on CUDA).
    """
    from inat_hf.analysis.baselines import write_results

    out = Path(out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    resources = {"num_cpus": 1.0, "num_gpus": 1.0 if torch.cuda.is_available() else 0.0, **(client_resources or {})}
    where = Where(data_dir, images, tuple(sorted((storage_options or {}).items())), cache_dir)
    shown = redact(data_dir, secrets_of_url(data_dir))  # results.json may be published: no signature in it
    meta = {**grid.to_json(), "measured_on": redact(measured_on, secrets_of_url(data_dir)), "data_dir": shown,
            "device": str(pick_device())}  # fmt: skip
    cells: list[dict[str, Any]] = []
    todo = grid.cells()
    for number, cell in enumerate(todo, 1):
        path, key = out / "cells" / f"{cell.slug}.json", cell.key(grid.budget, data_dir, images)
        result = _stored(path, key)
        if result is None:
            result = {**run_cell(cell, grid.budget, where, resources), "key": key}
            path.write_text(json.dumps(result, indent=1))
            how = f"{result['seconds']:.0f} s"
        else:
            how = "stored before"
        cells.append(result)
        write_results(out, meta, cells)
        if progress is not None:
            h = result["holdout"]
            print(
                f"[baselines {number}/{len(todo)}] {cell.data.label} x {ALGORITHM_NAMES[cell.algorithm]}: "
                f"val top-1 {result['val_accuracy']:.3f}; holdout per client mean {h['mean']:.3f} "
                f"(p10 {h['p10']:.3f}, p90 {h['p90']:.3f}, {h['clients']} clients); {how}",
                file=progress,
                flush=True,
            )
    return {**meta, "cells": cells}
