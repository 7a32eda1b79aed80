"""The federated view: clients of a prepared split, clients streamed from storage, the Flower partitioner.

:mod:`~inat_hf.federated.clients` (:class:`ClientData`, one client of a prepared split, zero-copy),
:mod:`~inat_hf.federated.stream` (:class:`ClientStream`, :func:`stream_client`: one client's rows and images
straight from storage), :mod:`~inat_hf.federated.partitioner` (:class:`INatPartitioner` for Flower Datasets;
it needs ``flwr-datasets``, so it is imported from its module only) and
:mod:`~inat_hf.federated.dataset_state` (the only code that reads ``datasets``' private state).
"""

from inat_hf.federated.clients import CLIENT_COLUMN, ClientData, client_runs
from inat_hf.federated.stream import ClientStream, stream_client

__all__ = ["CLIENT_COLUMN", "ClientData", "ClientStream", "client_runs", "stream_client"]
