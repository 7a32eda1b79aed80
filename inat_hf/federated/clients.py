"""The federated view over a prepared split: :class:`ClientData`, one client at a time.

:class:`ClientData` wraps a prepared split (a ``datasets.Dataset`` whose rows are grouped by client, as
:class:`inat_hf.builder.INatFLBuilder` writes them). Its client index (offset and length of each client's
run of rows) is computed once from the ``client_id`` column, vectorised, and every client must be one
contiguous run. ``client(cid)`` is then a zero-copy slice of the Arrow table: no filter, no indices
mapping, about the same cost for a client of 1 row or 10,000::

    clients = ClientData.from_builder(builder, split="train")
    for cid in clients.sample(10, seed=round_number):
        train_locally(clients.client(cid))

Clients straight from storage, without a prepared split, are :mod:`inat_hf.federated.stream`.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Iterator
from typing import Any

import datasets
import numpy as np
from numpy.typing import NDArray

from inat_hf.builder import INatFLBuilder
from inat_hf.federated.dataset_state import contiguous_slice, dataset_fingerprint, has_indices_mapping

CLIENT_COLUMN = "client_id"


def _describe(ids: NDArray[np.int64]) -> str:
    if ids.size == 0:
        return "no clients"
    return f"{ids.size} clients, ids {int(ids.min())}..{int(ids.max())}"


def _check_client_id(client_id: Any) -> int:
    if isinstance(client_id, bool) or not isinstance(client_id, numbers.Integral):
        raise TypeError(f"a client id is an integer, not {type(client_id).__name__} ({client_id!r})")
    return int(client_id)


def client_runs(ids: NDArray[np.integer]) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """The runs of equal values in a column of client ids.

    Parameters
    ----------
    ids : ndarray of int, shape (n,)
        One client id per row.

    Returns
    -------
    client_ids, offsets, lengths : ndarray of int64, shape (k,)
        One entry per run, in row order.

    Raises
    ------
    ValueError
        If a client id forms more than one run (its rows are not contiguous); the message names it.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    offsets = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1]))).astype(np.int64)
    lengths = np.diff(np.concatenate((offsets, [ids.size]))).astype(np.int64)
    run_ids = ids[offsets]
    values, counts = np.unique(run_ids, return_counts=True)
    split = values[counts > 1]
    if split.size:
        first = int(split[0])
        rows = offsets[run_ids == first]
        raise ValueError(
            f"client {first} is not contiguous: its rows form {int(counts[values == first][0])} separate runs "
            f"(starting at rows {', '.join(str(int(r)) for r in rows[:5])}); {split.size} client(s) are split "
            "so. ClientData needs each client's rows together, as the builder writes them (sort the dataset "
            "by client_id first)"
        )
    return run_ids.astype(np.int64, copy=False), offsets, lengths


class ClientData:
    """The federated view over a prepared split whose rows are grouped by client.

    Parameters
    ----------
    dataset : datasets.Dataset
        A split with a ``client_id`` column in which each client's rows are contiguous, e.g.
        ``builder.as_dataset("train")``. It may not carry an indices mapping (from ``shuffle``,
        ``filter`` or a non-contiguous ``select``): call ``dataset.flatten_indices()`` first.

    Raises
    ------
    ValueError
        If the dataset has no ``client_id`` column (or nulls in it), carries an indices mapping, or a
        client's rows are not contiguous (the message names the client).

    Notes
    -----
    ``client_ids`` keep the row order (the builder writes clients in increasing id); ``validation`` is
    one client, ``-1``.
    """

    def __init__(self, dataset: datasets.Dataset) -> None:
        if CLIENT_COLUMN not in dataset.column_names:
            raise ValueError(f"the dataset has no {CLIENT_COLUMN!r} column; columns: {dataset.column_names}")
        if has_indices_mapping(dataset):
            raise ValueError(
                "the dataset carries an indices mapping (from shuffle, filter or select), so its rows are not "
                "contiguous in the Arrow table; call dataset.flatten_indices() first"
            )
        self._dataset = dataset
        column = dataset.data.column(CLIENT_COLUMN)
        if column.null_count:
            raise ValueError(f"{column.null_count} row(s) have no {CLIENT_COLUMN}; every row needs a client")
        self._ids, self._offsets, self._lengths = client_runs(column.to_numpy())
        for array in (self._ids, self._offsets, self._lengths):
            array.flags.writeable = False
        self._order = np.argsort(self._ids, kind="stable")
        self._sorted_ids = self._ids[self._order]
        self._fingerprint = dataset_fingerprint(dataset)

    @classmethod
    def from_builder(cls, builder: INatFLBuilder, split: str = "train") -> ClientData:
        """The clients of ``split`` (``train``, ``test``, ``validation``) of a prepared builder."""
        dataset = builder.as_dataset(split)
        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(f"split {split!r} gave a {type(dataset).__name__}, not one datasets.Dataset")
        return cls(dataset)

    @property
    def dataset(self) -> datasets.Dataset:
        """The whole split."""
        return self._dataset

    @property
    def client_ids(self) -> NDArray[np.int64]:
        """Client ids in row order (read-only)."""
        return self._ids

    @property
    def sizes(self) -> NDArray[np.int64]:
        """Rows per client, aligned with :attr:`client_ids` (read-only)."""
        return self._lengths

    @property
    def offsets(self) -> NDArray[np.int64]:
        """First row of each client, aligned with :attr:`client_ids` (read-only)."""
        return self._offsets

    @property
    def num_clients(self) -> int:
        """Number of clients in the split."""
        return int(self._ids.size)

    def __len__(self) -> int:
        return self.num_clients

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids.tolist())

    def __contains__(self, client_id: object) -> bool:
        if isinstance(client_id, bool) or not isinstance(client_id, numbers.Integral):
            return False
        return self._position(int(client_id)) is not None

    def __repr__(self) -> str:
        return f"ClientData({_describe(self._ids)}, {self._dataset.num_rows} rows)"

    def _position(self, client_id: int) -> int | None:
        where = int(np.searchsorted(self._sorted_ids, client_id))
        if where < self._sorted_ids.size and self._sorted_ids[where] == client_id:
            return int(self._order[where])
        return None

    def client_range(self, client_id: int) -> tuple[int, int]:
        """(offset, length) of a client's rows in the split.

        Raises
        ------
        ValueError
            If the client is not in this split.
        """
        cid = _check_client_id(client_id)
        position = self._position(cid)
        if position is None:
            raise ValueError(f"client {cid} not in this split; {_describe(self._ids)}")
        return int(self._offsets[position]), int(self._lengths[position])

    def client(self, client_id: int) -> datasets.Dataset:
        """One client's rows: a contiguous slice of the split's Arrow table (no indices mapping), with the
        split's features, format and name, and a fingerprint of its own (split fingerprint + client id).

        Raises
        ------
        ValueError
            If the client is not in this split.
        TypeError
            If ``client_id`` is not an integer.
        """
        offset, length = self.client_range(client_id)
        digest = hashlib.sha256(f"{self._fingerprint}/client/{int(client_id)}".encode()).hexdigest()[:16]
        return contiguous_slice(self._dataset, offset, length, digest)

    def items(self) -> Iterator[tuple[int, datasets.Dataset]]:
        """(client id, client dataset) for every client, in row order."""
        return ((cid, self.client(cid)) for cid in self._ids.tolist())

    def sample(self, k: int, seed: int | np.random.Generator | None = None) -> list[int]:
        """``k`` distinct client ids drawn uniformly at random (e.g. one federated round's cohort).

        Parameters
        ----------
        k : int
            How many clients, ``0 <= k <= num_clients``.
        seed : int or numpy.random.Generator, optional
            The same seed gives the same clients.

        Returns
        -------
        list of int
        """
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k <= self.num_clients:
            raise ValueError(f"k={k!r}: choose between 0 and {self.num_clients} clients")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return self._ids[rng.choice(self.num_clients, size=int(k), replace=False)].tolist()
