r"""Hub-ready export: Parquet per config and split, client-aligned row groups, manifest-only by default.

Current ``datasets`` no longer runs loading scripts, so what people load from the Hub is Parquet with the
configs declared in the card's YAML. Layout of an export folder (local or any fsspec URL)::

    README.md                                        the dataset card (YAML ``configs:``)
    data/{config}/{split}-{i:05d}-of-{n:05d}.parquet  train / test / validation
    assets/*.png                                     figures of the card

**Manifest-only by default.** The iNat terms forbid redistributing the images, so the Parquet files hold
labels, partitions and file names but no image bytes; :func:`attach_images` adds the bytes from your own
copy, lazily and concurrently, giving the same examples the builder gives. ``with_images=True`` writes the
bytes too, for private use.

**Privacy.** No raw ``rights_holder`` is exported unless ``include_user=True``. Clients keep their integer
``client_id`` (the builder's) and get a pseudonym ``client``: for the ``user`` scheme
``"u" + sha256("inaturalist-fl/client/v1\\n" + user)[:16]`` of the client's first user in sorted order (so
the pseudonym is stable across exports and configs but does not show the name); for the other schemes
``"{scheme}-{client_id:06d}"``; ``"central"`` for the validation split.

Rows are sorted by client; each file holds whole clients and every row group holds whole clients, with
Parquet statistics, so one client is read by :func:`read_client` without scanning the others.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard

from inat_hf import storage
from inat_hf.config import INatFLConfig, config_for
from inat_hf.errors import StorageNotFoundError
from inat_hf.hub.card import card_from_exports
from inat_hf.manifest import (
    Manifest,
    check_configs,
    client_row_groups,
    layout,
    load_or_build,
    locate,
    row_group_bounds,
)
from inat_hf.manifest.examples import check_image
from inat_hf.metadata import load_metadata
from inat_hf.schema import SPLITS, features_for
from inat_hf.source import Source
from inat_hf.taxonomy import RANKS

FILE_ROWS = 250_000
"""About this many rows per Parquet file (whole clients)."""
PSEUDONYM_PREFIX = b"inaturalist-fl/client/v1\n"


def pseudonym(user: str) -> str:
    """The documented client pseudonym of a user name."""
    return "u" + hashlib.sha256(PSEUDONYM_PREFIX + user.encode("utf-8")).hexdigest()[:16]


def export_features(
    config: INatFLConfig, label_names: Sequence[str], *, include_user: bool, with_images: bool
) -> datasets.Features:
    """The features of an exported config: the builder's, with the ``client`` pseudonym after
    ``client_id``, without ``user`` unless ``include_user`` and without ``image`` unless ``with_images``.
    """
    features: dict[str, Any] = {"image": datasets.Image()} if with_images else {}
    for name, feature in features_for(tuple(label_names), with_images=False).items():
        if name == "user" and not include_user:
            continue
        features[name] = feature
        if name == "client_id":
            features["client"] = datasets.Value("string")
    return datasets.Features(features)


def _client_names(rows: pa.Table, config: INatFLConfig, split: str) -> pa.Array:
    """The ``client`` pseudonym of each row: one name per client run (rows are sorted by client), then
    repeated over the run's rows, without a Python loop over rows.
    """
    if split == "validation":
        return pa.array(["central"] * rows.num_rows, type=pa.string())
    client = rows["client_id"].to_numpy()
    if client.size == 0:
        return pa.array([], type=pa.string())
    starts = np.flatnonzero(np.concatenate(([True], client[1:] != client[:-1])))
    lengths = np.diff(np.append(starts, client.size))
    if config.scheme != "user":
        names = [f"{config.scheme}-{c:06d}" for c in client[starts].tolist()]
    else:
        users = rows["user"].combine_chunks()
        users = users.dictionary_decode() if pa.types.is_dictionary(users.type) else users
        names = [
            pseudonym(pc.min(users.slice(int(begin), int(length))).as_py() or "")
            for begin, length in zip(starts, lengths, strict=True)
        ]
    return pa.array(names, type=pa.string()).take(pa.array(np.repeat(np.arange(starts.size), lengths)))


def export_table(
    manifest: Manifest,
    config: INatFLConfig,
    split: str,
    *,
    include_user: bool = False,
    images: storage.Location | None = None,
) -> pa.Table:
    """The rows of one split as the export's Arrow table (features in the schema metadata)."""
    offset, length = manifest.split_range(split)
    rows = manifest.table.slice(offset, length)
    image_column = _image_column(images, rows["file_name"].to_pylist()) if images is not None else None
    return rows_table(rows, config, manifest.label_names, split, include_user=include_user, image_column=image_column)


def rows_table(
    rows: pa.Table,
    config: INatFLConfig,
    label_names: Sequence[str],
    split: str,
    *,
    include_user: bool = False,
    image_column: pa.Array | None = None,
) -> pa.Table:
    """Manifest rows of one split (whole clients, in order) as the export's Arrow table, the features in the
    schema metadata (so that ``datasets`` decodes ``image`` and ``label``).

    Parameters
    ----------
    rows : pyarrow.Table
        A slice of a manifest's table, all of ``split``.
    config : INatFLConfig
        The config of the manifest (the ``client`` pseudonyms depend on its scheme).
    label_names : sequence of str
        The manifest's label vocabulary.
    split : str
        The split of ``rows``.
    include_user : bool
        Keep the raw ``user`` column.
    image_column : pyarrow.Array, optional
        One ``datasets.Image`` struct per row (``bytes``, ``path``); without it the table has no ``image``.
    """
    features = export_features(config, label_names, include_user=include_user, with_images=image_column is not None)
    data: dict[str, Any] = {}
    if image_column is not None:
        data["image"] = image_column
    for name in features:
        if name == "image":
            continue
        if name == "client":
            data[name] = _client_names(rows, config, split)
        elif name in RANKS or name == "user":
            column = rows[name].combine_chunks()
            data[name] = column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
        else:
            data[name] = rows[name]
    table = pa.table(data).cast(features.arrow_schema)
    metadata = {b"huggingface": json.dumps({"info": {"features": features.to_dict()}}).encode()}
    return table.replace_schema_metadata(metadata)


def _image_column(images: storage.Location, names: list[str]) -> pa.Array:
    fetched = storage.fetch_many(images, names)
    for name, data in zip(names, fetched, strict=True):
        reason = check_image(data) if isinstance(data, bytes) else str(data)
        if reason is not None:
            raise ValueError(f"{images.url}/{name}: {reason}; fix or remove it before exporting with images")
    return pa.array(
        [{"bytes": b, "path": n} for b, n in zip(fetched, names, strict=True)], type=datasets.Image().pa_type
    )


def write_split(table: pa.Table, out: storage.Location, config_name: str, split: str) -> list[str]:
    """Write one split as ``data/{config}/{split}-*.parquet`` (whole clients per file and row group)."""
    files = [(a, b) for a, b in row_group_bounds(table, FILE_ROWS)] or [(0, 0)]
    written = []
    for i, (begin, end) in enumerate(files):
        relative = f"data/{config_name}/{split}-{i:05d}-of-{len(files):05d}.parquet"
        part = table.slice(begin, end - begin)
        with storage.open_output(out, relative) as handle:
            layout.write_client_aligned(part, handle, layout.EXPORT_ROW_GROUP_ROWS)
        written.append(relative)
    return written


def export_config(
    manifest: Manifest,
    config: INatFLConfig,
    out: storage.Location,
    *,
    include_user: bool = False,
    images: storage.Location | None = None,
) -> dict[str, list[str]]:
    """Export every non-empty split of one config; return the files written per split."""
    written = {}
    for split in SPLITS:
        if manifest.split_range(split)[1]:
            table = export_table(manifest, config, split, include_user=include_user, images=images)
            written[split] = write_split(table, out, config.name, split)
    return written


def data_files(config_name: str, splits: Sequence[str]) -> dict[str, str]:
    """The card's ``data_files`` globs of one exported config."""
    return {split: f"data/{config_name}/{split}-*.parquet" for split in splits}


# --- reading an export back ----------------------------------------------------------------------------


def read_client(
    url: str,
    config_name: str,
    client_id: int,
    *,
    split: str = "train",
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[pa.Table, int]:
    """One client's rows of an exported config, reading only the row groups that can hold it.

    Returns the rows and the number of row groups read. ``url`` is the export folder (local, ``az://``,
    ``hf://datasets/ORG/NAME``, any fsspec URL).
    """
    out = storage.resolve(url, storage_options)
    prefix = f"data/{config_name}/"
    files = [f for f in storage.list_files(out, prefix) if f.rsplit("/", 1)[-1].startswith(f"{split}-")]
    if not files:
        raise ValueError(f"{out.url}: no {split!r} files for config {config_name!r} under {prefix}")
    parts, groups_read = [], 0
    for relative in files:
        with storage.open_binary(out, relative) as handle:
            parquet = pq.ParquetFile(handle)
            groups = client_row_groups(parquet.metadata, client_id, None)
            if groups:
                table = parquet.read_row_groups(groups)
                groups_read += len(groups)
                parts.append(table.filter(pc.equal(table["client_id"], client_id)))
    if not parts:
        raise ValueError(f"client {client_id} is not in the {split!r} split of {config_name!r}")
    return pa.concat_tables(parts), groups_read


# --- images from the user's own copy -------------------------------------------------------------------


def attach_images(
    dataset: datasets.Dataset | datasets.IterableDataset,
    images_url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    batch_size: int = 256,
    decode: bool = True,
) -> datasets.Dataset | datasets.IterableDataset:
    """Add the ``image`` column from your own copy of the images (``file_name`` relative to ``images_url``).

    Lazy: an ``IterableDataset`` fetches each batch as it is iterated (``map``); a ``Dataset`` gets an
    on-the-fly transform, so nothing is fetched before rows are read. Fetches are concurrent
    (``storage.fetch_many``); a missing image raises :class:`~inat_hf.errors.StorageError` naming it.
    ``decode=False`` gives a ``Dataset``'s images as ``{"bytes", "path"}`` (as ``Image(decode=False)``
    does), for an input pipeline that decodes them itself (``inat_hf.train.pipeline``).
    """
    loc = storage.resolve(images_url, storage_options)
    image_feature = datasets.Image()

    def add(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        try:
            blobs = storage.fetch_many(loc, batch["file_name"])
        except StorageNotFoundError as err:
            raise StorageNotFoundError(
                f"{err}. An export's file_name is relative to the images folder: copy the missing image there, "
                "or pass the folder that holds the images (--images-dir)"
            ) from err
        return {**batch, "image": [{"bytes": b, "path": n} for b, n in zip(blobs, batch["file_name"], strict=True)]}

    if isinstance(dataset, datasets.IterableDataset):
        features = datasets.Features({"image": image_feature, **(dataset.features or {})})
        mapped = dataset.map(add, batched=True, batch_size=batch_size, features=features)
        return mapped.decode(True)  # map's output is not decoded by default

    def decoded(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        batch = add(batch)
        batch["image"] = [image_feature.decode_example(item) for item in batch["image"]]
        return batch

    return dataset.with_transform(decoded if decode else add)


def export_dataset(
    out_url: str,
    data_dir: str,
    config_names: Sequence[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    out_storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    include_user: bool = False,
    with_images: bool = False,
    replica_note: str | None = None,
    images_dir: str | None = None,
    image_storage_options: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Export configs of the data at ``data_dir`` to ``out_url`` with the card (``README.md``).

    With ``with_images``, the image bytes come from ``images_dir`` (any fsspec URL, with its own
    ``image_storage_options``; default ``data_dir`` and ``storage_options``). Returns the files written, by
    config and split.
    """
    out = storage.resolve(out_url, out_storage_options)
    where = Source(data_dir, storage_options, images_dir, image_storage_options)
    source, images = where.metadata, (where.images if with_images else None)
    configs = [config_for(name, **(overrides or {})) for name in config_names]
    on_invalid = configs[0].on_invalid if configs else "error"  # the overrides are the same for every config
    pool = configs[0].train_split if configs else "train"  # (so is the train pool)
    table = load_metadata(source, on_invalid=on_invalid, train_split=pool)  # once: the manifests and the card
    # Every config checked, then every manifest built: a config that keeps no rows stops the export before any
    # file is written.
    check_configs(table, configs)
    manifests = [load_or_build(locate(source, config, cache_dir), source, table) for config in configs]
    written, built = {}, []
    for config, manifest in zip(configs, manifests, strict=True):
        written[config.name] = export_config(manifest, config, out, include_user=include_user, images=images)
        built.append((config, manifest, data_files(config.name, list(written[config.name]))))
    card = card_from_exports(built, table, out, replica_note=replica_note)
    storage.write_bytes(out, "README.md", with_split_sizes(card, out, written, built).encode("utf-8"))
    return written


def with_split_sizes(
    card_text: str,
    out: storage.Location,
    written: Mapping[str, Mapping[str, list[str]]],
    built: Sequence[tuple[INatFLConfig, Manifest, Any]],
    examples: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """Add ``dataset_info`` (examples and bytes per split) to the card's YAML.

    Besides informing the Hub viewer, it makes ``datasets``' cache key depend on the exported content:
    ``load_dataset(folder)`` hashes the card's configs and dataset infos, not the files, so two exports in
    folders of the same name would otherwise share one cache entry. ``examples`` (config -> split -> rows
    written) replaces the manifest's counts where rows were left out (bad images skipped).
    """
    card = DatasetCard(card_text)
    infos = []
    for config, manifest, _ in built:
        counts = (examples or {}).get(config.name, {})
        splits: list[dict[str, Any]] = [
            {
                "name": split,
                "num_bytes": sum(storage.size(out, f) for f in files),
                "num_examples": counts.get(split, manifest.split_range(split)[1]),
            }
            for split, files in written[config.name].items()
        ]
        infos.append(
            {"config_name": config.name, "splits": splits, "dataset_size": sum(s["num_bytes"] for s in splits)}
        )
    card.data["dataset_info"] = infos
    return card.content
