"""The manifest: the whole partition without image bytes, sorted so that each client is contiguous.

``build_manifest(images, config)`` is pure: images table (:func:`inat_hf.metadata.load_metadata`) plus a
config (:class:`inat_hf.config.INatFLConfig`) give

* ``table``: one row per example (:data:`inat_hf.schema.MANIFEST_COLUMNS`), sorted by split (``train``,
  ``test``, ``validation``), then ``client_id``, then ``image_id``; the official ``val`` rows form the central
  ``validation`` split with ``client_id = -1``;
* ``clients``: the client index, one row per client: ``client_id``, ``train_offset``, ``train_length``,
  ``test_offset``, ``test_length``, ``heldout`` (offsets are row numbers in ``table``);
* ``dropped``: every train row that is not an example, with its reason (``no_label``, ``no_user``,
  ``no_location``, ``client_too_small``, ``over_max_clients``, ``client_not_sampled``), so that
  train rows in = train + test examples + dropped.

Same inputs, byte-identical manifest: no global random state (one ``numpy.random.Generator`` seeded
with the config's ``seed``), input rows sorted by image id first, stable sorts; the same in any process,
whatever ``PYTHONHASHSEED``. Caching (and the fingerprint) is :mod:`inat_hf.manifest.cache`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from inat_hf.config import INatFLConfig
from inat_hf.manifest import checks
from inat_hf.metadata.pool import bulk_allocations
from inat_hf.partition import DROPPED, filters, get_partitioner
from inat_hf.schema import MANIFEST_COLUMNS, SPLITS
from inat_hf.taxonomy import RANKS

DROP_REASONS = ("no_label", "no_user", "no_location", "client_too_small", "over_max_clients", "client_not_sampled")
"""Why a train row is not an example (the ``reason`` of the manifest's ``dropped`` table)."""
_ENCODED = frozenset({*RANKS, "user"})
_SCHEME_DROP_REASON = {"user": "no_user", "dirichlet": "no_label", "iid": "no_label"}


@dataclass(frozen=True)
class Manifest:
    """A partition of the images into clients and splits; see the module docstring."""

    table: pa.Table
    clients: pa.Table
    dropped: pa.Table
    label_names: tuple[str, ...]
    fingerprint: str

    @property
    def num_clients(self) -> int:
        """Number of clients (held-out ones included)."""
        return self.clients.num_rows

    def split_range(self, split: str) -> tuple[int, int]:
        """(offset, length) of ``split`` in :attr:`table`."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        counts = self._split_counts
        offset = sum(counts[s] for s in SPLITS[: SPLITS.index(split)])
        return offset, counts[split]

    @functools.cached_property
    def _split_counts(self) -> dict[str, int]:
        counts = {s: 0 for s in SPLITS}
        for item in pc.value_counts(self.table["split"]).to_pylist():
            counts[item["values"]] = item["counts"]
        return counts

    def client_range(self, client_id: int, split: str = "train") -> tuple[int, int]:
        """(offset, length) of one client's rows of ``split`` (``train`` or ``test``) in :attr:`table`."""
        if split not in ("train", "test"):
            raise ValueError(f"clients have train and test rows, not {split!r}")
        if not 0 <= client_id < self.num_clients:
            raise ValueError(f"client_id {client_id} is out of range: there are {self.num_clients} clients")
        row = self.clients.slice(client_id, 1).to_pylist()[0]
        return row[f"{split}_offset"], row[f"{split}_length"]

    def client_rows(self, client_id: int, split: str = "train") -> pa.Table:
        """One client's rows: a zero-copy slice of :attr:`table`."""
        offset, length = self.client_range(client_id, split)
        return self.table.slice(offset, length)


def user_codes(images: pa.Table) -> NDArray[np.int64]:
    """Each row's user as the rank of its name in sorted order (``-1`` for no user)."""
    column = images["user"].combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    rank = np.empty(len(column.dictionary), dtype=np.int64)
    rank[pc.array_sort_indices(column.dictionary).to_numpy()] = np.arange(len(column.dictionary))
    indices = column.indices.to_numpy(zero_copy_only=False)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return np.where(valid, rank[np.where(valid, indices, 0)], -1)


def _labels(images: pa.Table, rank: str) -> tuple[NDArray[np.int64], tuple[str, ...]]:
    column = images[rank].combine_chunks()
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    labels = np.where(valid, column.indices.to_numpy(zero_copy_only=False), -1).astype(np.int64)
    return labels, tuple(column.dictionary.to_pylist())


def _float(column: pa.ChunkedArray) -> NDArray[np.float64]:
    return column.to_numpy().astype(np.float64)  # nulls become NaN


def assign_clients(
    images: pa.Table,
    config: INatFLConfig,
    labels: NDArray[np.int64],
    clients_before: dict[str, NDArray[np.int64]] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.int64], NDArray[np.int8]]:
    """Client id, test flag, held-out client ids and drop reason (an index into :data:`DROP_REASONS`, ``-1`` for
    a kept row) of each row of a train images table. ``clients_before``, when given, receives the client sizes
    each filter was given, under the filter's drop reason (to say why a config keeps nothing).
    """
    rng = np.random.default_rng(config.seed)
    partitioner = get_partitioner(config.scheme)
    arrays: dict[str, Any] = {"labels": labels, "num_rows": images.num_rows}
    if "user_codes" in partitioner.inputs:
        arrays["user_codes"] = user_codes(images)
    if "latitude" in partitioner.inputs:
        arrays["latitude"], arrays["longitude"] = _float(images["latitude"]), _float(images["longitude"])
    reason = np.full(images.num_rows, -1, dtype=np.int8)  # index into DROP_REASONS; -1: kept so far
    reason[labels < 0] = DROP_REASONS.index("no_label")
    unlabelled = labels < 0
    if partitioner.name in ("iid",):
        arrays["num_rows"] = int((~unlabelled).sum())
    assignment = np.full(images.num_rows, DROPPED, dtype=np.int64)
    part = partitioner(
        {k: (v[~unlabelled] if isinstance(v, np.ndarray) else v) for k, v in arrays.items()},
        rng=rng,
        **config.partition_params(),
    )
    assignment[~unlabelled] = part
    _mark(reason, assignment, _SCHEME_DROP_REASON.get(partitioner.name, "no_location"))
    steps = [
        (lambda a: filters.drop_small_clients(a, config.min_client_size), "client_too_small"),
        (
            lambda a: filters.keep_largest_clients(a, config.max_clients) if config.max_clients else a,
            "over_max_clients",
        ),
        (lambda a: filters.sample_clients(a, config.client_fraction, rng), "client_not_sampled"),
    ]
    for step, why in steps:
        if clients_before is not None:
            clients_before[why] = filters.client_sizes(assignment)
        assignment = step(assignment)
        _mark(reason, assignment, why)
    assignment = filters.renumber(assignment)
    heldout = filters.holdout_clients(assignment, config.holdout_client_fraction, rng)
    is_test = filters.holdout_rows(assignment, config.test_fraction, rng) | np.isin(assignment, heldout)
    return assignment, is_test, heldout, reason


def _mark(reason: NDArray[np.int8], assignment: NDArray[np.int64], why: str) -> None:
    """Give the rows that ``assignment`` dropped and that have no reason yet the reason ``why``."""
    reason[(assignment < 0) & (reason < 0)] = DROP_REASONS.index(why)


def _pool_rows(images: pa.Table, name: str) -> NDArray[np.int64]:
    """Row numbers of the ``name`` split's rows in ``images``, in image id order (stable)."""
    split = images["split"].combine_chunks()
    if pa.types.is_dictionary(split.type):
        names = split.dictionary.to_pylist()
        codes = split.indices.to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(codes == names.index(name)) if name in names else np.zeros(0, dtype=np.int64)
    else:
        rows = np.flatnonzero(pc.equal(split, name).to_numpy(zero_copy_only=False))
    ids = images["image_id"].to_numpy()[rows]
    if ids.size > 1 and not (ids[1:] >= ids[:-1]).all():  # metadata is usually in id order already
        rows = rows[np.argsort(ids, kind="stable")]
    return rows.astype(np.int64)


_POOL_COLUMNS = ("image_id", "user", "latitude", "longitude")
"""The columns that the partition schemes and the checks read, with the rank (never ``file_name``: copying
strings is what costs)."""


def _pool(images: pa.Table, name: str, rank: str) -> tuple[NDArray[np.int64], pa.Table]:
    """The ``name`` split's row numbers in ``images`` and those rows, with the columns partitioning reads."""
    rows = _pool_rows(images, name)
    columns = [c for c in (*_POOL_COLUMNS, rank) if c in images.column_names]
    return rows, images.select(columns).take(pa.array(rows))


def check_configs(images: pa.Table, configs: Iterable[INatFLConfig]) -> None:
    """Raise :class:`~inat_hf.errors.EmptyConfigError` for the first of ``configs`` whose metadata cannot give a
    single row (:func:`inat_hf.manifest.checks.check_source`: a geo scheme without locations, a rank the
    metadata does not give, ...), before any manifest is built: the entry points that take several configs
    call it first, so that the last config's problem stops the run before the first config's work.
    """
    for config in configs:
        _, train = _pool(images, config.train_split, config.rank)
        checks.check_source(images, train, _labels(train, config.rank)[0], config)


def build_manifest(images: pa.Table, config: INatFLConfig, fingerprint: str = "") -> Manifest:
    """Partition an images table into the manifest of ``config`` (pure; see the module docstring).

    The work is on row numbers and numeric columns; the rows themselves (``file_name`` and the rest) are
    copied once, in the manifest's order, at the end.

    Raises
    ------
    inat_hf.errors.EmptyConfigError
        The config keeps no row (:mod:`inat_hf.manifest.checks`), in one line naming it, the rows in and why.
    """
    with bulk_allocations():  # the system allocator: no huge-page compaction stalls (inat_hf.metadata.pool)
        return _build(images, config, fingerprint)


def _build(images: pa.Table, config: INatFLConfig, fingerprint: str) -> Manifest:
    train_rows, train = _pool(images, config.train_split, config.rank)  # train or train_mini, in image id order
    labels, names = _labels(train, config.rank)
    checks.check_source(images, train, labels, config)  # before any partitioning: nothing to keep, say why
    clients_before: dict[str, NDArray[np.int64]] = {}
    try:
        assignment, is_test, heldout, reason = assign_clients(train, config, labels, clients_before)
    except ValueError as err:  # the scheme cannot cut these rows (num_partitions above the rows, ...)
        raise checks.empty_config_error(config, train.num_rows, str(err)) from None
    checks.check_kept(config, train.num_rows, reason, DROP_REASONS, clients_before)
    kept = assignment >= 0
    split_code = np.where(is_test, 1, 0).astype(np.int8)
    train_ids = train["image_id"].to_numpy()
    order = np.lexsort((train_ids, assignment, split_code))  # rows sorted by image id: the last key is stable
    order = order[kept[order]]
    val_rows, val = _pool(images, "val", config.rank)
    val_labels, _ = _labels(val, config.rank)
    val_order = np.flatnonzero(val_labels >= 0)  # val rows are in image id order
    table = _examples(
        images,
        rows=np.concatenate([train_rows[order], val_rows[val_order]]),
        client=np.concatenate([assignment[order], np.full(val_order.size, -1, dtype=np.int64)]),
        split_code=np.concatenate([split_code[order], np.full(val_order.size, 2, dtype=np.int8)]),
        labels=np.concatenate([labels[order], val_labels[val_order]]),
    )
    dropped_rows = np.flatnonzero(~kept)
    val_unlabelled = np.flatnonzero(val_labels < 0)
    dropped = pa.table(
        {
            "image_id": np.concatenate([train_ids[dropped_rows], val["image_id"].to_numpy()[val_unlabelled]]),
            "split": _strings(
                ("train", "validation"),
                np.concatenate([np.zeros(dropped_rows.size, np.int8), np.ones(val_unlabelled.size, np.int8)]),
            ),
            "reason": _strings(
                DROP_REASONS,
                np.concatenate([reason[dropped_rows], np.full(val_unlabelled.size, DROP_REASONS.index("no_label"))]),
            ),
        }
    )
    clients = _client_index(assignment[order], split_code[order], heldout)
    return Manifest(table=table, clients=clients, dropped=dropped, label_names=names, fingerprint=fingerprint)


def _strings(names: tuple[str, ...], codes: NDArray) -> pa.Array:
    """``names[code]`` for each code, as a plain string array (built from a dictionary: no Python objects)."""
    indices = pa.array(codes.astype(np.int32, copy=False))
    return pa.DictionaryArray.from_arrays(indices, pa.array(names, type=pa.string())).cast(pa.string())


def _examples(
    images: pa.Table, *, rows: NDArray[np.int64], client: NDArray, split_code: NDArray, labels: NDArray
) -> pa.Table:
    """The manifest rows: ``images`` at ``rows`` (one copy), in :data:`~inat_hf.schema.MANIFEST_COLUMNS` order."""
    computed = {
        "client_id": pa.array(client, type=pa.int64()),
        "split": _strings(SPLITS, split_code),
        "label": pa.array(labels, type=pa.int32()),
    }
    copied = [name for name in MANIFEST_COLUMNS if name not in computed]
    indices = pa.array(rows)
    largest_first = sorted(copied, key=lambda name: -images[name].nbytes)
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:  # Arrow releases the GIL
        taken = dict(
            zip(largest_first, pool.map(lambda name: _take(images[name], indices), largest_first), strict=True)
        )
    encoded = pa.dictionary(pa.int32(), pa.string())  # ranks and users: few distinct values
    return pa.table(
        {
            name: computed[name] if name in computed else taken[name].cast(encoded) if name in _ENCODED else taken[name]
            for name in MANIFEST_COLUMNS
        }
    )


def _take(column: pa.ChunkedArray, indices: pa.Array) -> pa.Array:
    """``column`` at ``indices``, as one array. Concatenated first: Arrow's ``take`` across many string chunks is
    several times slower than a concatenation and a ``take`` from one (a string column over 2 GiB stays chunked).
    """
    try:
        return column.combine_chunks().take(indices)
    except (pa.ArrowInvalid, pa.ArrowCapacityError):  # offsets past 2**31 - 1: take across the chunks
        return column.take(indices).combine_chunks()


def _client_index(client: NDArray[np.int64], split_code: NDArray, heldout: NDArray[np.int64]) -> pa.Table:
    """Offsets and lengths of each client's train and test rows (rows sorted by split, then client)."""
    num_clients = int(client.max()) + 1 if client.size else 0
    columns: dict[str, Any] = {"client_id": np.arange(num_clients, dtype=np.int64)}
    for code, name in ((0, "train"), (1, "test")):
        rows = np.flatnonzero(split_code == code)
        lengths = np.bincount(client[rows], minlength=num_clients)
        base = int(np.count_nonzero(split_code < code))
        columns[f"{name}_offset"] = base + (np.cumsum(lengths) - lengths).astype(np.int64)
        columns[f"{name}_length"] = lengths.astype(np.int64)
    columns["heldout"] = np.isin(columns["client_id"], heldout)
    return pa.table(columns)
