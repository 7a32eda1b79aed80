"""The official COCO-style JSON files -> an images table (one row per image, typed columns, every rank).

``train.json``, ``val.json``, ``train_mini.json``, ``public_test.json``, plain, ``.json.gz``, or
``.json.tar.gz`` as distributed. Images are joined to annotations on ``annotation.image_id == image.id`` and
to categories on ``annotation.category_id == category.id``: **by id, never by list position** (in the real
files, ids and positions need not agree). ``public_test.json`` has no annotations: its rows load with null
labels.

The images table (:data:`inat_hf.schema.IMAGE_COLUMNS`) carries a
:class:`~inat_hf.metadata.report.MetadataReport` in its schema metadata. With ``on_invalid="error"``
(default) a structural problem raises :class:`~inat_hf.errors.MetadataError` naming the file, the record and
the field; with ``"skip"`` the row is dropped and counted by reason. Bad locations and dates never drop a
row: the value becomes null and is counted.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inat_hf import storage
from inat_hf.errors import MetadataError
from inat_hf.metadata.fields import Field, ParseContext, records_to_columns, table_to_columns
from inat_hf.metadata.image_table import images_table, start_side_columns
from inat_hf.metadata.json_stream import parse_document
from inat_hf.metadata.report import FileReport
from inat_hf.schema import Policy
from inat_hf.taxonomy import Taxonomy, taxonomy_from_categories

MAX_IMAGE_SIDE = 65_535
"""Largest plausible width/height (the JPEG limit); larger claims are invalid rows."""

IMAGE_FIELDS: tuple[Field, ...] = (
    Field("id", pa.int64(), required=True),
    Field("width", pa.int32(), required=True, low=1, high=MAX_IMAGE_SIDE),
    Field("height", pa.int32(), required=True, low=1, high=MAX_IMAGE_SIDE),
    Field("file_name", pa.string(), required=True),
    Field("license", pa.int32()),
    Field("rights_holder", pa.string()),
    Field("date", pa.string()),
    Field("latitude", pa.float64(), low=-90, high=90),
    Field("longitude", pa.float64(), low=-180, high=180),
    Field("location_uncertainty", pa.float64()),
)
ANNOTATION_FIELDS: tuple[Field, ...] = (
    Field("image_id", pa.int64(), required=True),
    Field("category_id", pa.int64(), required=True),
)
_SCHEMAS = {
    "images": pa.schema([(f.key, f.type) for f in IMAGE_FIELDS]),
    "annotations": pa.schema([(f.key, f.type) for f in ANNOTATION_FIELDS]),
}
_JSON_SUFFIXES = (".json.tar.gz", ".tar.gz", ".tgz", ".json.gz", ".json")
OFFICIAL_SPLITS = ("train", "val", "train_mini", "public_test")


def split_of(file_name: str) -> str:
    """The split a metadata file holds, from its name (``train.json.tar.gz`` -> ``train``)."""
    base = file_name.rsplit("/", 1)[-1]
    for suffix in _JSON_SUFFIXES:
        if base.endswith(suffix):
            return base.removesuffix(suffix)
    return base.removesuffix(".csv")


def read_json_bytes(loc: storage.Location, source: str) -> bytes:
    """The JSON bytes of an official file, decompressing ``.gz`` and ``.tar.gz`` (first ``*.json`` member)."""
    name = loc.root.rsplit("/", 1)[-1]
    try:
        if name.endswith((".tar.gz", ".tgz")):
            with storage.open_binary(loc) as raw, tarfile.open(fileobj=raw, mode="r|gz") as archive:
                for member in archive:
                    if member.isfile() and member.name.endswith(".json"):
                        extracted = archive.extractfile(member)
                        if extracted is not None:
                            return extracted.read()
            raise MetadataError(f"{source}: the archive holds no *.json file. Fix: use train.json.tar.gz.")
        if name.endswith(".gz"):
            with storage.open_binary(loc) as raw, gzip.GzipFile(fileobj=raw) as unzipped:
                return unzipped.read()
    except (EOFError, OSError, tarfile.TarError, zlib.error) as err:
        if isinstance(err, storage.StorageError):
            raise
        raise MetadataError(
            f"{source}: cannot decompress ({type(err).__name__}: {err}); the file is truncated or not "
            "what its suffix says. Fix: download it again."
        ) from None
    return storage.read_bytes(loc)


def read_official_json(
    loc: storage.Location, *, split: str | None = None, on_invalid: Policy = "error"
) -> tuple[pa.Table, FileReport, Taxonomy]:
    """Read one official JSON file into an images table, its report and the file's taxonomy.

    Parameters
    ----------
    loc : storage.Location
        The file (``.json``, ``.json.gz`` or ``.json.tar.gz``).
    split : str, optional
        Value of the ``split`` column; by default from the file name.
    on_invalid : {"error", "skip"}

    Raises
    ------
    MetadataError
        Truncated or invalid JSON, a missing required field, duplicate ids, an unknown category or image,
        an image without annotation (with ``on_invalid="error"``).
    """
    source = loc.url
    split = split or split_of(loc.root)
    data = read_json_bytes(loc, source)
    state: dict[str, Any] = {}

    def make_sinks() -> dict[str, Any]:
        # Fresh accumulators for each parse attempt (the fast path may give up part-way).
        state.update(
            images=[],
            annotations=[],
            image_problems=ParseContext("images", source, on_invalid),
            annotation_problems=ParseContext("annotations", source, on_invalid),
        )
        return {
            "images": lambda part, first: state["images"].append(
                _to_columns(part, first, IMAGE_FIELDS, state["image_problems"])
            ),
            "annotations": lambda part, first: state["annotations"].append(
                _to_columns(part, first, ANNOTATION_FIELDS, state["annotation_problems"])
            ),
        }

    doc = parse_document(data, make_sinks, source, schemas=_SCHEMAS)
    images, annotations = state["images"], state["annotations"]
    image_problems, annotation_problems = state["image_problems"], state["annotation_problems"]
    del data
    if "images" not in doc.streamed:
        raise MetadataError(
            f"{source}: no 'images' array at the top level (keys: {sorted(doc.values)}). "
            "Fix: point to the official train.json/val.json."
        )
    categories = doc.values.get("categories")
    if not isinstance(categories, list):
        raise MetadataError(f"{source}: no 'categories' array at the top level. Fix: use the official file.")
    taxonomy = taxonomy_from_categories(categories, source)
    columns = _concat(images, IMAGE_FIELDS)
    has_annotations = "annotations" in doc.streamed and doc.streamed["annotations"] > 0
    report = FileReport(source=source, split=split, rows_in=doc.streamed["images"])
    with ThreadPoolExecutor(2, thread_name_prefix="inat-columns") as pool:
        side = start_side_columns(columns, image_problems, pool)
        category_ids = _join(
            columns,
            _concat(annotations, ANNOTATION_FIELDS),
            has_annotations,
            taxonomy,
            image_problems,
            annotation_problems,
            report,
        )
        table = images_table(columns, category_ids, taxonomy, split, image_problems, report, side)
    return table, report, taxonomy


def _to_columns(
    part: list[Any] | pa.Table, first: int, fields: Sequence[Field], problems: ParseContext
) -> dict[str, pa.Array | pa.ChunkedArray]:
    if isinstance(part, pa.Table):
        return table_to_columns(part, first, fields, problems)
    return records_to_columns(part, first, fields, problems)


def _concat(chunks: list[dict[str, pa.Array | pa.ChunkedArray]], fields: Sequence[Field]) -> dict[str, pa.ChunkedArray]:
    """One chunked array per field (no copy of the slices)."""
    return {f.key: pa.chunked_array(_pieces(c[f.key] for c in chunks), type=f.type) for f in fields}


def _pieces(arrays: Iterable[pa.Array | pa.ChunkedArray]) -> list[pa.Array]:
    return [piece for array in arrays for piece in (array.chunks if isinstance(array, pa.ChunkedArray) else [array])]


def _int_values(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """An integer column as int64 values (``-1`` where null) and its validity mask.

    (``to_numpy`` of a column with nulls gives floats, which lose large ids and cannot index.)
    """
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    values = pc.fill_null(column, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return values, valid


def _is_dense(ids: np.ndarray) -> bool:
    """Whether non-negative ids are compact enough for a direct lookup table (the official ids are)."""
    return bool(ids.size) and int(ids.min()) >= 0 and int(ids.max()) < 4 * ids.size + 1024


def _duplicates(values: np.ndarray) -> np.ndarray:
    """Positions of every value that occurs more than once."""
    if _is_dense(values):
        counts = np.bincount(values)
        return np.flatnonzero(counts[values] > 1)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    same = ordered[1:] == ordered[:-1]
    dup = np.zeros(len(values), dtype=bool)
    dup[1:] |= same
    dup[:-1] |= same
    return np.sort(order[dup])


def _rows_of(ids: np.ndarray, rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The row of each query id among (``ids``, ``rows``) pairs; ``-1`` where the id is unknown."""
    out = np.full(queries.shape, -1, dtype=np.int64)
    if ids.size == 0:
        return out
    if _is_dense(ids):
        table = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
        table[ids] = rows
        inside = (queries >= 0) & (queries < table.size)
        out[inside] = table[queries[inside]]
        return out
    order = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids[order], queries), ids.size - 1)
    found = ids[order][pos] == queries
    out[found] = rows[order][pos[found]]
    return out


def _join(
    images: dict[str, pa.Array],
    annotations: dict[str, pa.Array],
    has_annotations: bool,
    taxonomy: Taxonomy,
    image_problems: ParseContext,
    annotation_problems: ParseContext,
    report: FileReport,
) -> np.ndarray:
    """Category id per image row (``-1`` = none), joining by id; problems go to the row reasons."""
    image_ids, valid_image = _int_values(images["id"])
    dup = _duplicates(image_ids[valid_image])
    if dup.size:
        rows = np.flatnonzero(valid_image)[dup]
        image_problems.add(
            rows,
            "duplicate_image_id",
            f"image id {int(image_ids[rows[0]])} occurs more than once (images[{int(rows[0])}])",
        )
    category_of_row = np.full(len(image_ids), -1, dtype=np.int64)
    if not has_annotations:
        return category_of_row
    ann_image, image_id_valid = _int_values(annotations["image_id"])
    ann_category, category_id_valid = _int_values(annotations["category_id"])
    ann_valid = image_id_valid & category_id_valid & annotation_problems.mask(len(ann_image))
    row_of_annotation = _rows_of(
        image_ids[valid_image], np.flatnonzero(valid_image), np.where(ann_valid, ann_image, -1)
    )
    found = ann_valid & (row_of_annotation >= 0)
    unknown = np.flatnonzero(ann_valid & ~found)
    if unknown.size:
        if annotation_problems.on_invalid == "error":
            i = int(unknown[0])
            raise MetadataError(
                f"{report.source}: annotations[{i}].image_id = {int(ann_image[i])} is not the id of any image "
                f"({unknown.size} such annotation(s)). Fix the file, or load with on_invalid='skip'."
            )
        report.annotations_skipped["unknown_image"] = int(unknown.size)
    report.annotations_skipped.update(annotation_problems.counts())
    ann_rows = np.flatnonzero(found)
    image_rows = row_of_annotation[ann_rows]
    per_image = np.bincount(image_rows, minlength=len(image_ids))
    many = np.flatnonzero(per_image > 1)
    image_problems.add(
        many,
        "multiple_annotations",
        f"image id {int(image_ids[many[0]])} has {int(per_image[many[0]])} annotations" if many.size else "",
    )
    none = np.flatnonzero((per_image == 0) & valid_image)
    image_problems.add(
        none,
        "no_annotation",
        f"image id {int(image_ids[none[0]])} (images[{int(none[0])}]) has no annotation" if none.size else "",
    )
    category_of_row[image_rows] = ann_category[ann_rows]
    unknown_category = np.flatnonzero((taxonomy.rows_of(category_of_row) < 0) & (category_of_row >= 0))
    if unknown_category.size:
        row = int(unknown_category[0])
        image_problems.add(
            unknown_category,
            "unknown_category",
            f"image id {int(image_ids[row])} is annotated with category_id {int(category_of_row[row])}, "
            f"which is not among the {taxonomy.num_categories} categories of the file",
        )
    return category_of_row
