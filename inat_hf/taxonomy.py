"""The taxonomy of iNat 2021: ranks, per-rank label vocabularies, species to every rank.

A :class:`Taxonomy` is built from the official category records (``categories`` in ``train.json`` /
``val.json``), one row per category id.

Label order (stable and documented)
-----------------------------------
At every rank, label ids follow the **official taxonomic order**: a taxon's label id is its position when
the taxa of that rank are sorted by the smallest category id they contain. Since iNat 2021 assigns category
ids in the sorted order of ``image_dir_name`` (``Kingdom_Phylum_Class_Order_Family_Genus_epithet``), this is
the order of the official species list, every taxon is a contiguous run of ids, and at the species rank the
label id **is** the official category id when all 10,000 categories are present. Kingdom labels are
``Animalia=0, Fungi=1, Plantae=2``.

Names are compared as exact strings. The official counts (3 kingdoms, 13 phyla, 51 classes, 273 orders,
1,103 families, 4,884 genera, 10,000 species) count distinct names, so a genus name used in two kingdoms
(``Iris`` the plant and ``Iris`` the mantis) is one genus label, as in those counts.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from inat_hf.errors import MetadataError

RANKS: tuple[str, ...] = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
"""The seven taxonomic ranks, coarse to fine. ``species`` is the category's scientific ``name``."""

KINGDOM_ID_RANGES: Mapping[str, tuple[int, int]] = {
    "Animalia": (0, 5387),
    "Fungi": (5388, 5728),
    "Plantae": (5729, 9999),
}
"""Official category id range (inclusive) of each kingdom."""

# The category field that holds each rank's name.
_RANK_FIELD: Mapping[str, str] = {rank: ("name" if rank == "species" else rank) for rank in RANKS}


def check_rank(rank: str) -> str:
    """Return ``rank`` if it is one of :data:`RANKS`, else raise ``ValueError`` naming the choices."""
    if rank not in RANKS:
        raise ValueError(f"unknown rank {rank!r}; choose from {', '.join(RANKS)}")
    return rank


@dataclass(frozen=True)
class Taxonomy:
    """Categories with every rank, and the label vocabulary of each rank.

    Attributes
    ----------
    category_ids : numpy.ndarray of int64, shape (C,)
        Category ids, sorted ascending.
    names : dict of str to tuple of str
        ``names[rank][label]`` is the name of label id ``label`` at ``rank`` (the ClassLabel names).
    category_labels : dict of str to numpy.ndarray of int32, shape (C,)
        ``category_labels[rank][i]`` is the label id at ``rank`` of category ``category_ids[i]``.
    """

    category_ids: np.ndarray
    names: dict[str, tuple[str, ...]]
    category_labels: dict[str, np.ndarray]
    extra: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def num_categories(self) -> int:
        """Number of categories (species)."""
        return int(self.category_ids.shape[0])

    def num_classes(self, rank: str) -> int:
        """Number of distinct labels at ``rank``."""
        return len(self.names[check_rank(rank)])

    def label_index(self, rank: str) -> dict[str, int]:
        """Map each name at ``rank`` to its label id."""
        return {name: i for i, name in enumerate(self.names[check_rank(rank)])}

    def rows_of(self, category_ids: np.ndarray) -> np.ndarray:
        """Row position of each category id (``-1`` where the id is unknown).

        Parameters
        ----------
        category_ids : numpy.ndarray of int, shape (N,)

        Returns
        -------
        numpy.ndarray of int64, shape (N,)
        """
        ids = np.asarray(category_ids, dtype=np.int64)
        if self.num_categories == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.searchsorted(self.category_ids, ids)
        pos_clipped = np.minimum(pos, self.num_categories - 1)
        found = self.category_ids[pos_clipped] == ids
        return np.where(found, pos_clipped, -1).astype(np.int64)

    def lineage(self, species: str) -> dict[str, str | None]:
        """Every rank's name for one species name (``None`` where the source lacks that rank).

        Raises
        ------
        ValueError
            ``species`` is not one of the categories.
        """
        labels = self.label_index("species")
        if species not in labels:
            raise ValueError(f"unknown species {species!r}: not among the {self.num_categories} categories")
        row = int(np.flatnonzero(self.category_labels["species"] == labels[species])[0])
        return {rank: self._name(rank, int(self.category_labels[rank][row])) for rank in RANKS}

    def _name(self, rank: str, label: int) -> str | None:
        return self.names[rank][label] if label >= 0 else None

    def rank_array(self, rank: str, category_rows: np.ndarray) -> pa.DictionaryArray:
        """Names at ``rank`` for rows given as category positions (``-1``, or an unknown rank, gives null).

        Parameters
        ----------
        rank : str
        category_rows : numpy.ndarray of int64, shape (N,)
            Output of :meth:`rows_of`.

        Returns
        -------
        pyarrow.DictionaryArray, length N, dictionary = ``names[rank]`` in label order
        """
        rows = np.asarray(category_rows, dtype=np.int64)
        per_category = self.category_labels[check_rank(rank)]
        labels = per_category[np.maximum(rows, 0)] if per_category.size else np.zeros(rows.shape, np.int32)
        missing = (rows < 0) | (labels < 0)
        indices = pa.array(np.where(missing, 0, labels).astype(np.int32), mask=missing, type=pa.int32())
        return pa.DictionaryArray.from_arrays(indices, pa.array(self.names[rank], type=pa.string()))


def _labels_in_taxonomic_order(values: Sequence[str | None]) -> tuple[tuple[str, ...], np.ndarray]:
    """Vocabulary in order of first appearance (nulls skipped), and each value's label id (-1 for null)."""
    first: dict[str, int] = {}
    for value in values:
        if value is not None:
            first.setdefault(value, len(first))
    labels = np.fromiter((first.get(v, -1) for v in values), dtype=np.int32, count=len(values))  # type: ignore[arg-type]
    return tuple(first), labels


def build_taxonomy(
    category_ids: np.ndarray,
    rank_names: Mapping[str, Sequence[str | None]],
    source: str,
    **extra: Sequence[Any],
) -> Taxonomy:
    """Build a :class:`Taxonomy` from category ids and each rank's name per category.

    Parameters
    ----------
    category_ids : numpy.ndarray of int64, shape (C,)
        Unique category ids, in any order.
    rank_names : dict of str to sequence of (str or None), each of length C
        Every rank of :data:`RANKS`; ``None`` where a source does not know that rank for that category
        (its label is then ``-1`` and its images get a null name at that rank).
    source : str
        The file the categories come from (redacted URL), for error messages.
    **extra : sequence, each of length C
        Further per-category fields to keep (``supercategory``, ``common_name``, ...).
    """
    ids = np.asarray(category_ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if dup.size:
        raise MetadataError(
            f"{source}: {dup.size} duplicate category id(s), first {int(sorted_ids[dup[0]])}; "
            "category ids must be unique. Fix: use the official file, or remove the duplicates."
        )
    names: dict[str, tuple[str, ...]] = {}
    labels: dict[str, np.ndarray] = {}
    for rank in RANKS:
        column = rank_names[rank]
        names[rank], labels[rank] = _labels_in_taxonomic_order([column[j] for j in order])
    extra_sorted = {key: tuple(values[j] for j in order) for key, values in extra.items()}
    return Taxonomy(category_ids=sorted_ids, names=names, category_labels=labels, extra=extra_sorted)


def merged_vocabularies(taxonomies: Sequence[Taxonomy]) -> dict[str, tuple[str, ...]]:
    """Each rank's label vocabulary over several taxonomies (the files of one load), in official taxonomic order.

    A taxon's position is its rank when the taxa are sorted by the smallest category id they contain in any of
    the taxonomies, as within one (:func:`build_taxonomy`); so a file that lists only some species (a processed
    CSV of a subset) beside one that lists all of them (``val.json``) gets the labels of the complete list.
    """
    vocabularies: dict[str, tuple[str, ...]] = {}
    for rank in RANKS:
        first: dict[str, int] = {}
        for taxonomy in taxonomies:
            labels = taxonomy.category_labels[rank]
            valid = labels >= 0
            present, index = np.unique(labels[valid], return_index=True)  # ids are sorted: the first is the smallest
            for label, cid in zip(present.tolist(), taxonomy.category_ids[valid][index].tolist(), strict=True):
                name = taxonomy.names[rank][label]
                first[name] = min(first.get(name, cid), cid)
        vocabularies[rank] = tuple(sorted(first, key=lambda name: (first[name], name)))
    return vocabularies


def taxonomy_from_categories(records: Sequence[Any], source: str) -> Taxonomy:
    """Build a :class:`Taxonomy` from official category records.

    Parameters
    ----------
    records : sequence of dict
        The ``categories`` list of an official iNat 2021 JSON file: each record has ``id``, ``name`` and
        ``kingdom`` ... ``genus``; ``supercategory``, ``common_name`` and ``image_dir_name`` are kept.
    source : str
        The file the records come from (redacted URL), for error messages.

    Raises
    ------
    MetadataError
        A record that is not an object, a missing or non-string rank field, a non-integer, negative or
        duplicate id.
    """
    ids = np.empty(len(records), dtype=np.int64)
    columns: dict[str, list[str | None]] = {rank: [] for rank in RANKS}
    extra: dict[str, list[Any]] = {"supercategory": [], "common_name": [], "image_dir_name": []}
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise MetadataError(f"{source}: categories[{i}] is {type(record).__name__}, not an object")
        cid = record.get("id")
        if isinstance(cid, bool) or not isinstance(cid, int) or not 0 <= cid < 2**63:
            raise MetadataError(
                f"{source}: categories[{i}].id is {_short(cid)}; every category needs an integer 'id' >= 0. "
                "Fix: use the official train.json/val.json."
            )
        ids[i] = cid
        for rank in RANKS:
            value = record.get(_RANK_FIELD[rank])
            if not isinstance(value, str) or not value:
                raise MetadataError(
                    f"{source}: categories[{i}] (id {cid}) field {_RANK_FIELD[rank]!r} is {_short(value)}; "
                    f"every category needs a non-empty {_RANK_FIELD[rank]!r} string. "
                    "Fix: use the official train.json/val.json."
                )
            columns[rank].append(value)
        for key, values in extra.items():
            values.append(record.get(key))
    return build_taxonomy(ids, columns, source, **extra)


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut to ``limit`` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def official_species() -> pa.Table:
    """The 10,000 official species, in category-id order (packaged data, Apache-2.0, see ``data/NOTICE``).

    Returns
    -------
    pyarrow.Table
        Columns ``id`` (int64, the official category id), ``name``, ``genus``, ``specific_epithet`` and
        ``kingdom`` (from :data:`KINGDOM_ID_RANGES`).
    """
    raw = resources.files("inat_hf").joinpath("data/inat2021_species.csv").read_bytes()
    table = pacsv.read_csv(
        io.BytesIO(raw),
        convert_options=pacsv.ConvertOptions(
            column_types={"id": pa.int64(), "name": pa.string(), "genus": pa.string()}
        ),
    )
    ids = table["id"].to_numpy()
    kingdoms = np.full(ids.shape, "", dtype=object)
    for kingdom, (low, high) in KINGDOM_ID_RANGES.items():
        kingdoms[(ids >= low) & (ids <= high)] = kingdom
    return table.append_column("kingdom", pa.array(kingdoms, type=pa.string()))
