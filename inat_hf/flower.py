"""Flower: a flwr-datasets ``Partitioner`` whose partitions are the clients of a prepared split.

Partition ``i`` is the ``i``-th client of the split in row order (the builder writes clients in increasing
id, so for ``*_user`` configs without filters partition ``i`` is client ``i``, the user whose name sorts
``i``-th, as in ``NaturalIdPartitioner(partition_by="user")``). Each partition is a contiguous slice of
the Arrow table (:meth:`inat_hf.clients.ClientData.client`), so the first ``load_partition`` costs one
pass over the ``client_id`` column, not a Python loop over every row::

    from inat_hf.flower import INatPartitioner

    partitioner = INatPartitioner.from_builder(builder, split="train")
    partition = partitioner.load_partition(0)

It also works where Flower assigns the dataset itself (``partitioner.dataset = train``), e.g. in
``FederatedDataset(..., partitioners={"train": INatPartitioner()}, shuffle=False)``: the split must keep
the builder's row order (Flower's default ``shuffle=True`` would scatter every client; shuffle each
partition instead).

flwr-datasets declares ``datasets<5`` but works with ``datasets`` 5: install it with
``pip install --no-deps flwr-datasets``.
"""

from __future__ import annotations

import numbers

import datasets

from inat_hf.builder import INatFLBuilder
from inat_hf.clients import ClientData, has_indices_mapping

try:
    from flwr_datasets.partitioner import Partitioner
except ImportError as err:
    raise ImportError(
        "inat_hf.flower needs flwr-datasets; install it with `pip install --no-deps flwr-datasets` "
        "(--no-deps keeps your datasets version: flwr-datasets declares datasets<5 but works with 5)"
    ) from err

__all__ = ["INatPartitioner"]


class INatPartitioner(Partitioner):
    """Partitions = the clients of a split whose rows are grouped by client.

    Parameters
    ----------
    clients : ClientData, optional
        The clients to serve; without it, assign the split with ``partitioner.dataset = split``
        (the index is computed on first use).
    """

    def __init__(self, clients: ClientData | None = None) -> None:
        super().__init__()
        self._clients = clients
        if clients is not None:
            self.dataset = clients.dataset

    @classmethod
    def from_builder(cls, builder: INatFLBuilder, split: str = "train") -> INatPartitioner:
        """The partitioner over ``split`` of a prepared :class:`~inat_hf.builder.INatFLBuilder`."""
        return cls(ClientData.from_builder(builder, split))

    @property
    def clients(self) -> ClientData:
        """The client index of the assigned dataset.

        Raises
        ------
        ValueError
            If the dataset was shuffled (``FederatedDataset`` shuffles unless ``shuffle=False``) or its
            clients are otherwise not contiguous.
        """
        if self._clients is None:
            if has_indices_mapping(self.dataset):
                raise ValueError(
                    "the dataset was shuffled or filtered (it carries an indices mapping), so its clients are no "
                    "longer contiguous: give INatPartitioner the split as prepared, e.g. "
                    "FederatedDataset(..., shuffle=False), and shuffle each partition instead"
                )
            self._clients = ClientData(self.dataset)
        return self._clients

    @property
    def num_partitions(self) -> int:
        """Number of partitions: the split's clients."""
        return self.clients.num_clients

    def partition_id_to_client_id(self, partition_id: int) -> int:
        """The client id of a partition.

        Raises
        ------
        ValueError
            If ``partition_id`` is not in ``0 .. num_partitions - 1``.
        """
        count = self.num_partitions
        if isinstance(partition_id, bool) or not isinstance(partition_id, numbers.Integral):
            raise ValueError(f"partition_id must be an integer, not {partition_id!r}")
        if not 0 <= partition_id < count:
            raise ValueError(f"partition_id {partition_id} is out of range: {count} partitions, ids 0..{count - 1}")
        return int(self.clients.client_ids[partition_id])

    def load_partition(self, partition_id: int) -> datasets.Dataset:
        """The rows of one client: a contiguous slice of the dataset (no indices mapping)."""
        return self.clients.client(self.partition_id_to_client_id(partition_id))
