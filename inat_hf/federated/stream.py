"""Clients read straight from storage: :class:`ClientStream` and :func:`stream_client`.

:class:`ClientStream` needs no prepared dataset: it reads one client's rows of the cached manifest (the
Parquet row groups that hold that client, nothing else) and fetches that client's images only, through
:func:`inat_hf.manifest.examples.iter_examples`. :func:`stream_client` is the one-call form.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from inat_hf import storage
from inat_hf.config import DEFAULT_CONFIG_NAME, INatFLConfig, config_for
from inat_hf.federated.clients import _check_client_id, _describe
from inat_hf.manifest import load_or_build, locate, read_client_rows
from inat_hf.manifest.examples import SkipHook, iter_examples
from inat_hf.schema import features_for
from inat_hf.source import Source


class ClientStream:
    """Clients of one config read straight from storage: each client's manifest rows and images only.

    The manifest comes from the one cache that the builder uses (:func:`inat_hf.manifest.cache_root`);
    if it is not there it is built once from the metadata at ``data_dir`` and cached. One client's rows
    are then read from the manifest's Parquet file, whose row groups are client-aligned, so only the row
    groups that can hold that client are read; its images are fetched concurrently.

    Parameters
    ----------
    data_dir : Source or str
        Where the data is: a :class:`~inat_hf.source.Source`, or the data folder URL (as for the builder),
        which makes one with ``storage_options``, ``images_dir`` and ``image_storage_options``.
    config : str or INatFLConfig
        A config name (``family_user``) or a config; ``overrides`` apply to either.
    storage_options : mapping, optional
        Credentials for fsspec; never stored in a path or a message.
    cache_dir : str or path, optional
        The builder's ``cache_dir`` (default: ``$INAT_FL_CACHE``, else the ``datasets`` cache).
    images_dir : str, optional
        Where the images are, when apart from the metadata (any fsspec URL; default ``data_dir``).
    image_storage_options : mapping, optional
        Credentials of ``images_dir`` (default ``storage_options``).
    **overrides
        Config fields, e.g. ``min_client_size=32``.
    """

    def __init__(
        self,
        data_dir: Source | str,
        config: str | INatFLConfig = DEFAULT_CONFIG_NAME,
        *,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
        images_dir: str | None = None,
        image_storage_options: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        self.config = config = config_for(config, **overrides)
        self.source = Source.of(data_dir, storage_options, images_dir, image_storage_options)
        """Where the data is (its metadata and images resolved here, once)."""
        self.data_dir = self.source.data_dir
        key = locate(self.source.metadata, config, cache_dir)  # the builder's cache: built once for both
        if config.with_images:
            _ = self.source.images  # resolved now: bad image credentials fail here, not at the first example
        if not key.is_built():
            load_or_build(key, self.source.metadata)
        self._index = pq.read_table(key.folder / "clients.parquet")
        self.label_names: tuple[str, ...] = key.label_names()
        self.manifest_file = key.parquet_file
        """The cached manifest's Parquet file (client-aligned row groups) that :meth:`rows` reads."""
        self._manifest_rows = pq.ParquetFile(key.parquet_file)

    @property
    def num_clients(self) -> int:
        """Number of clients of the config (held-out ones included)."""
        return self._index.num_rows

    def client_ids(self, split: str = "train") -> np.ndarray:
        """The ids of the clients that have rows of ``split`` (``train`` or ``test``), increasing: the clients
        of that split of the prepared dataset, in the order of ``INatPartitioner``'s partitions.
        """
        if split not in ("train", "test"):
            raise ValueError(f"clients have train and test rows, not {split!r}")
        return np.flatnonzero(self._index.column(f"{split}_length").to_numpy() > 0).astype(np.int64)

    def client_size(self, client_id: int, split: str = "train") -> int:
        """Rows of ``split`` that a client has in the manifest."""
        if split not in ("train", "test"):
            raise ValueError(f"clients have train and test rows, not {split!r}")
        cid = _check_client_id(client_id)
        if not 0 <= cid < self.num_clients:
            ids = np.arange(self.num_clients, dtype=np.int64)
            raise ValueError(f"client {cid} not in this manifest; {_describe(ids)}")
        return int(self._index.column(f"{split}_length")[cid].as_py())

    def rows(self, client_id: int, split: str = "train") -> pa.Table:
        """One client's manifest rows of ``split``, read from that client's Parquet row groups only."""
        self.client_size(client_id, split)  # validates
        return read_client_rows(self._manifest_rows, int(client_id), split)

    def features(self, *, decode: bool = True) -> datasets.Features:
        """The example features (as the prepared dataset has them); ``decode=False`` keeps image bytes."""
        features = features_for(self.label_names, with_images=self.config.with_images)
        if "image" in features and not decode:
            features["image"] = datasets.Image(decode=False)
        return features

    def examples(
        self,
        client_id: int,
        split: str = "train",
        *,
        decode: bool = True,
        on_skip: SkipHook | None = None,
    ) -> Iterator[dict[str, Any]]:
        """A client's examples in the prepared dataset's order, fetching only its images.

        The client id is checked, and its manifest rows read, before this returns; the images are
        fetched as the iterator is consumed.

        Parameters
        ----------
        client_id : int
        split : {"train", "test"}
        decode : bool
            Decode as ``datasets`` does (``PIL.Image`` images); False gives ``{"bytes", "path"}`` images.
        on_skip : callable, optional
            Called with (image_id, file_name, reason) for each image ``on_bad_image="skip"`` leaves out.

        Raises
        ------
        ValueError
            If the client is not in the manifest, or ``split`` is neither ``train`` nor ``test``.
        """
        rows = self.rows(client_id, split)
        loc = self.source.images if self.config.with_images else None
        return self._decoded(rows, loc, self.features(decode=decode), on_skip)

    def _decoded(
        self, rows: pa.Table, loc: storage.Location | None, features: datasets.Features, on_skip: SkipHook | None
    ) -> Iterator[dict[str, Any]]:
        for _, example in iter_examples(
            rows,
            loc,
            on_bad_image=self.config.on_bad_image,
            max_image_side=self.config.max_image_side,
            on_skip=on_skip,
        ):
            yield features.decode_example(features.encode_example(example))


def stream_client(
    data_dir: Source | str,
    config: str | INatFLConfig,
    client_id: int,
    *,
    split: str = "train",
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
    decode: bool = True,
    images_dir: str | None = None,
    image_storage_options: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Iterator[dict[str, Any]]:
    """Stream one client's examples from storage (see :class:`ClientStream`).

    ``stream_client("az://inat/2021", "family_user", 42, storage_options=creds)`` yields client 42's
    examples; ``overrides`` are config fields; ``data_dir`` is a :class:`~inat_hf.source.Source` or the data
    folder URL, with ``images_dir`` (and ``image_storage_options``) where the images are when they live apart
    from the metadata.
    """
    stream = ClientStream(
        data_dir,
        config,
        storage_options=storage_options,
        cache_dir=cache_dir,
        images_dir=images_dir,
        image_storage_options=image_storage_options,
        **overrides,
    )
    return stream.examples(client_id, split, decode=decode)
