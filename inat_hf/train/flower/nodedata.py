"""One Flower node's client: its partition's client id, and that client's rows only.

Partition ``i`` is the ``i``-th client of the ``train`` split in client-id order, as
:class:`inat_hf.federated.partitioner.INatPartitioner` numbers them; a node reads nothing of the other
clients but their ids:

- an **export** (``inat-fl export`` or ``inat-fl prepare`` folder, ``TrainingData(export=...)``): the ids from the
  ``client_id`` column of the train files (that column only), the rows from the Parquet row groups that hold
  the client (:func:`inat_hf.export.read_client`), the images from those rows (a folder written with
  images) or from ``images`` (your copy, fetched for this client's rows only);
- a **data folder** (``TrainingData.of(data_dir=...)``): :class:`inat_hf.federated.stream.ClientStream`, which reads
  the client's rows of the cached manifest (built once from the metadata) and fetches its images only.

The ids, the stream and the model are kept once per process (a Flower simulation worker trains many clients).
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import datasets
import numpy as np
import pyarrow.parquet as pq
from numpy.typing import NDArray

from inat_hf import storage
from inat_hf.errors import StorageNotFoundError
from inat_hf.export import attach_images, read_client
from inat_hf.federated.stream import ClientStream
from inat_hf.train.data import TrainingData

SPLIT = "train"


@functools.lru_cache(maxsize=4)
def client_stream(source: TrainingData) -> ClientStream:
    """The :class:`ClientStream` of a data folder source (its manifest built once and cached)."""
    if source.source is None:
        raise ValueError("a client stream reads a data folder (data_dir), not an export")
    return ClientStream(source.source, source.config, cache_dir=source.cache_dir, **dict(source.overrides))


def export_client_ids(url: str, config_name: str, storage_options: dict[str, Any] | None = None) -> NDArray[np.int64]:
    """The client ids of an exported config's train split, increasing (the ``client_id`` column only).

    Raises
    ------
    ValueError
        If the folder has no train files of the config.
    """
    out = storage.resolve(url, storage_options)
    prefix = f"data/{config_name}/"
    try:
        listed = storage.list_files(out, prefix)
    except StorageNotFoundError:
        listed = []
    files = [f for f in listed if f.rsplit("/", 1)[-1].startswith(f"{SPLIT}-")]
    if not files:
        raise ValueError(
            f"{out.url}: no {SPLIT!r} files for config {config_name!r} under {prefix}: export or prepare that "
            "config there (inat-fl export / inat-fl prepare --config ...), or name the folder that holds it"
        )
    ids = []
    for relative in files:
        with storage.open_binary(out, relative) as handle:
            ids.append(pq.read_table(handle, columns=["client_id"]).column(0).to_numpy())
    return np.unique(np.concatenate(ids)).astype(np.int64)


@functools.lru_cache(maxsize=4)
def client_ids(source: TrainingData) -> NDArray[np.int64]:
    """The clients of the source's train split in client-id order: partition ``i`` is ``client_ids(source)[i]``."""
    if source.export is not None:
        return export_client_ids(source.export, source.config, source.options)
    return client_stream(source).client_ids(SPLIT)


def partition_client(source: TrainingData, partition_id: int, num_partitions: int | None = None) -> int:
    """The client id of a node's partition.

    Raises
    ------
    ValueError
        If ``partition_id`` is not an integer in ``0 .. num_partitions - 1``, or ``num_partitions`` exceeds
        the clients of the split.
    """
    ids = client_ids(source)
    for name, value in (("partition_id", partition_id), ("num_partitions", num_partitions)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise ValueError(f"{name} must be an integer, not {value!r}")
    if num_partitions is not None and not 1 <= num_partitions <= ids.size:
        raise ValueError(
            f"num_partitions={num_partitions}, but the train split of {source.config} has {ids.size} clients "
            f"(partitions 0..{ids.size - 1}): run at most {ids.size} Flower nodes (num_supernodes) on it"
        )
    count = ids.size if num_partitions is None else num_partitions
    if not 0 <= partition_id < count:
        raise ValueError(
            f"partition_id {partition_id} is out of range: {count} partitions, ids 0..{count - 1} (one per client "
            f"of the split); run at most {ids.size} Flower nodes (num_supernodes) on it"
        )
    return int(ids[partition_id])


def client_rows(source: TrainingData, client_id: int) -> datasets.Dataset:
    """One client's train rows with their ``image`` column (bytes, decoded by the input pipeline).

    Raises
    ------
    ValueError
        If the client has no train rows, or a manifest-only export comes without ``images``.
    """
    if source.export is not None:
        table, _ = read_client(source.export, source.config, client_id, split=SPLIT, storage_options=source.options)
        dataset = datasets.Dataset(table)  # the builder's features, from the files' schema
        if source.images is not None:
            return attach_images(dataset, source.images, source.options, decode=False)
        if "image" not in dataset.column_names:
            raise ValueError(
                f"the export {source.export} has no images (a manifest-only export): give the node your copy of "
                "the images (images = URL in the run config, or images=... in the SuperNode's --node-config)"
            )
        return dataset
    stream = client_stream(source)
    features = stream.features(decode=False)
    examples = list(stream.examples(client_id, SPLIT, decode=False))
    if not examples:
        raise ValueError(f"client {client_id} of {source.config} has no train rows in {source.data_dir}")
    return datasets.Dataset.from_list(examples, features=features)
