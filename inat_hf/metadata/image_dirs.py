"""The category id and the whole taxonomy written in the official image folder names.

Every official ``file_name`` is ``{split}/{image_dir_name}/{uuid}.jpg``, and the official ``image_dir_name``
is ``{category id, 5 digits}_{kingdom}_{phylum}_{class}_{order}_{family}_{genus}_{specific epithet}``
(``train/00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris/<uuid>.jpg``). The
species name is ``"{genus} {specific epithet}"`` (two words, as in the official list, ``Malus ×domestica``
included).

Vectorised for millions of rows: :func:`parse_image_dirs` cuts each ``file_name``'s folder off once and
dictionary-encodes it, so the naming is matched, and every rank read, once per distinct folder (about 10,000
for the whole train set), never per row; rows carry only the code of their folder. A ``file_name`` whose
folder does not follow the naming is simply not matched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inat_hf.taxonomy import RANKS, official_species

_GROUPS = ("kingdom", "phylum", "klass", "order", "family", "genus", "epithet")
_PATTERN = r"(?:^|/)(?P<category_id>\d{5})" + "".join(f"_(?P<{g}>[^_/]+)" for g in _GROUPS) + "$"
"""An official ``image_dir_name`` at the end of a directory path."""
_SLICE_ROWS = 262_144


@dataclass(frozen=True)
class ImageDirs:
    """What the folder names of a ``file_name`` column say.

    Attributes
    ----------
    codes : numpy.ndarray of int64, shape (N,)
        Each row's folder, a row of :attr:`folders` (``-1``: the folder does not follow the official naming).
    folders : pyarrow.Table
        One row per distinct official-looking folder: ``folder`` (its name), ``category_id`` (int64) and every
        rank of :data:`~inat_hf.taxonomy.RANKS` (``species`` = genus and epithet).
    """

    codes: np.ndarray
    folders: pa.Table

    @property
    def matched(self) -> np.ndarray:
        """Rows whose folder follows the official naming."""
        return self.codes >= 0

    @property
    def category_ids(self) -> np.ndarray:
        """Each row's category id from its folder (``-1`` where not matched)."""
        ids = self.folders["category_id"].to_numpy()
        return np.where(self.matched, ids[np.maximum(self.codes, 0)] if ids.size else -1, -1)

    def folder_of(self, row: int) -> str:
        """The folder name of one matched row (for messages)."""
        return str(self.folders["folder"][int(self.codes[row])].as_py())

    def official(self) -> np.ndarray:
        """Per row: the folder is an official iNat 2021 category, its id, species name and kingdom those of the
        official list (:func:`~inat_hf.taxonomy.official_species`); False where not matched.
        """
        table = official_species()
        ids, cids = table["id"].to_numpy(), self.folders["category_id"].to_numpy()
        position = np.minimum(np.searchsorted(ids, cids), ids.size - 1)
        good = ids[position] == cids
        for rank, column in (("species", "name"), ("kingdom", "kingdom")):
            same = pc.equal(self.folders[rank], table[column].take(pa.array(position)))
            good &= pc.fill_null(same, False).to_numpy(zero_copy_only=False)
        return self.matched & (good[np.maximum(self.codes, 0)] if good.size else False)

    def disagreeing(self, values: pa.Array, rank: str) -> np.ndarray:
        """Per row: ``values`` (a rank column of the same rows) holds another name than the folder's ``rank``.

        An empty or null cell never disagrees; at the ``species`` rank a category id equal to the folder's
        agrees too. Compared once per distinct (folder, value) pair.
        """
        encoded = values.dictionary_encode()
        cells = encoded.indices.to_numpy(zero_copy_only=False)  # null cells: not compared
        rows = self.matched & encoded.indices.is_valid().to_numpy(zero_copy_only=False)
        out = np.zeros(len(values), dtype=bool)
        if not rows.any():
            return out
        width = len(encoded.dictionary)
        pairs, inverse = np.unique(self.codes[rows] * width + cells[rows].astype(np.int64), return_inverse=True)
        folder, cell = pa.array(pairs // width), encoded.dictionary.take(pa.array(pairs % width))
        differs = pc.and_(pc.not_equal(cell, self.folders[rank].take(folder)), pc.not_equal(cell, ""))
        differs = pc.fill_null(differs, False).to_numpy(zero_copy_only=False)
        if rank == "species":  # the species column may hold the category id instead of the name
            digits = pc.fill_null(pc.match_substring_regex(cell, r"^\d{1,18}$"), False)
            ids = pc.if_else(digits, cell, pa.scalar("-2")).cast(pa.int64()).to_numpy(zero_copy_only=False)
            differs &= ids != self.folders["category_id"].to_numpy()[pairs // width]
        out[rows] = differs[inverse.reshape(-1)]
        return out


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
    slices = []  # slice by slice: only one slice's directory strings exist at a time
    for start in range(0, len(names), _SLICE_ROWS):
        part = names.slice(start, _SLICE_ROWS)
        in_folder = pc.fill_null(pc.match_substring(part, "/"), False)
        directory = pc.replace_substring_regex(part, r"/[^/]*$", "")
        slices.append(pc.if_else(in_folder, directory, pa.scalar(None, pa.string())).dictionary_encode())
    encoded = pa.chunked_array(slices, pa.dictionary(pa.int32(), pa.string())).unify_dictionaries().combine_chunks()
    parts = pc.extract_regex(encoded.dictionary, _PATTERN)  # once per distinct directory
    good = parts.is_valid().to_numpy(zero_copy_only=False)
    renumber = np.where(good, np.cumsum(good) - 1, -1)
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    codes = np.where(codes >= 0, renumber[np.maximum(codes, 0)] if renumber.size else -1, -1).astype(np.int64)
    fields = {name: parts.field(name).filter(pa.array(good)) for name in ("category_id", *_GROUPS)}
    folders = pa.table(
        {
            "folder": pc.binary_join_element_wise(*(fields[g] for g in ("category_id", *_GROUPS)), "_"),
            "category_id": fields["category_id"].cast(pa.int64()),
            **{rank: fields[group] for rank, group in zip(RANKS[:-1], _GROUPS[:-1], strict=True)},
            "species": pc.binary_join_element_wise(fields["genus"], fields["epithet"], " "),
        }
    )
    return ImageDirs(codes, folders)
