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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from inat_hf.config import INatFLConfig
from inat_hf.manifest import checks
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


def _split_rows(images: pa.Table, name: str) -> pa.Table:
    split = images["split"].combine_chunks()
    split = split.dictionary_decode() if pa.types.is_dictionary(split.type) else split
    return images.filter(pc.equal(split, name))


def check_configs(images: pa.Table, configs: Iterable[INatFLConfig]) -> None:
    """Raise :class:`~inat_hf.errors.EmptyConfigError` for the first of ``configs`` whose metadata cannot give a
    single row (:func:`inat_hf.manifest.checks.check_source`: a geo scheme without locations, a rank the
    metadata does not give, ...), before any manifest is built: the entry points that take several configs
    call it first, so that the last config's problem stops the run before the first config's work.
    """
    for config in configs:
        train = _split_rows(images, config.train_split)
        checks.check_source(images, train, _labels(train, config.rank)[0], config)


def build_manifest(images: pa.Table, config: INatFLConfig, fingerprint: str = "") -> Manifest:
    """Partition an images table into the manifest of ``config`` (pure; see the module docstring).

    Raises
    ------
    inat_hf.errors.EmptyConfigError
        The config keeps no row (:mod:`inat_hf.manifest.checks`), in one line naming it, the rows in and why.
    """
    train = _split_rows(images, config.train_split)  # the train pool: train or train_mini
    train = train.take(pa.array(np.argsort(train["image_id"].to_numpy(), kind="stable")))  # input order is moot
    val = _split_rows(images, "val")
    labels, names = _labels(train, config.rank)
    checks.check_source(images, train, labels, config)  # before any partitioning: nothing to keep, say why
    clients_before: dict[str, NDArray[np.int64]] = {}
    try:
        assignment, is_test, heldout, reason = assign_clients(train, config, labels, clients_before)
    except ValueError as err:  # the scheme cannot cut these rows (num_partitions above the rows, ...)
        raise checks.empty_config_error(config, train.num_rows, str(err)) from None
    checks.check_kept(config, train.num_rows, reason, DROP_REASONS, clients_before)
    kept = assignment >= 0
    split_code = np.where(is_test, 1, 0)
    order = np.lexsort((train["image_id"].to_numpy(), assignment, split_code))
    order = order[kept[order]]
    parts = [_examples(train, order, assignment, split_code, labels)]
    val_labels, _ = _labels(val, config.rank)
    if val.num_rows:
        val_order = np.argsort(val["image_id"].to_numpy(), kind="stable")
        val_order = val_order[val_labels[val_order] >= 0]
        parts.append(_examples(val, val_order, np.full(val.num_rows, -1), np.full(val.num_rows, 2), val_labels))
    table = pa.concat_tables(parts).combine_chunks()
    dropped_rows = np.flatnonzero(~kept)
    dropped = pa.table(
        {
            "image_id": train["image_id"].take(pa.array(dropped_rows)),
            "split": pa.array(["train"] * dropped_rows.size, type=pa.string()),
            "reason": pa.array(np.asarray(DROP_REASONS, dtype=object)[reason[dropped_rows]], type=pa.string()),
        }
    )
    if val.num_rows:
        val_unlabelled = np.flatnonzero(val_labels < 0)
        dropped = pa.concat_tables(
            [
                dropped,
                pa.table(
                    {
                        "image_id": val["image_id"].take(pa.array(val_unlabelled)),
                        "split": pa.array(["validation"] * val_unlabelled.size, type=pa.string()),
                        "reason": pa.array(["no_label"] * val_unlabelled.size, type=pa.string()),
                    }
                ),
            ]
        )
    clients = _client_index(assignment[order], split_code[order], heldout)
    return Manifest(table=table, clients=clients, dropped=dropped, label_names=names, fingerprint=fingerprint)


def _examples(
    images: pa.Table, order: NDArray[np.int64], client: NDArray, split_code: NDArray, labels: NDArray
) -> pa.Table:
    """The manifest rows of ``images[order]``, in :data:`~inat_hf.schema.MANIFEST_COLUMNS` order."""
    taken = images.take(pa.array(order))
    computed = {
        "client_id": pa.array(client[order], type=pa.int64()),
        "split": pa.array(np.asarray(SPLITS, dtype=object)[split_code[order]], type=pa.string()),
        "label": pa.array(labels[order], type=pa.int32()),
    }
    encoded = pa.dictionary(pa.int32(), pa.string())  # ranks and users: few distinct values
    return pa.table(
        {
            name: computed[name] if name in computed else taken[name].cast(encoded) if name in _ENCODED else taken[name]
            for name in MANIFEST_COLUMNS
        }
    )


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
