"""The category id and the whole taxonomy written in the official image folder names.

Every official ``file_name`` is ``{split}/{image_dir_name}/{uuid}.jpg``, and the official ``image_dir_name``
is ``{category id, 5 digits}_{kingdom}_{phylum}_{class}_{order}_{family}_{genus}_{specific epithet}``
(``train/00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris/<uuid>.jpg``). The
species name is ``"{genus} {specific epithet}"`` (two words, as in the official list, ``Malus ×domestica``
included). :func:`parse_image_dirs` reads this from a whole column at once (one regular expression, no
Python loop per row); a ``file_name`` whose folder does not follow the naming is simply not matched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inat_hf.taxonomy import RANKS, official_species

_GROUPS = ("kingdom", "phylum", "klass", "order", "family", "genus", "epithet")
_PATTERN = r"(?:^|/)(?P<category_id>\d{5})" + "".join(f"_(?P<{g}>[^_/]+)" for g in _GROUPS) + r"/[^/]+$"
"""The folder holding the file (any prefix before it), then the file's own name."""


@dataclass(frozen=True)
class ImageDirs:
    """What the folder names of a ``file_name`` column say, row by row.

    Attributes
    ----------
    matched : numpy.ndarray of bool, shape (N,)
        The folder follows the official naming.
    category_ids : numpy.ndarray of int64, shape (N,)
        The folder's category id (``-1`` where not matched).
    ranks : dict of str to pyarrow.Array
        Every rank of :data:`~inat_hf.taxonomy.RANKS` (``species`` = genus and epithet), null where not matched.
    folders : pyarrow.Array
        The folder name itself (null where not matched), for messages.
    """

    matched: np.ndarray
    category_ids: np.ndarray
    ranks: dict[str, pa.Array]
    folders: pa.Array

    def official(self) -> np.ndarray:
        """Matched rows whose folder is an official iNat 2021 category: its id, species name and kingdom are the
        official list's (:func:`~inat_hf.taxonomy.official_species`).
        """
        table = official_species()
        ids = table["id"].to_numpy()
        position = np.searchsorted(ids, self.category_ids)
        position = np.minimum(position, ids.size - 1)
        known = self.matched & (ids[position] == self.category_ids)
        taken = pa.array(position)
        same = [
            pc.fill_null(pc.equal(self.ranks[rank], table[column].take(taken)), False).to_numpy(zero_copy_only=False)
            for rank, column in (("species", "name"), ("kingdom", "kingdom"))
        ]
        return known & same[0] & same[1]


def parse_image_dirs(file_names: pa.Array | pa.ChunkedArray) -> ImageDirs:
    """Read the category id and every rank from the folder of each ``file_name`` (vectorised).

    Parameters
    ----------
    file_names : pyarrow.Array of string, shape (N,)
        ``file_name`` values (``train/<image_dir_name>/<uuid>.jpg``; any prefix before the folder works).

    Returns
    -------
    ImageDirs
    """
    names = file_names.combine_chunks() if isinstance(file_names, pa.ChunkedArray) else file_names
    parts = pc.extract_regex(names, _PATTERN)
    matched = pc.fill_null(parts.is_valid(), False).to_numpy(zero_copy_only=False)
    mask = pa.array(~matched)

    def field(name: str) -> pa.Array:
        return pc.if_else(mask, pa.scalar(None, pa.string()), parts.field(name))

    digits = pc.if_else(mask, pa.scalar("-1"), parts.field("category_id"))
    ranks = {rank: field(group) for rank, group in zip(RANKS[:-1], _GROUPS[:-1], strict=True)}
    ranks["species"] = pc.binary_join_element_wise(ranks["genus"], field("epithet"), " ")
    folders = pc.binary_join_element_wise(field("category_id"), *(field(g) for g in _GROUPS), "_")
    return ImageDirs(matched, digits.cast(pa.int64()).to_numpy(zero_copy_only=False), ranks, folders)
