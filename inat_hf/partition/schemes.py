"""The partition schemes: pure functions from numpy arrays to one client id per row.

Every function takes arrays (never a ``Dataset``), does no I/O, and draws randomness only from the
``numpy.random.Generator`` it is given. It returns ``NDArray[int64]`` of shape ``(N,)``: the client id of
each row, numbered ``0..C-1``, or ``-1`` for a row the scheme drops. Parameter names follow Flower
(flwr-datasets) where Flower has one, so results compare directly.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

DROPPED = -1
"""Client id of a dropped row."""
_DENSE_FACTOR = 4
"""Non-negative integer keys below this many times their count are numbered by counting, not sorting."""


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def natural_ids(keys: NDArray) -> NDArray[np.int64]:
    """Number the distinct values of ``keys`` in their sorted order: ``k``-th smallest value -> ``k``.

    Parameters
    ----------
    keys : numpy.ndarray, shape (N,)
        Any sortable values (user names as strings or dictionary codes already in sorted order).

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
    """
    keys = np.asarray(keys)
    if keys.dtype.kind in "iu" and keys.size and keys.min() >= 0 and keys.max() < _DENSE_FACTOR * keys.size + 1024:
        present = np.bincount(keys.astype(np.intp, copy=False)) > 0  # dense codes: a counting pass, no sort
        rank = np.cumsum(present, dtype=np.int64) - 1
        return rank[keys]
    _, inverse = np.unique(keys, return_inverse=True)
    return inverse.astype(np.int64).reshape(-1)


def user(
    user_codes: NDArray[np.int64], *, group_size: int = 1, rng: np.random.Generator | None = None
) -> NDArray[np.int64]:
    """The natural partition: one client per distinct user, or ``group_size`` users merged per client.

    Parameters
    ----------
    user_codes : numpy.ndarray of int64, shape (N,)
        Each row's user as an integer whose order is the users' sorted order (``-1`` = no user: dropped).
    group_size : int
        Users per client, as Flower's ``GroupedNaturalIdPartitioner`` (``group_size``): consecutive users in
        sorted order are merged; the last client may hold fewer. 1 gives exactly one client per user.
    rng : numpy.random.Generator, optional
        Unused (the natural partition is deterministic); accepted for a uniform interface.

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
    """
    _check_positive("group_size", group_size)
    codes = np.asarray(user_codes, dtype=np.int64)
    out = np.full(codes.shape, DROPPED, dtype=np.int64)
    present = codes >= 0
    out[present] = natural_ids(codes[present]) // group_size
    return out


def iid(num_rows: int, *, num_partitions: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Uniformly random, equal-sized clients (sizes differ by at most one), over shuffled rows.

    Parameters
    ----------
    num_rows : int
    num_partitions : int
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray of int64, shape (num_rows,)
    """
    _check_positive("num_partitions", num_partitions)
    if num_partitions > num_rows:
        raise ValueError(f"num_partitions={num_partitions} is more than the {num_rows} rows")
    out = np.empty(num_rows, dtype=np.int64)
    out[rng.permutation(num_rows)] = np.arange(num_rows, dtype=np.int64) * num_partitions // num_rows
    return out


def dirichlet(
    labels: NDArray[np.int64],
    *,
    num_partitions: int,
    alpha: float,
    min_partition_size: int = 10,
    max_retries: int = 10,
    rng: np.random.Generator,
) -> NDArray[np.int64]:
    """Label skew: each class's rows are split over the clients by proportions drawn from Dir(``alpha``).

    Draws are repeated (at most ``max_retries`` times) until every client holds at least
    ``min_partition_size`` rows, as Flower's ``DirichletPartitioner`` does. Vectorised: the rows of each
    class are shuffled and cut at the class's cumulative proportions with one ``searchsorted`` over all
    classes (class ``k``'s cut points are offset by ``k``).

    Parameters
    ----------
    labels : numpy.ndarray of int64, shape (N,)
        Label of each row at the partition rank (``-1`` = unlabelled: dropped).
    num_partitions : int
    alpha : float
        Concentration; small values give clients few classes, large values IID-like clients.
    min_partition_size : int
    max_retries : int
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray of int64, shape (N,)

    Raises
    ------
    ValueError
        A parameter out of range, or no draw met ``min_partition_size`` within ``max_retries``.
    """
    _check_positive("num_partitions", num_partitions)
    _check_positive("max_retries", max_retries)
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    if min_partition_size < 0:
        raise ValueError(f"min_partition_size must be >= 0, got {min_partition_size!r}")
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.flatnonzero(labels >= 0)
    if min_partition_size * num_partitions > rows.size:
        raise ValueError(
            f"min_partition_size={min_partition_size} x num_partitions={num_partitions} is more than the "
            f"{rows.size} labelled rows"
        )
    _, dense = np.unique(labels[rows], return_inverse=True)
    num_classes = int(dense.max()) + 1 if rows.size else 0
    out = np.full(labels.shape, DROPPED, dtype=np.int64)
    for _attempt in range(max_retries):
        assignment = _dirichlet_draw(dense, num_classes, num_partitions, alpha, rng)
        sizes = np.bincount(assignment, minlength=num_partitions)
        if sizes.min() >= min_partition_size:
            out[rows] = assignment
            return out
    raise ValueError(
        f"no Dirichlet draw gave every client min_partition_size={min_partition_size} rows in "
        f"max_retries={max_retries} tries (alpha={alpha}, num_partitions={num_partitions}); lower "
        "min_partition_size or num_partitions, or raise alpha"
    )


def _dirichlet_draw(
    classes: NDArray[np.int64], num_classes: int, num_partitions: int, alpha: float, rng: np.random.Generator
) -> NDArray[np.int64]:
    proportions = rng.dirichlet(np.full(num_partitions, alpha), size=num_classes)
    cuts = np.cumsum(proportions, axis=1)
    cuts[:, -1] = 1.0
    cuts += np.arange(num_classes)[:, None]
    # Shuffle, then order by class: each row gets a random rank inside its class.
    order = rng.permutation(classes.size)
    order = order[np.argsort(classes[order], kind="stable")]
    counts = np.bincount(classes, minlength=num_classes)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    sorted_classes = classes[order]
    rank = np.arange(classes.size) - starts[sorted_classes]
    position = sorted_classes + (rank + 0.5) / counts[sorted_classes]
    flat = np.searchsorted(cuts.ravel(), position, side="right")
    assignment = np.empty(classes.size, dtype=np.int64)
    assignment[order] = np.minimum(flat - sorted_classes * num_partitions, num_partitions - 1)
    return assignment


def geo(
    latitude: NDArray[np.float64],
    longitude: NDArray[np.float64],
    *,
    max_cell_size: int,
    max_depth: int = 24,
    rng: np.random.Generator | None = None,
) -> NDArray[np.int64]:
    """Adaptive spatial cells: split the globe into quadrants until each cell holds ``max_cell_size`` rows.

    As the paper's Geo-N splits (Hsu, Qi and Brown 2020). The root cell is
    longitude [-180, 180] x latitude [-90, 90]; a cell with more than ``max_cell_size`` rows is cut into
    four equal quadrants, up to ``max_depth`` times (rows at one spot beyond that stay together, so a cell
    can exceed the cap only when more than ``max_cell_size`` photos share a location to ~1e-5 degrees).
    Cells are numbered in the order of their quadtree (Morton) keys. Rows without a location are dropped.

    Parameters
    ----------
    latitude, longitude : numpy.ndarray of float64, shape (N,)
        Degrees; NaN = no location.
    max_cell_size : int
    max_depth : int
    rng : numpy.random.Generator, optional
        Unused (deterministic); accepted for a uniform interface.

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
    """
    _check_positive("max_cell_size", max_cell_size)
    _check_positive("max_depth", max_depth)
    lat = np.asarray(latitude, dtype=np.float64)
    lon = np.asarray(longitude, dtype=np.float64)
    located = np.flatnonzero(np.isfinite(lat) & np.isfinite(lon))
    scale = 1 << max_depth
    x = np.clip(((lon[located] + 180.0) / 360.0 * scale).astype(np.int64), 0, scale - 1)
    y = np.clip(((lat[located] + 90.0) / 180.0 * scale).astype(np.int64), 0, scale - 1)
    depth = np.zeros(located.size, dtype=np.int64)
    for level in range(max_depth + 1):
        active = depth == level
        if not active.any():
            break
        key = _cell_key(x[active], y[active], level, max_depth)
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        crowded = counts[inverse.reshape(-1)] > max_cell_size
        if level < max_depth:
            idx = np.flatnonzero(active)[crowded]
            depth[idx] = level + 1
    final_key = _cell_key(x, y, depth, max_depth) * (max_depth + 1) + depth
    out = np.full(lat.shape, DROPPED, dtype=np.int64)
    out[located] = natural_ids(final_key)
    return out


def _cell_key(x: NDArray[np.int64], y: NDArray[np.int64], level, max_depth: int) -> NDArray[np.int64]:
    """Morton (Z-order) key of the cell at ``level`` holding each point, left-aligned to ``max_depth``."""
    shift = max_depth - np.asarray(level)
    cx = (x >> shift) << shift
    cy = (y >> shift) << shift
    return _interleave(cx) | (_interleave(cy) << 1)


def _interleave(v: NDArray[np.int64]) -> NDArray[np.int64]:
    """Spread the low 24 bits of ``v`` to the even bit positions."""
    v = v.astype(np.uint64) & np.uint64(0xFFFFFF)
    for shift, mask in (
        (16, 0x0000FFFF0000FFFF),
        (8, 0x00FF00FF00FF00FF),
        (4, 0x0F0F0F0F0F0F0F0F),
        (2, 0x3333333333333333),
        (1, 0x5555555555555555),
    ):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v.astype(np.int64)
