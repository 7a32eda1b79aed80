r"""The export layout: the one place that says what an exported or prepared Parquet file holds and where it goes.

``inat-fl export`` and ``inat-fl prepare`` write the same layout, through the same code
(:func:`inat_hf.prepare.prepare`; the export is prepare with the synchronous scheduler, manifest-only by
default). Layout of the folder (local or any fsspec URL)::

    README.md                                        the dataset card (YAML ``configs:``, ``dataset_info``)
    data/{config}/{split}-{i:05d}-of-{n:05d}.parquet  train / test / validation (:func:`file_name`)
    assets/*.png                                     figures of the card
    prepare_report.json                              rows in = written + skipped, per file (not uploaded)

**The table** (:func:`rows_table`): the builder's features (:func:`export_features`) in the schema metadata
(so that ``datasets`` decodes ``image`` and ``label``), the ``client`` pseudonym after ``client_id``, no raw
``user`` unless ``include_user`` and no ``image`` unless the files carry image bytes.

**Privacy.** Clients keep their integer ``client_id`` (the builder's) and get a pseudonym ``client``: for the
``user`` scheme ``"u" + sha256("inaturalist-fl/client/v1\\n" + user)[:16]`` of the client's first user in
sorted order over ALL its rows (every split: one name per client, :func:`client_pseudonyms`), so the
pseudonym is stable across exports and configs but does not show the name; for the other schemes
``"{scheme}-{client_id:06d}"``; ``"central"`` for the validation split.

**Row groups.** Rows are sorted by client; each file holds whole clients and, without image bytes, every row
group holds whole clients (:func:`export_row_groups`), with Parquet statistics, so one client is read by
:func:`read_client` without scanning the others. With image bytes a file is written a batch at a time
(:mod:`inat_hf.prepare.stream`): a client larger than a batch spans several row groups, found by their
statistics all the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard

from inat_hf import storage
from inat_hf.config import INatFLConfig
from inat_hf.manifest import Manifest, client_row_groups, layout
from inat_hf.schema import features_for
from inat_hf.taxonomy import RANKS

PSEUDONYM_PREFIX = b"inaturalist-fl/client/v1\n"
"""What the ``client`` pseudonym hashes before the user name (README states the formula)."""
CENTRAL = "central"
"""The ``client`` of every ``validation`` row."""


def pseudonym(user: str) -> str:
    """The documented client pseudonym of a user name: ``"u" + sha256(PSEUDONYM_PREFIX + user)[:16]``."""
    return "u" + hashlib.sha256(PSEUDONYM_PREFIX + user.encode("utf-8")).hexdigest()[:16]


def file_name(config_name: str, split: str, index: int, count: int) -> str:
    """The path of file ``index`` of ``count`` of a split, relative to the folder:
    ``data/{config}/{split}-{index:05d}-of-{count:05d}.parquet``.
    """
    return f"data/{config_name}/{split}-{index:05d}-of-{count:05d}.parquet"


def data_files(config_name: str, splits: Sequence[str]) -> dict[str, str]:
    """The card's ``data_files`` globs of one config: split -> ``data/{config}/{split}-*.parquet``."""
    return {split: f"data/{config_name}/{split}-*.parquet" for split in splits}


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


def _decoded(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


def client_pseudonyms(rows: pa.Table, config: INatFLConfig) -> dict[int, str]:
    """The ``client`` pseudonym of every client of ``rows`` (``client_id >= 0``), computed once for each.

    For the ``user`` scheme it is :func:`pseudonym` of the client's first user in sorted order (code point
    order) over the client's rows in ``rows``: pass a whole manifest's table, so that a client whose rows are
    cut into ``train`` and ``test``, or over several files, gets one name. Other schemes:
    ``"{scheme}-{client_id:06d}"``. Vectorised: no Python loop over rows.

    Parameters
    ----------
    rows : pyarrow.Table
        Manifest rows with ``client_id`` (and ``user`` for the ``user`` scheme), in any order.
    config : INatFLConfig
        The config of the rows (its ``scheme``).
    """
    client = rows["client_id"].to_numpy()
    keep = client >= 0
    ids = np.unique(client[keep])
    if config.scheme != "user":
        return {c: f"{config.scheme}-{c:06d}" for c in ids.tolist()}
    users = rows["user"].combine_chunks()
    users = users if pa.types.is_dictionary(users.type) else pc.dictionary_encode(users)
    order = pc.sort_indices(users.dictionary).to_numpy().astype(np.int64)  # UTF-8 byte order = code points
    rank = np.empty(order.size + 1, dtype=np.int64)
    rank[order] = np.arange(order.size)
    rank[-1] = order.size  # a missing user sorts last
    codes = rank[users.indices.fill_null(-1).to_numpy(zero_copy_only=False)]
    first = np.full(int(client.max(initial=-1)) + 1, order.size, dtype=np.int64)
    np.minimum.at(first, client[keep], codes[keep])
    wanted = first[ids]
    names = np.append(users.dictionary.to_numpy(zero_copy_only=False), "")[np.append(order, -1)[wanted]]
    return {c: pseudonym(str(name)) for c, name in zip(ids.tolist(), names.tolist(), strict=True)}


def _client_names(rows: pa.Table, config: INatFLConfig, split: str, pseudonyms: Mapping[int, str] | None) -> pa.Array:
    """The ``client`` of each row: one name per client run (rows are sorted by client), repeated over the run."""
    if split == "validation":
        return pa.array([CENTRAL] * rows.num_rows, type=pa.string())
    client = rows["client_id"].to_numpy()
    if client.size == 0:
        return pa.array([], type=pa.string())
    starts = np.flatnonzero(np.concatenate(([True], client[1:] != client[:-1])))
    lengths = np.diff(np.append(starts, client.size))
    names_of = client_pseudonyms(rows, config) if pseudonyms is None else pseudonyms
    try:
        names = [names_of[c] for c in client[starts].tolist()]
    except KeyError as err:
        raise ValueError(f"{config.name} {split}: no client pseudonym for client {err.args[0]}") from None
    return pa.array(names, type=pa.string()).take(pa.array(np.repeat(np.arange(starts.size), lengths)))


def rows_table(
    rows: pa.Table,
    config: INatFLConfig,
    label_names: Sequence[str],
    split: str,
    *,
    include_user: bool = False,
    image_column: pa.Array | None = None,
    pseudonyms: Mapping[int, str] | None = None,
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
    pseudonyms : mapping of int to str, optional
        The ``client`` of each client id, from :func:`client_pseudonyms` of the WHOLE manifest (as
        :func:`inat_hf.prepare.plan_files` passes them). Default: computed from ``rows``, which is right only
        when ``rows`` hold every row of their clients (a ``user`` client cut into ``train`` and ``test`` would
        otherwise get a name per split).
    """
    features = export_features(config, label_names, include_user=include_user, with_images=image_column is not None)
    data: dict[str, Any] = {}
    if image_column is not None:
        data["image"] = image_column
    for name in features:
        if name == "image":
            continue
        if name == "client":
            data[name] = _client_names(rows, config, split, pseudonyms)
        elif name in RANKS or name == "user":
            data[name] = _decoded(rows[name])
        else:
            data[name] = rows[name]
    table = pa.table(data).cast(features.arrow_schema)
    metadata = {b"huggingface": json.dumps({"info": {"features": features.to_dict()}}).encode()}
    return table.replace_schema_metadata(metadata)


def export_row_groups(table: pa.Table) -> Iterator[pa.Table]:
    """``table`` (one file's rows, no image bytes) cut into row groups of whole clients of about
    :data:`inat_hf.manifest.layout.EXPORT_ROW_GROUP_ROWS` rows, so that reading one client reads little.
    """
    for start, stop in layout.row_group_bounds(table, layout.EXPORT_ROW_GROUP_ROWS):
        yield table.slice(start, stop - start)


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


def read_client(
    url: str,
    config_name: str,
    client_id: int,
    *,
    split: str = "train",
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[pa.Table, int]:
    """One client's rows of an exported (or prepared) config, reading only the row groups that can hold it.

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
