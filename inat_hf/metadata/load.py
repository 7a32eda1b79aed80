"""``load_metadata``: a metadata file or data folder, at any fsspec URL, into one images table.

A URL that ends in ``.json``, ``.gz``, ``.tgz`` or ``.csv`` is one file; any other URL is a data folder
holding the official layout (``train.json`` and ``val.json``, each possibly compressed) or the processed CSV.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from inat_hf import storage
from inat_hf.errors import MetadataError
from inat_hf.metadata.official_json import OFFICIAL_SPLITS, read_official_json
from inat_hf.metadata.pool import bulk_allocations
from inat_hf.metadata.processed_csv import read_processed_csv
from inat_hf.metadata.report import MetadataReport, attach_report
from inat_hf.schema import TRAIN_SPLITS, Policy, check_policy
from inat_hf.taxonomy import Taxonomy, merged_vocabularies


def is_file_url(url: str) -> bool:
    """Whether ``url`` (or a Location's root) names one metadata file (by suffix) rather than a data folder."""
    path = url.split("?", 1)[0].rstrip("/")
    return path.endswith((".json", ".gz", ".tgz", ".csv"))


PROCESSED_CSV = {"train": "training_image_info.csv", "train_mini": "train_mini_image_info.csv"}
"""The processed CSV that stands for a split's official JSON in a data folder."""


def _candidates(split: str) -> list[str]:
    names = [f"{split}{suffix}" for suffix in (".json", ".json.gz", ".json.tar.gz")]
    return [*names, PROCESSED_CSV[split]] if split in PROCESSED_CSV else names


def csv_split(name: str) -> str:
    """The split a processed CSV holds, from its base name: ``train_mini`` if it starts so, else ``train``."""
    return "train_mini" if name.rsplit("/", 1)[-1].startswith("train_mini") else "train"


def _pick(
    loc: storage.Location, present: Mapping[str, str], splits: Sequence[str] | None, train_split: str = "train"
) -> list[str]:
    """The metadata file of each split among the names ``present`` in the folder ``loc``."""
    if train_split not in TRAIN_SPLITS:
        raise ValueError(f"train_split={train_split!r} is invalid; choose from {', '.join(TRAIN_SPLITS)}")
    wanted = tuple(splits) if splits is not None else (train_split, "val")
    unknown = [s for s in wanted if s not in OFFICIAL_SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; choose from {', '.join(OFFICIAL_SPLITS)}")
    found = []
    for split in wanted:
        candidates = _candidates(split)
        match = next((c for c in candidates if c in present), None)
        if match is not None:
            found.append(match)
        elif splits is not None or split == train_split:
            raise MetadataError(
                f"{loc.url}: no metadata for split {split!r}: looked for {', '.join(candidates)}. "
                f"Fix: point data_dir to the folder holding the official {split}.json/val.json "
                f"(or {PROCESSED_CSV.get(split, 'training_image_info.csv')}), or pass the file's own URL."
            )
    return found


def find_metadata_files(
    loc: storage.Location, splits: Sequence[str] | None = None, *, train_split: str = "train"
) -> list[str]:
    """The metadata files of a data folder, relative to it, one per split (one listing of the folder).

    For each split (default: ``train_split`` and, when present, ``val``) the first of ``{split}.json``,
    ``{split}.json.gz``, ``{split}.json.tar.gz`` that exists; for ``train``, ``training_image_info.csv``
    (for ``train_mini``, ``train_mini_image_info.csv``) when no official file is there. A Location that
    names one file gives ``[""]``.

    Raises
    ------
    MetadataError
        A split asked for by name, or ``train`` by default, has no file.
    """
    if is_file_url(loc.root):
        return [""]
    return _pick(loc, storage.list_names(loc), splits, train_split)


def metadata_tokens(
    loc: storage.Location, splits: Sequence[str] | None = None, *, train_split: str = "train"
) -> list[tuple[str, str]]:
    """(base name, :func:`inat_hf.storage.file_token`) of each metadata file that :func:`find_metadata_files`
    picks, from the same single listing: what identifies a version of the metadata, cheaply. A picked file
    whose listing gives only its size (no ETag, no modification time) is asked for its token alone, which
    hashes its content if storage has no version for it either: never a size alone.
    """
    if is_file_url(loc.root):
        return [(loc.root.rsplit("/", 1)[-1], storage.file_token(loc))]
    present = storage.list_names(loc)
    picked = _pick(loc, present, splits, train_split)
    return [(n, present[n] if storage.has_version(present[n]) else storage.file_token(loc, n)) for n in picked]


def load_metadata(
    url: str | storage.Location,
    storage_options: Mapping[str, Any] | None = None,
    *,
    splits: Sequence[str] | None = None,
    on_invalid: Policy = "error",
    train_split: str = "train",
) -> pa.Table:
    """Load iNat 2021 metadata into one images table.

    Parameters
    ----------
    url : str
        A metadata file (``train.json``, ``val.json.gz``, ``train.json.tar.gz``, ``public_test.json``,
        ``training_image_info.csv``) or a data folder holding them; any fsspec URL (``az://``, ``abfs://``,
        local path, ``memory://``, ...), or a :class:`~inat_hf.storage.Location` already resolved.
    storage_options : dict, optional
        Passed to fsspec (credentials: ``connection_string``, ``account_name`` + ``sas_token``, ...).
        Without them adlfs reads the ``AZURE_STORAGE_*`` environment variables.
    splits : sequence of str, optional
        For a data folder: which splits to load (default ``train_split`` and ``val`` when present).
    train_split : {"train", "train_mini"}
        For a data folder, without ``splits``: the train pool, ``train.json`` (or ``training_image_info.csv``)
        or ``train_mini.json`` (or ``train_mini_image_info.csv``).
    on_invalid : {"error", "skip"}
        What a structurally bad record does: raise :class:`MetadataError`, or drop the row and count it.

    Returns
    -------
    pyarrow.Table
        Columns :data:`inat_hf.schema.IMAGE_COLUMNS`, one row per image; the load's report is in the schema metadata
        (:func:`inat_hf.metadata.metadata_report`). Each rank's vocabulary is that of all the files' categories, in
        official taxonomic order (a processed CSV of some species beside ``val.json`` gets ``train.json``'s).
    """
    on_invalid = check_policy("on_invalid", on_invalid)
    loc = url if isinstance(url, storage.Location) else storage.resolve(url, storage_options)
    files = find_metadata_files(loc, splits, train_split=train_split)
    tables, taxonomies, report = [], [], MetadataReport()
    with bulk_allocations():  # the system allocator: no huge-page compaction stalls (inat_hf.metadata.pool)
        for relative in files:
            file_loc = loc.child(relative) if relative else loc
            if file_loc.root.endswith(".csv"):
                read = read_processed_csv(file_loc, on_invalid=on_invalid, split=csv_split(file_loc.root))
            else:
                read = read_official_json(file_loc, on_invalid=on_invalid)
            tables.append(read[0])
            report.files.append(read[1])
            taxonomies.append(read[2])
        return attach_report(_combine(tables, taxonomies), report)


def _combine(tables: list[pa.Table], taxonomies: list[Taxonomy]) -> pa.Table:
    """One table from the files' tables, every rank encoded with the vocabulary of all the files' categories in
    official taxonomic order (:func:`inat_hf.taxonomy.merged_vocabularies`).
    """
    if len(tables) == 1:
        return tables[0]
    vocabularies = {rank: pa.array(names, pa.string()) for rank, names in merged_vocabularies(taxonomies).items()}
    recoded = []
    for table in tables:
        for rank, names in vocabularies.items():
            column = table[rank].combine_chunks()  # a dictionary array: re-point its indices into ``names``
            moved = pc.index_in(column.dictionary, value_set=names).take(column.indices)
            table = table.set_column(
                table.schema.get_field_index(rank), rank, pa.DictionaryArray.from_arrays(moved, names)
            )
        recoded.append(table)
    return pa.concat_tables(recoded).unify_dictionaries()
