"""Plots of a partition: the client-size distribution and the label mix of the largest clients.

Figures are drawn on :class:`matplotlib.figure.Figure` objects (no ``pyplot``, no global state, no display
needed) and written as PNG through :mod:`inat_hf.storage`, so ``path`` may be a local path or any fsspec URL.
Both plots use the manifest's ``train`` rows, as :mod:`inat_hf.analysis.stats` does.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure
from numpy.typing import NDArray

from inat_hf import storage
from inat_hf.analysis.stats import train_rows
from inat_hf.manifest import Manifest

DPI = 100
LABEL_CHARS = 22
"""Tick labels longer than this are truncated with an ellipsis."""


def _save(figure: Figure, path: str | os.PathLike, storage_options: Mapping[str, Any] | None) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    figure.clear()
    storage.write_bytes(storage.resolve(os.fspath(path), storage_options), "", buffer.getvalue())


def _truncate(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _log_bins(largest: int) -> NDArray[np.float64]:
    """Bin edges for integer sizes, about two bins per doubling; each bin holds at least one integer."""
    count = max(int(np.ceil(2 * np.log2(largest + 1))), 1)
    return np.unique(np.geomspace(1, largest + 1, num=count + 1).round())


def _train_sizes(manifest: Manifest) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(client ids, labels) of the train rows and the train size of every client."""
    clients, labels = train_rows(manifest)
    return clients, labels, np.bincount(clients, minlength=manifest.num_clients).astype(np.int64)


def plot_client_sizes(
    manifest: Manifest,
    path: str | os.PathLike,
    *,
    config_name: str = "",
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write a PNG of the distribution of train examples per client, on log-log axes.

    Left: client sizes sorted in decreasing order against their rank (a rank-size plot, i.e. the
    complementary CDF with the axes swapped). Right: histogram of the sizes in logarithmic bins. The median
    is marked on both. Clients without train examples (held-out clients) are left out.

    Parameters
    ----------
    manifest : Manifest
    path : str or path-like
        Where the PNG goes (local path or fsspec URL).
    config_name : str, optional
        Named in the title.
    storage_options : mapping, optional
        For a remote ``path``.
    """
    _, _, sizes = _train_sizes(manifest)
    sizes = np.sort(sizes[sizes > 0])[::-1]
    name = f"{config_name}: " if config_name else ""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    rank_ax, hist_ax = figure.subplots(1, 2)
    if sizes.size == 0:
        figure.suptitle(f"{name}no client has train examples")
        _save(figure, path, storage_options)
        return
    median = float(np.median(sizes))
    ranks = np.arange(1, sizes.size + 1)
    rank_ax.plot(ranks, sizes, color="C0", lw=1.5, marker="." if sizes.size <= 500 else None, ms=4)
    rank_ax.set_xscale("log")
    rank_ax.set_yscale("log")
    rank_ax.set_xlabel("client rank (largest first)")
    rank_ax.set_ylabel("train examples per client")
    rank_ax.set_title("size against rank")
    edges = _log_bins(int(sizes.max()))
    hist_ax.hist(sizes, bins=edges, color="C0", edgecolor="white")
    hist_ax.set_xscale("log")
    hist_ax.set_yscale("log")
    hist_ax.set_xlabel("train examples per client (log bins)")
    hist_ax.set_ylabel("clients")
    hist_ax.set_title("histogram")
    label = f"median {median:g} examples"
    rank_ax.axhline(median, color="C3", ls="--", lw=1.2, label=label)
    hist_ax.axvline(median, color="C3", ls="--", lw=1.2, label=label)
    hist_ax.set_ylim(bottom=0.7)
    for ax in (rank_ax, hist_ax):
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else ""))
            axis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper right", frameon=False)
    figure.suptitle(
        f"{name}train examples per client ({sizes.size:,} clients, {int(sizes.sum()):,} examples, "
        f"largest {int(sizes[0]):,}, mean {sizes.mean():.1f})"
    )
    _save(figure, path, storage_options)


def label_matrix(
    manifest: Manifest, top_clients: int = 30, top_labels: int = 40
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """The fraction of each of the largest clients' train examples that carries each of the commonest labels.

    Returns
    -------
    fractions : float array, shape (clients, labels)
    clients : int array
        The largest clients (ties: smaller id first), at most ``top_clients``.
    labels : int array
        The most frequent train labels (ties: smaller id first), at most ``top_labels``.
    sizes : int array
        The train size of each of ``clients``.
    """
    if top_clients < 1 or top_labels < 1:
        raise ValueError(f"top_clients and top_labels must be >= 1; got {top_clients} and {top_labels}")
    rows_client, rows_label, sizes = _train_sizes(manifest)
    totals = np.bincount(rows_label, minlength=max(len(manifest.label_names), 1))
    clients = np.argsort(-sizes, kind="stable")[:top_clients]
    clients = clients[sizes[clients] > 0]
    labels = np.argsort(-totals, kind="stable")[:top_labels]
    labels = labels[totals[labels] > 0]
    client_pos = np.full(sizes.size, -1, dtype=np.int64)
    client_pos[clients] = np.arange(clients.size)
    label_pos = np.full(totals.size, -1, dtype=np.int64)
    label_pos[labels] = np.arange(labels.size)
    row_client, row_label = client_pos[rows_client], label_pos[rows_label]
    keep = (row_client >= 0) & (row_label >= 0)
    cells = np.bincount(row_client[keep] * labels.size + row_label[keep], minlength=clients.size * labels.size)
    fractions = cells.reshape(clients.size, labels.size) / np.maximum(sizes[clients], 1)[:, None]
    return fractions, clients, labels, sizes[clients]


def plot_label_heatmap(
    manifest: Manifest,
    path: str | os.PathLike,
    top_clients: int = 30,
    top_labels: int = 40,
    *,
    config_name: str = "",
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write a PNG heatmap of the label mix of the largest clients (see :func:`label_matrix`).

    Rows are the ``top_clients`` largest clients (largest on top), columns the ``top_labels`` most frequent
    train labels (most frequent on the left), cells the fraction of the client's train examples with that
    label (white: none). Parameters as :func:`plot_client_sizes`.
    """
    fractions, clients, labels, sizes = label_matrix(manifest, top_clients, top_labels)
    name = f"{config_name}: " if config_name else ""
    figure = Figure(figsize=(3.5 + 0.3 * max(labels.size, 8), 2.8 + 0.3 * max(clients.size, 6)))
    ax = figure.subplots()
    if fractions.size == 0:
        figure.suptitle(f"{name}no client has train examples")
        _save(figure, path, storage_options)
        return
    colours = matplotlib.colormaps["YlGnBu"].with_extremes(bad="white")  # a label absent from a client: white
    shown = np.ma.masked_equal(fractions, 0.0)
    image = ax.imshow(shown, aspect="auto", cmap=colours, vmin=0, vmax=max(fractions.max(), 1e-9))
    ax.set_xticks(np.arange(labels.size))
    ax.set_xticklabels([_truncate(manifest.label_names[i]) for i in labels.tolist()], rotation=60, ha="right")
    ax.set_yticks(np.arange(clients.size))
    ax.set_yticklabels([f"client {c} (n={n:,})" for c, n in zip(clients.tolist(), sizes.tolist(), strict=True)])
    ax.tick_params(labelsize=8)
    ax.set_xticks(np.arange(labels.size + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(clients.size + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="#dddddd", lw=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel(f"the {labels.size} most frequent labels in train")
    ax.set_ylabel(f"the {clients.size} largest clients")
    coverage = fractions.sum(axis=1)
    colorbar = figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label("fraction of the client's train examples")
    ax.set_title(
        f"{name}label mix of the largest clients\n"
        f"(the labels shown cover {np.median(coverage):.0%} of a client's examples, median over these clients)"
    )
    _save(figure, path, storage_options)
