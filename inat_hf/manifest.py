"""The manifest: the whole partition without image bytes, sorted so that each client is contiguous.

``build_manifest(images, config)`` is pure: images table (:func:`inat_hf.metadata.load_metadata`) plus a
config (:class:`inat_hf.config.INatFLConfig`) give

* ``table``: one row per example (:data:`MANIFEST_COLUMNS`), sorted by split (``train``, ``test``,
  ``validation``), then ``client_id``, then ``image_id``; the official ``val`` rows form the central
  ``validation`` split with ``client_id = -1``;
* ``clients``: the client index, one row per client: ``client_id``, ``train_offset``, ``train_length``,
  ``test_offset``, ``test_length``, ``heldout`` (offsets are row numbers in ``table``);
* ``dropped``: every train row that is not an example, with its reason (``no_label``, ``no_user``,
  ``no_location``, ``client_too_small``, ``over_max_clients``, ``client_not_sampled``), so that
  train rows in = train + test examples + dropped.

Same inputs, byte-identical manifest: no global random state (one ``numpy.random.Generator`` seeded
with the config's ``seed``), input rows sorted by image id first, stable sorts, Parquet written with fixed
settings; the same in any process, whatever ``PYTHONHASHSEED``. ``load_or_build_manifest`` caches it as
Parquet under ``{cache_dir}/manifests/{config name}-{fingerprint}/``. The fingerprint
(:func:`manifest_fingerprint`) is a SHA-256 of JSON holding, for each metadata file, its base name, its
size and its version token (ETag on object stores, modification time on local disk:
:func:`inat_hf.storage.file_token`), the config's fields (:meth:`INatFLConfig.fingerprint_fields`: rank,
scheme, seed and every other field of its own; not ``datasets``' ``name``, ``version``, ``data_dir``,
``data_files``, ``description``) and :data:`MANIFEST_VERSION`. It never holds a URL, a
path or a credential, so the same data read through another URL or with other credentials has the same
fingerprint; a copy of the data with new modification times gets a new one (and the same manifest).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from inat_hf import storage
from inat_hf.config import INatFLConfig
from inat_hf.metadata import find_metadata_files, is_file_url, load_metadata
from inat_hf.partition import DROPPED, filters, get_partitioner
from inat_hf.taxonomy import RANKS

MANIFEST_VERSION = 1
SPLITS = ("train", "test", "validation")
MANIFEST_COLUMNS = (
    "image_id",
    "file_name",
    "client_id",
    "split",
    "label",
    *RANKS,
    "species_id",
    "user",
    "latitude",
    "longitude",
    "date",
    "width",
    "height",
    "license",
)
ROW_GROUP_ROWS = 65_536
"""Target rows per Parquet row group; a client never straddles two groups."""

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
    images: pa.Table, config: INatFLConfig, labels: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.int64], NDArray[np.object_]]:
    """Client id, test flag, held-out client ids and drop reason of each row of a train images table."""
    rng = np.random.default_rng(config.seed)
    partitioner = get_partitioner(config.scheme)
    arrays: dict[str, Any] = {"labels": labels, "num_rows": images.num_rows}
    if "user_codes" in partitioner.inputs:
        arrays["user_codes"] = user_codes(images)
    if "latitude" in partitioner.inputs:
        arrays["latitude"], arrays["longitude"] = _float(images["latitude"]), _float(images["longitude"])
    reason = np.full(images.num_rows, None, dtype=object)
    reason[labels < 0] = "no_label"
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
        assignment = step(assignment)
        _mark(reason, assignment, why)
    assignment = filters.renumber(assignment)
    heldout = filters.holdout_clients(assignment, config.holdout_client_fraction, rng)
    is_test = filters.holdout_rows(assignment, config.test_fraction, rng) | np.isin(assignment, heldout)
    return assignment, is_test, heldout, reason


def _mark(reason: NDArray[np.object_], assignment: NDArray[np.int64], why: str) -> None:
    newly = (assignment < 0) & np.equal(reason, None)
    reason[newly] = why


def build_manifest(images: pa.Table, config: INatFLConfig, fingerprint: str = "") -> Manifest:
    """Partition an images table into the manifest of ``config`` (pure; see the module docstring)."""
    split = images["split"].combine_chunks()
    split = split.dictionary_decode() if pa.types.is_dictionary(split.type) else split
    train = images.filter(pc.equal(split, "train"))
    train = train.take(pa.array(np.argsort(train["image_id"].to_numpy(), kind="stable")))  # input order is moot
    val = images.filter(pc.equal(split, "val"))
    labels, names = _labels(train, config.rank)
    assignment, is_test, heldout, reason = assign_clients(train, config, labels)
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
            "reason": pa.array(reason[dropped_rows].tolist(), type=pa.string()),
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
    taken = images.take(pa.array(order))
    data = {
        "image_id": taken["image_id"],
        "file_name": taken["file_name"],
        "client_id": pa.array(client[order], type=pa.int64()),
        "split": pa.array(np.asarray(SPLITS, dtype=object)[split_code[order]], type=pa.string()),
        "label": pa.array(labels[order], type=pa.int32()),
        **{rank: taken[rank].cast(pa.dictionary(pa.int32(), pa.string())) for rank in RANKS},
        "species_id": taken["species_id"],
        "user": taken["user"].cast(pa.dictionary(pa.int32(), pa.string())),
        **{name: taken[name] for name in ("latitude", "longitude", "date", "width", "height", "license")},
    }
    return pa.table(data)


def _client_index(client: NDArray[np.int64], split_code: NDArray, heldout: NDArray[np.int64]) -> pa.Table:
    """Offsets and lengths of each client's train and test rows (rows sorted by split, then client)."""
    num_clients = int(client.max()) + 1 if client.size else 0
    columns: dict[str, Any] = {"client_id": np.arange(num_clients, dtype=np.int64)}
    for code, name in ((0, "train"), (1, "test")):
        rows = np.flatnonzero(split_code == code)
        lengths = np.bincount(client[rows], minlength=num_clients)
        base = int(np.count_nonzero(split_code < code))
        columns[f"{name}_offset"] = base + np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        columns[f"{name}_length"] = lengths.astype(np.int64)
    columns["heldout"] = np.isin(columns["client_id"], heldout)
    return pa.table(columns)


# --- cache -----------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$INAT_FL_CACHE``, else ``~/.cache/inaturalist_fl``."""
    return Path(os.environ.get("INAT_FL_CACHE", Path.home() / ".cache" / "inaturalist_fl"))


def manifest_fingerprint(url: str, config: INatFLConfig, storage_options: Mapping[str, Any] | None = None) -> str:
    """Fingerprint of (metadata files, config, seed): size and version token of each metadata file, the
    config's fields (:meth:`INatFLConfig.fingerprint_fields`) and :data:`MANIFEST_VERSION`. No URL or
    credential goes into it."""
    loc = storage.resolve(url, storage_options)
    files = [""] if is_file_url(url) else find_metadata_files(loc)
    tokens = [[(rel or loc.root).rsplit("/", 1)[-1], storage.file_token(loc, rel)] for rel in files]
    payload = {"version": MANIFEST_VERSION, "files": tokens, "config": config.fingerprint_fields()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def row_group_bounds(table: pa.Table, target: int = ROW_GROUP_ROWS) -> list[tuple[int, int]]:
    """Row ranges of about ``target`` rows that never cut a (split, client) run in two and never mix splits."""
    if table.num_rows == 0:
        return []
    client = table["client_id"].to_numpy()
    if "split" in table.column_names:
        split = pc.index_in(table["split"], value_set=pa.array(SPLITS)).to_numpy(zero_copy_only=False)
    else:  # one split per table (an export's file)
        split = np.zeros(table.num_rows, dtype=np.int64)
    split_change = split[1:] != split[:-1]
    starts = np.flatnonzero(np.concatenate(([True], (client[1:] != client[:-1]) | split_change)))
    split_starts = set((np.flatnonzero(split_change) + 1).tolist())
    bounds, begin = [], 0
    for start in starts[1:].tolist():
        if start - begin >= target or start in split_starts:
            bounds.append((begin, start))
            begin = start
    bounds.append((begin, table.num_rows))
    return bounds


def write_manifest(manifest: Manifest, folder: Path) -> None:
    """Write a manifest as Parquet (client-aligned row groups, statistics on) plus ``info.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(folder / "manifest.parquet", manifest.table.schema, write_statistics=True) as writer:
        for begin, end in row_group_bounds(manifest.table, ROW_GROUP_ROWS):
            writer.write_table(manifest.table.slice(begin, end - begin), row_group_size=end - begin)
    pq.write_table(manifest.clients, folder / "clients.parquet")
    pq.write_table(manifest.dropped, folder / "dropped.parquet")
    info = {"fingerprint": manifest.fingerprint, "label_names": list(manifest.label_names), "version": MANIFEST_VERSION}
    (folder / "info.json").write_text(json.dumps(info, sort_keys=True, ensure_ascii=False))


def read_manifest(folder: Path) -> Manifest:
    """Read a manifest written by :func:`write_manifest` (memory-mapped)."""
    info = json.loads((folder / "info.json").read_text())
    return Manifest(
        table=pq.read_table(folder / "manifest.parquet", memory_map=True),
        clients=pq.read_table(folder / "clients.parquet", memory_map=True),
        dropped=pq.read_table(folder / "dropped.parquet", memory_map=True),
        label_names=tuple(info["label_names"]),
        fingerprint=info["fingerprint"],
    )


def manifest_folder(cache_dir: Path, config: INatFLConfig, fingerprint: str) -> Path:
    """Where a manifest is cached: ``{cache_dir}/manifests/{config name}-{fingerprint}``."""
    return Path(cache_dir) / "manifests" / f"{config.name}-{fingerprint}"


def load_or_build_manifest(
    url: str,
    config: INatFLConfig,
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Manifest:
    """The manifest of ``config`` over the metadata at ``url``, from the cache or built and cached."""
    fingerprint = manifest_fingerprint(url, config, storage_options)
    folder = manifest_folder(Path(cache_dir) if cache_dir else default_cache_dir(), config, fingerprint)
    if (folder / "info.json").exists():
        return read_manifest(folder)
    manifest = build_manifest(load_metadata(url, storage_options, on_invalid=config.on_invalid), config, fingerprint)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    write_manifest(manifest, staging)
    try:
        os.replace(staging, folder)
    except OSError:  # another process cached it first: theirs is identical
        for child in staging.iterdir():
            child.unlink()
        staging.rmdir()
    return read_manifest(folder)


def client_row_groups(metadata: pq.FileMetaData, client_id: int, split: str | None = "train") -> list[int]:
    """Row groups of a Parquet file whose statistics can hold ``client_id``'s rows (of ``split``, when the
    file has a ``split`` column and ``split`` is given)."""
    schema = metadata.schema.to_arrow_schema()
    wanted: dict[str, Any] = {"client_id": client_id}
    if split is not None and "split" in schema.names:
        wanted["split"] = split
    columns = {name: schema.get_field_index(name) for name in wanted}
    groups = []
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        if all(_may_hold(group.column(columns[name]).statistics, value) for name, value in wanted.items()):
            groups.append(index)
    return groups


def _may_hold(stats: Any, value: Any) -> bool:
    return stats is None or not stats.has_min_max or stats.min <= value <= stats.max


def read_client_rows(parquet: pq.ParquetFile, client_id: int, split: str = "train") -> pa.Table:
    """One client's rows of ``split`` from a manifest Parquet file, reading only its row groups."""
    groups = client_row_groups(parquet.metadata, client_id, split)
    table = parquet.read_row_groups(groups) if groups else parquet.schema_arrow.empty_table()
    return table.filter(pc.and_(pc.equal(table["client_id"], client_id), pc.equal(table["split"], split)))
