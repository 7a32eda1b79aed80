"""The files a training run leaves: ``metrics.json``, ``metrics.csv`` and ``accuracy.png``.

One writer for ``scripts/finetune_vit.py`` (central and FedAvg) and the Flower App's ServerApp (``flwr run
flower_app``, ``scripts/flower_sim.py``):
``metrics.json`` holds the run's settings (``meta``) and one row per round or epoch, ``metrics.csv`` the
same rows (lists joined by spaces), ``accuracy.png`` the validation accuracy and the losses against the
round or epoch.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def save_metrics(rows: Sequence[Mapping[str, Any]], out: Path, *, x: str, meta: Mapping[str, Any]) -> None:
    """Write ``metrics.json`` (``meta`` and ``rows``), ``metrics.csv`` and ``accuracy.png`` under ``out``.

    ``meta`` needs ``config``, ``mode`` and ``model`` (the plot's title); ``x`` is the rows' x field.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({**meta, "rows": list(rows)}, indent=2) + "\n")
    with (out / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()})
    title = f"ViT on {meta['config']} ({meta['mode']}, {meta['model']})"
    (out / "accuracy.png").write_bytes(plot_metrics(rows, x=x, title=title))


def plot_metrics(rows: Sequence[Mapping[str, Any]], *, x: str, title: str) -> bytes:
    """PNG bytes: validation accuracy (left), train and validation loss (right) against ``x``."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    acc_ax, loss_ax = figure.subplots(1, 2)
    xs = [row[x] for row in rows]
    acc_ax.plot(xs, [100 * row["val_accuracy"] for row in rows], marker="o", color="tab:green")
    acc_ax.set(xlabel=x, ylabel="top-1 accuracy (%)", title="Accuracy on the central validation split")
    trained = [row for row in rows if row["train_loss"] is not None]
    loss_ax.plot(xs, [row["val_loss"] for row in rows], marker="o", label="validation")
    loss_ax.plot([row[x] for row in trained], [row["train_loss"] for row in trained], marker="s", label="train")
    loss_ax.set(xlabel=x, ylabel="cross-entropy", title="Loss")
    loss_ax.legend()
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def round_reporter(out: Path, meta: Mapping[str, Any], rounds: int) -> Callable[[list[dict[str, Any]]], None]:
    """The ``on_round`` callback of a federated run: print the round's line and rewrite the metrics files."""

    def report(rows: list[dict[str, Any]]) -> None:
        r = rows[-1]
        loss = "-" if r["train_loss"] is None else f"{r['train_loss']:.4f}"
        print(
            f"round {r['round']}/{rounds}: {r['clients']} clients, {r['examples']} examples, "
            f"train loss {loss}, val loss {r['val_loss']:.4f}, val accuracy {r['val_accuracy']:.4f}, "
            f"{r['seconds']:.1f} s",
            flush=True,
        )
        save_metrics(rows, out, x="round", meta=meta)

    return report
