"""Client filters and per-client holdout, over an assignment array (one client id per row, ``-1`` dropped).

Each filter returns a new assignment; rows it removes get ``-1``. Client ids are renumbered compactly
(``0..C-1``) in the order of the old ids, so the natural order (sorted user names, Morton cells) stays.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from inat_hf.partition.schemes import DROPPED, natural_ids


def renumber(assignment: NDArray[np.int64]) -> NDArray[np.int64]:
    """Compact client ids to ``0..C-1`` keeping their order; ``-1`` stays."""
    out = np.full(assignment.shape, DROPPED, dtype=np.int64)
    kept = assignment >= 0
    out[kept] = natural_ids(assignment[kept])
    return out


def client_sizes(assignment: NDArray[np.int64]) -> NDArray[np.int64]:
    """Rows per client id (index = client id)."""
    kept = assignment[assignment >= 0]
    return np.bincount(kept) if kept.size else np.zeros(0, dtype=np.int64)


def client_ids(assignment: NDArray[np.int64]) -> NDArray[np.int64]:
    """The distinct client ids, sorted (``-1`` excluded); as ``np.unique`` by a counting pass."""
    return np.flatnonzero(client_sizes(assignment)).astype(np.int64)


def drop_small_clients(assignment: NDArray[np.int64], min_client_size: int) -> NDArray[np.int64]:
    """Drop the clients with fewer than ``min_client_size`` rows (FedScale's filter_less, LEAF's ``-k``)."""
    if min_client_size < 0:
        raise ValueError(f"min_client_size must be >= 0, got {min_client_size!r}")
    sizes = client_sizes(assignment)
    small = np.flatnonzero(sizes < min_client_size)
    return _drop(assignment, small)


def keep_largest_clients(assignment: NDArray[np.int64], max_clients: int) -> NDArray[np.int64]:
    """Keep the ``max_clients`` largest clients (ties: the smaller client id first); drop the rest."""
    if max_clients < 1:
        raise ValueError(f"max_clients must be a positive integer, got {max_clients!r}")
    sizes = client_sizes(assignment)
    if sizes.size <= max_clients:
        return assignment
    order = np.lexsort((np.arange(sizes.size), -sizes))
    return _drop(assignment, order[max_clients:])


def sample_clients(assignment: NDArray[np.int64], fraction: float, rng: np.random.Generator) -> NDArray[np.int64]:
    """Keep a uniformly random ``fraction`` of the clients (at least one)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"client_fraction must be in (0, 1], got {fraction!r}")
    clients = client_ids(assignment)
    if fraction == 1 or clients.size == 0:
        return assignment
    keep = max(1, round(clients.size * fraction))
    dropped = np.setdiff1d(clients, rng.choice(clients, size=keep, replace=False))
    return _drop(assignment, dropped)


def _drop(assignment: NDArray[np.int64], clients: NDArray[np.int64]) -> NDArray[np.int64]:
    if clients.size == 0:
        return assignment
    out = assignment.copy()
    out[np.isin(assignment, clients)] = DROPPED
    return out


def holdout_rows(assignment: NDArray[np.int64], test_fraction: float, rng: np.random.Generator) -> NDArray[np.bool_]:
    """Per-client holdout: ``round(n * test_fraction)`` random rows of each client become its test rows.

    Returns
    -------
    numpy.ndarray of bool, shape (N,): True for a test row.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    is_test = np.zeros(assignment.shape, dtype=bool)
    rows = np.flatnonzero(assignment >= 0)
    if test_fraction == 0 or rows.size == 0:
        return is_test
    shuffled = rows[rng.permutation(rows.size)]
    ordered = shuffled[np.argsort(assignment[shuffled], kind="stable")]
    clients = assignment[ordered]
    sizes = client_sizes(assignment)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.arange(ordered.size) - starts[clients]
    is_test[ordered] = rank < np.round(sizes[clients] * test_fraction)
    return is_test


def holdout_clients(assignment: NDArray[np.int64], fraction: float, rng: np.random.Generator) -> NDArray[np.int64]:
    """Choose a random ``fraction`` of the clients to hold out whole (all their rows become test rows).

    Returns
    -------
    numpy.ndarray of int64: the held-out client ids, sorted.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout_client_fraction must be in [0, 1), got {fraction!r}")
    clients = client_ids(assignment)
    count = round(clients.size * fraction)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(rng.choice(clients, size=count, replace=False))
