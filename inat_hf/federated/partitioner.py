"""Flower: a flwr-datasets ``Partitioner`` whose partitions are the clients of a split.

Partition ``i`` is the client with the ``i``-th smallest ``client_id`` of the split (for ``*_user`` configs
without filters, client ``i``: the user whose name sorts ``i``-th, as in
``NaturalIdPartitioner(partition_by="user")``)::

    from inat_hf.federated.partitioner import INatPartitioner

    partitioner = INatPartitioner.from_builder(builder, split="train")
    partition = partitioner.load_partition(0)

It works whatever Flower did to the split first, including ``FederatedDataset``'s default shuffle
(``shuffle=True, seed=42``), a ``filter`` or a ``select``::

    fds = FederatedDataset(dataset=EXPORT_FOLDER, subset="family_user", partitioners={"train": INatPartitioner()})

Two ways to find a client's rows, chosen on first use:

- **contiguous** (the split as prepared or exported: no indices mapping, each client one run of rows):
  the client index of :class:`inat_hf.federated.clients.ClientData`, and each partition a zero-copy slice of the
  Arrow table.
- **grouped** (any other order): one stable ``argsort`` of the ``client_id`` column, read once in the
  dataset's row order through its indices mapping (under half a second for the 2.7M rows of the full
  train split, see ``BENCHMARKS.md``); each partition is ``dataset.select(rows)`` of that client's rows,
  in the dataset's order. Either way a partition holds the same image ids.

flwr-datasets declares ``datasets<5`` but works with ``datasets`` 5: install it with
``pip install --no-deps flwr-datasets``.
"""

from __future__ import annotations

import numbers

import datasets
import numpy as np
from numpy.typing import NDArray

from inat_hf.builder import INatFLBuilder
from inat_hf.federated.clients import CLIENT_COLUMN, ClientData, client_runs
from inat_hf.federated.dataset_state import has_indices_mapping, table_rows

try:
    from flwr_datasets.partitioner import Partitioner
except ImportError as err:
    raise ImportError(
        "inat_hf.federated.partitioner needs flwr-datasets; install it with `pip install --no-deps flwr-datasets` "
        "(--no-deps keeps your datasets version: flwr-datasets declares datasets<5 but works with 5)"
    ) from err

__all__ = ["ClientGroups", "INatPartitioner", "group_clients"]


class ClientGroups:
    """The rows of each client of a column of client ids, found by one stable sort.

    Parameters
    ----------
    ids : ndarray of int, shape (n,)
        One client id per row, in the dataset's row order.

    Attributes
    ----------
    client_ids : ndarray of int64, shape (k,)
        The distinct client ids, increasing.
    order : ndarray of int64, shape (n,)
        Row positions sorted by client id (stable: each client's rows keep their order).
    starts : ndarray of int64, shape (k + 1,)
        Client ``j``'s rows are ``order[starts[j]:starts[j + 1]]``.
    """

    def __init__(self, ids: NDArray[np.integer]) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self.order: NDArray[np.int64] = np.argsort(ids, kind="stable").astype(np.int64, copy=False)
        sorted_ids = ids[self.order]
        changes = np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])) if ids.size else np.zeros(0, bool)
        firsts: NDArray[np.int64] = np.flatnonzero(changes).astype(np.int64)
        self.client_ids: NDArray[np.int64] = sorted_ids[firsts].astype(np.int64, copy=False)
        self.starts: NDArray[np.int64] = np.append(firsts, ids.size).astype(np.int64)

    def rows(self, position: int) -> NDArray[np.int64]:
        """Row positions of the ``position``-th client (in ``client_ids`` order), increasing."""
        return self.order[self.starts[position] : self.starts[position + 1]]

    @property
    def sizes(self) -> NDArray[np.int64]:
        """Rows per client, aligned with :attr:`client_ids`."""
        return np.diff(self.starts)


def group_clients(dataset: datasets.Dataset) -> ClientGroups:
    """Group the rows of ``dataset`` (any indices mapping) by ``client_id``: one column read, one sort.

    Raises
    ------
    ValueError
        If the dataset has no ``client_id`` column, or a row has none.
    """
    if CLIENT_COLUMN not in dataset.column_names:
        raise ValueError(
            f"the dataset has no {CLIENT_COLUMN!r} column (columns: {dataset.column_names}); INatPartitioner "
            "needs a split of an inaturalist-fl builder or export"
        )
    column = dataset.data.column(CLIENT_COLUMN)
    if column.null_count:
        raise ValueError(f"{column.null_count} row(s) have no {CLIENT_COLUMN}; every row needs a client")
    ids = column.to_numpy()
    rows = table_rows(dataset)
    if rows is not None:  # the dataset's rows are these rows of the table: one numpy take
        ids = ids[rows]
    return ClientGroups(ids)


class INatPartitioner(Partitioner):
    """Partitions = the clients of a split, partition ``i`` the ``i``-th client in client-id order.

    Parameters
    ----------
    clients : ClientData, optional
        The clients to serve; without it, assign the split with ``partitioner.dataset = split``
        (``FederatedDataset`` does), and the clients are found on first use (see the module docstring).
    """

    def __init__(self, clients: ClientData | None = None) -> None:
        super().__init__()
        self._clients = clients
        self._groups: ClientGroups | None = None
        self._ids: NDArray[np.int64] | None = None
        if clients is not None:
            self.dataset = clients.dataset
            self._ids = np.sort(clients.client_ids)

    @classmethod
    def from_builder(cls, builder: INatFLBuilder, split: str = "train") -> INatPartitioner:
        """The partitioner over ``split`` of a prepared :class:`~inat_hf.builder.INatFLBuilder`."""
        return cls(ClientData.from_builder(builder, split))

    def _index(self) -> NDArray[np.int64]:
        """The client ids in partition order, computed on first use (contiguous fast path if it applies)."""
        if self._ids is None:
            dataset = self.dataset
            if not has_indices_mapping(dataset) and CLIENT_COLUMN in dataset.column_names:
                column = dataset.data.column(CLIENT_COLUMN)
                try:
                    if column.null_count == 0:
                        client_runs(column.to_numpy())  # raises if a client is split into several runs
                        self._clients = ClientData(dataset)
                except ValueError:
                    self._clients = None
            if self._clients is not None:
                self._ids = np.sort(self._clients.client_ids)
            else:
                self._groups = group_clients(dataset)
                self._ids = self._groups.client_ids
        return self._ids

    @property
    def mode(self) -> str:
        """``contiguous`` (zero-copy slices of the Arrow table) or ``grouped`` (``select`` of each client's rows)."""
        self._index()
        return "contiguous" if self._clients is not None else "grouped"

    @property
    def client_ids(self) -> NDArray[np.int64]:
        """Client ids in partition order (increasing)."""
        return self._index()

    @property
    def num_partitions(self) -> int:
        """Number of partitions: the split's clients."""
        return int(self._index().size)

    def partition_id_to_client_id(self, partition_id: int) -> int:
        """The client id of a partition.

        Raises
        ------
        ValueError
            If ``partition_id`` is not in ``0 .. num_partitions - 1``.
        """
        ids = self._index()
        if isinstance(partition_id, bool) or not isinstance(partition_id, numbers.Integral):
            raise ValueError(f"partition_id must be an integer, not {partition_id!r}")
        if not 0 <= partition_id < ids.size:
            raise ValueError(
                f"partition_id {partition_id} is out of range: {ids.size} partitions, ids 0..{ids.size - 1} "
                f"(one per client of the split); run at most {ids.size} Flower nodes (num_supernodes) on it"
            )
        return int(ids[partition_id])

    def load_partition(self, partition_id: int) -> datasets.Dataset:
        """The rows of one client, in the dataset's order: a contiguous slice of the Arrow table (contiguous
        mode) or ``dataset.select`` of the client's rows (grouped mode).
        """
        client_id = self.partition_id_to_client_id(partition_id)
        if self._clients is not None:
            return self._clients.client(client_id)
        groups = self._groups
        if groups is None:  # unreachable after _index(); keeps the type checker informed
            raise RuntimeError("the client index was not built")
        return self.dataset.select(groups.rows(partition_id))
