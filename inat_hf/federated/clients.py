"""The federated view: one client at a time, from a prepared split or straight from storage.

:class:`ClientData` wraps a prepared split (a ``datasets.Dataset`` whose rows are grouped by client, as
:class:`inat_hf.builder.INatFLBuilder` writes them). Its client index (offset and length of each client's
run of rows) is computed once from the ``client_id`` column, vectorised, and every client must be one
contiguous run. ``client(cid)`` is then a zero-copy slice of the Arrow table: no filter, no indices
mapping, about the same cost for a client of 1 row or 10,000::

    clients = ClientData.from_builder(builder, split="train")
    for cid in clients.sample(10, seed=round_number):
        train_locally(clients.client(cid))

:class:`ClientStream` needs no prepared dataset: it reads one client's rows of the cached manifest (the
Parquet row groups that hold that client, nothing else) and fetches that client's images only, through
:func:`inat_hf.examples.iter_examples`. :func:`stream_client` is the one-call form.
"""

from __future__ import annotations

import copy
import hashlib
import numbers
import os
from collections.abc import Iterator, Mapping
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from inat_hf import storage
from inat_hf.builder import INatFLBuilder
from inat_hf.config import DEFAULT_CONFIG_NAME, INatFLConfig, config_for
from inat_hf.examples import SkipHook, image_location, iter_examples
from inat_hf.manifest import load_or_build, locate, read_client_rows
from inat_hf.schema import features_for

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


DATASET_STATE = ("_data", "_info", "_indexes", "_indices", "_format_kwargs", "_format_columns", "_fingerprint")
"""The private fields of ``datasets.Dataset`` (5.2; the same since 2.x) that :func:`contiguous_slice` sets."""


def contiguous_slice(dataset: datasets.Dataset, offset: int, length: int, fingerprint: str) -> datasets.Dataset:
    """What ``dataset.select(range(offset, offset + length))`` returns, in well under a millisecond.

    ``select`` over a range already slices the Arrow table (no indices mapping), but every new
    ``Dataset`` re-derives its features from the Arrow schema and serialises them back into the schema
    metadata, JSON of every ``ClassLabel`` name included: about 30 ms per call with iNat's 1,103
    families (more with 10,000 species). ``datasets`` has no public way to make a dataset over a slice of
    the same schema without that work, so this is the one place that uses its private state
    (:data:`DATASET_STATE`, checked against ``datasets`` 5.2 by ``tests/test_clients.py``): the dataset's
    state is copied and only the table, the info (a shallow copy), the format, the index registry and the
    fingerprint are new. The ``Features`` object is shared with ``dataset`` (``Dataset.features`` hands out
    copies, and ``datasets`` copies a dataset before changing its features). Should a future ``datasets``
    lack one of these fields, the public ``select`` is used instead (correct, only slower).

    ``dataset`` may not carry an indices mapping; ``fingerprint`` is the new dataset's.
    """
    if offset < 0 or length < 0 or offset + length > dataset.num_rows:
        raise ValueError(f"rows {offset}..{offset + length} are outside the dataset's {dataset.num_rows} rows")
    state = vars(dataset)
    if not all(name in state for name in DATASET_STATE):
        return dataset.select(range(offset, offset + length), new_fingerprint=fingerprint)
    if state["_indices"] is not None:
        raise ValueError("the dataset carries an indices mapping; call dataset.flatten_indices() first")
    part = datasets.Dataset.__new__(datasets.Dataset)
    vars(part).update(
        state,
        _data=state["_data"].slice(offset, length),
        _info=copy.copy(state["_info"]),
        _indexes={},
        _format_kwargs=dict(state["_format_kwargs"]),
        _format_columns=list(state["_format_columns"]) if state["_format_columns"] is not None else None,
        _fingerprint=fingerprint,
    )
    return part


def has_indices_mapping(dataset: datasets.Dataset) -> bool:
    """Whether ``dataset`` reads its rows through an indices mapping (after ``shuffle``, ``filter`` or a
    non-contiguous ``select``), so that its rows are not its Arrow table's rows in order.

    ``datasets`` shows the mapping only as the private ``_indices`` (5.2); the public ``flatten_indices``
    would copy the data.
    """
    return getattr(dataset, "_indices", None) is not None


def table_rows(dataset: datasets.Dataset) -> NDArray[np.int64] | None:
    """The Arrow table row of each of ``dataset``'s rows when it reads through an indices mapping, else None.

    ``datasets`` has no public way to read a column through the mapping in bulk short of reading it row-set
    by row-set (``dataset.with_format("arrow")[:]``: 6.5 s for 2.7M rows, against 0.08 s with this and one
    numpy take), so this reads the private ``_indices`` table (5.2), as :func:`has_indices_mapping` does.
    """
    mapping = getattr(dataset, "_indices", None)
    return None if mapping is None else np.asarray(mapping.column(0).to_numpy(), dtype=np.int64)


def dataset_fingerprint(dataset: datasets.Dataset) -> str:
    """The fingerprint ``datasets`` gave ``dataset`` (the private ``_fingerprint`` of 5.2: no public name)."""
    return str(dataset._fingerprint)


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


class ClientStream:
    """Clients of one config read straight from storage: each client's manifest rows and images only.

    The manifest comes from the one cache that the builder uses (:func:`inat_hf.manifest.cache_root`);
    if it is not there it is built once from the metadata at ``data_dir`` and cached. One client's rows
    are then read from the manifest's Parquet file, whose row groups are client-aligned, so only the row
    groups that can hold that client are read; its images are fetched concurrently.

    Parameters
    ----------
    data_dir : str
        The data folder URL (as for the builder).
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
        data_dir: str,
        config: str | INatFLConfig = DEFAULT_CONFIG_NAME,
        *,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
        images_dir: str | None = None,
        image_storage_options: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(config, INatFLConfig):
            fields = {**config.fingerprint_fields(), **overrides}
            config = config_for(config.name, **fields)
        else:
            config = config_for(config, **overrides)
        self.config = config
        self.data_dir = str(data_dir)
        self._source = storage.resolve(self.data_dir, storage_options)  # resolved once, here
        self._images = image_location(self._source, images_dir, image_storage_options, storage_options)
        key = locate(self._source, config, cache_dir)  # the builder's cache: built once for both
        if not key.is_built():
            load_or_build(key, self._source)
        self._index = pq.read_table(key.folder / "clients.parquet")
        self.label_names: tuple[str, ...] = key.label_names()
        self.manifest_file = key.parquet_file
        """The cached manifest's Parquet file (client-aligned row groups) that :meth:`rows` reads."""
        self._manifest_rows = pq.ParquetFile(key.parquet_file)

    @property
    def num_clients(self) -> int:
        """Number of clients of the config (held-out ones included)."""
        return self._index.num_rows

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
        loc = self._images if self.config.with_images else None
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
    data_dir: str,
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
    examples; ``overrides`` are config fields; ``images_dir`` (with ``image_storage_options``) is where the
    images are when they live apart from the metadata.
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
