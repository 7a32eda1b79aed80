"""The baselines results (``inat-fl baselines``) as people read them: a table, one curve figure per data config,
and the dataset card's "Baselines" section. Plain JSON in, Markdown and PNG out (no torch: the card reads it).

``results.json`` holds: ``data`` (the data configs, in order), ``algorithms``, ``budget`` and ``budget_text``,
``measured_on``, ``device``, and ``cells``: per cell ``data``, ``algorithm``, ``name``, ``val_accuracy``
(top-1 on the central validation subset after the last round), ``holdout`` (``mean``, ``p10``, ``p90`` of
the per-client top-1 on each client's holdout, ``clients``, ``examples``), ``rows`` (one per round or epoch)
and ``seconds``.
"""

from __future__ import annotations

import io
import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

RESULTS = "results.json"


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` (or the folder that holds it).

    Raises
    ------
    ValueError
        If it is missing or not a baselines result, naming the file and how to make one.
    """
    path = Path(path)
    path = path / RESULTS if path.is_dir() else path
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(
            f"{path}: no baselines results there; make them with inat-fl baselines DATA --out DIR"
        ) from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err}); give the results.json that inat-fl baselines wrote") from None
    missing = [key for key in ("cells", "budget_text", "measured_on", "data") if key not in results]
    if missing:
        raise ValueError(
            f"{path}: not a baselines results.json (no {', '.join(missing)}); give the one inat-fl baselines wrote"
        )
    return dict(results)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def table_markdown(results: Mapping[str, Any]) -> str:
    """The table: one row per cell, top-1 (%) on the validation split and per client on the holdouts."""
    lines = [
        "| data config | algorithm | val top-1 (%) | client holdout top-1 (%): mean | p10 | p90 | clients | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in results["cells"]:
        h = cell["holdout"]
        lines.append(
            f"| `{cell['data']}` | {cell['name']} | {_pct(cell['val_accuracy'])} | {_pct(h['mean'])} | "
            f"{_pct(h['p10'])} | {_pct(h['p90'])} | {cell.get('train_clients', h['clients']):,} | "
            f"{cell['seconds']:.0f} |"
        )
    return "\n".join(lines)


def curve_name(data: str) -> str:
    """The file name of a data config's figure: ``baselines_family_dirichlet-alpha-0.1.png``."""
    return "baselines_" + re.sub(r"[^\w.-]+", "-", data).strip("-") + ".png"


def plot_curves(results: Mapping[str, Any], data: str) -> bytes:
    """PNG bytes: validation top-1 per round of every federated algorithm on ``data``; the central cell's
    final top-1 as a dashed line.
    """
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    ax = figure.subplots()
    for cell in (c for c in results["cells"] if c["data"] == data):
        rows = cell["rows"]
        if cell["algorithm"] == "central":
            ax.axhline(100 * cell["val_accuracy"], color="black", linestyle="--",
                       label=f"central ({len(rows) - 1} epoch{'s' if len(rows) > 2 else ''})")  # fmt: skip
        else:
            ax.plot([r["round"] for r in rows], [100 * r["val_accuracy"] for r in rows], marker=".", label=cell["name"])
    ax.set(xlabel="round", ylabel="top-1 on the validation split (%)")
    ax.set_title(f"{data}\n{textwrap.shorten(results['measured_on'], 90)}", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_results(out: Path, meta: Mapping[str, Any], cells: Sequence[Mapping[str, Any]]) -> None:
    """Write ``results.json``, ``results.md`` and ``curves/*.png`` under ``out`` (the cells so far)."""
    results = {**meta, "cells": list(cells)}
    (out / RESULTS).write_text(json.dumps(results, indent=1), encoding="utf-8")
    text = f"Measured on {results['measured_on']} ({results['device']}). Budget: {results['budget_text']}.\n\n"
    (out / "results.md").write_text(text + table_markdown(results) + "\n", encoding="utf-8")
    (out / "curves").mkdir(exist_ok=True)
    for data in dict.fromkeys(cell["data"] for cell in cells):
        (out / "curves" / curve_name(data)).write_bytes(plot_curves(results, data))


def card_section(results: Mapping[str, Any] | None, figure_dir: str = "assets") -> tuple[str, dict[str, bytes]]:
    """The card's "Baselines" section and its figures (relative path -> PNG bytes, to write beside the card).

    Without results the section says plainly that none were measured and how to measure them.
    """
    if results is None:
        text = (
            "## Baselines\n\nNo baselines were measured for this card. `inat-fl baselines DATA_DIR --out DIR` runs "
            "the grid (central training and Flower's FedAvg, FedAvgM, FedProx and FedAdam on each config); "
            "`inat-fl card ... --baselines DIR/results.json` puts its table and curves here.\n"
        )
        return text, {}
    configs = list(dict.fromkeys(cell["data"] for cell in results["cells"]))
    figures = {f"{figure_dir}/{curve_name(data)}": plot_curves(results, data) for data in configs}
    links = "\n".join(f"![{data}]({path})" for data, path in zip(configs, figures, strict=True))
    text = (
        f"## Baselines\n\nMeasured on **{results['measured_on']}** ({results['device']}), with "
        f"`inat-fl baselines`. Budget: {results['budget_text']}. Top-1 on the central validation split after the "
        "last round, and per client on each client's holdout (its share of its own rows; mean, 10th and 90th "
        "percentile over clients). Federated cells are Flower's strategies in a Flower simulation with one node "
        "per client.\n\n" + table_markdown(results) + "\n\n" + links + "\n"
    )
    return text, figures
