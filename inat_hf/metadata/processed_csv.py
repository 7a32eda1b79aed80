"""The processed CSV ``training_image_info.csv`` -> the images table.

Required columns: ``image_id, user, width, height, file_name, phylum, class, order, species``. Extra
columns are ignored, except ``kingdom``, ``family``, ``genus``, ``date``, ``latitude``, ``longitude``,
``location_uncertainty``, ``license`` and ``split``, which are used when present; a pandas index column
(empty header or ``Unnamed: 0``) is dropped.

Every rank, from the file name. An official ``file_name`` lies in its category's folder, the official
``image_dir_name`` (``train/00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris/
<uuid>.jpg``: category id, kingdom, phylum, class, order, family, genus, specific epithet;
:mod:`inat_hf.metadata.image_dirs`). Where the folder follows that naming, the category id and all seven
ranks come from it, so the table is the one ``train.json`` gives: the same names, and label vocabularies in
the same official taxonomic order (those of ``train.json`` itself when the CSV holds every species, as the
full one does, or when loaded beside ``val.json``: :func:`inat_hf.metadata.load.load_metadata`).
The folder must be an official category (its id, species and kingdom as in the official list, else
``unknown_category``), and the row's own rank columns (``phylum``, ``class``, ``order``, ``species`` as a
name or a category id, and ``kingdom``, ``family``, ``genus`` when present) must agree with it: a
disagreement is never settled silently, it is a bad row (``{rank}_differs_from_folder``: an error naming
the row, or with ``on_invalid="skip"`` a dropped row counted in the report). An empty rank cell is no
disagreement.

Otherwise (a ``file_name`` in another layout), ``species`` is the scientific name (``Lumbricus
terrestris``) or the official category id. It is matched against the 10,000 official species
(:func:`inat_hf.taxonomy.official_species`), which gives the category id, the genus and the kingdom where
the CSV has no such column. The family is not derivable from a species name: without a ``family`` column it
is null (counted in the report as ``no_family``). Every row is ``split="train"`` (``"train_mini"`` for a file
whose name starts with ``train_mini``, e.g. ``train_mini_image_info.csv``) unless a ``split`` column exists.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from inat_hf import storage
from inat_hf.errors import MetadataError
from inat_hf.metadata.fields import ParseContext
from inat_hf.metadata.image_dirs import ImageDirs, parse_image_dirs
from inat_hf.metadata.image_table import images_table
from inat_hf.metadata.report import FileReport
from inat_hf.schema import Policy
from inat_hf.taxonomy import RANKS, Taxonomy, build_taxonomy, official_species

REQUIRED_COLUMNS = ("image_id", "user", "width", "height", "file_name", "phylum", "class", "order", "species")
OPTIONAL_COLUMNS = (
    "kingdom",
    "family",
    "genus",
    "date",
    "latitude",
    "longitude",
    "location_uncertainty",
    "license",
    "split",
)
_NUMERIC = {
    "image_id": pa.int64(),
    "width": pa.int32(),
    "height": pa.int32(),
    "license": pa.int32(),
    "latitude": pa.float64(),
    "longitude": pa.float64(),
    "location_uncertainty": pa.float64(),
}
_RANGES: dict[str, tuple[float, float]] = {
    "width": (1, 65_535),
    "height": (1, 65_535),
    "latitude": (-90, 90),
    "longitude": (-180, 180),
}
_REQUIRED_NUMERIC = ("image_id", "width", "height")


def read_processed_csv(
    loc: storage.Location, *, on_invalid: Policy = "error", split: str = "train"
) -> tuple[pa.Table, FileReport, Taxonomy]:
    """Read ``training_image_info.csv`` into an images table, its report and the taxonomy of its species.

    ``split`` is the value of the ``split`` column (``train_mini`` for a processed CSV of train_mini), unless
    the CSV has a ``split`` column of its own.

    Raises
    ------
    MetadataError
        Not a CSV, a required column missing, a bad required value or an unknown species (with
        ``on_invalid="error"``).
    """
    source = loc.url
    raw = _read_strings(loc, source)
    problems = ParseContext("rows", source, on_invalid)
    report = FileReport(source=source, split=split, rows_in=raw.num_rows)
    columns = {name: raw[name] for name in raw.column_names}
    for name, arrow_type in _NUMERIC.items():
        if name in columns:
            columns[name] = _to_number(columns[name], name, arrow_type, problems)
    _flag_duplicates(columns["image_id"], problems)
    for name in ("file_name", "user", "species"):
        _require_text(columns[name], name, problems)
    category_ids, entries = _lineage(columns, problems)
    taxonomy = _taxonomy(category_ids, entries, problems, source)
    renamed = {
        "id": columns["image_id"],
        "width": columns["width"],
        "height": columns["height"],
        "file_name": columns["file_name"],
        "rights_holder": columns["user"],
        **{
            name: columns.get(name, pa.nulls(raw.num_rows, _NUMERIC.get(name, pa.string())))
            for name in ("license", "date", "latitude", "longitude", "location_uncertainty")
        },
    }
    table = images_table(renamed, category_ids, taxonomy, split, problems, report)
    if "split" in columns:
        kept = pa.array(problems.mask(raw.num_rows))
        table = table.set_column(1, "split", pc.dictionary_encode(columns["split"].filter(kept)))
    return table, report, taxonomy


def _read_strings(loc: storage.Location, source: str) -> pa.Table:
    """Every column as strings (values are validated afterwards, row by row, vectorised)."""
    try:
        with storage.open_binary(loc) as stream:
            header = pacsv.open_csv(stream).schema.names
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise MetadataError(f"{source}: not a readable CSV ({err}). Fix: point to training_image_info.csv.") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise MetadataError(
            f"{source}: required column(s) {missing} missing; found {header}. "
            f"Fix: the processed CSV needs {', '.join(REQUIRED_COLUMNS)}."
        )
    wanted = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in header]
    options = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in header}, include_columns=wanted, strings_can_be_null=True
    )
    try:
        with storage.open_binary(loc) as stream:
            return pacsv.read_csv(stream, convert_options=options)
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise MetadataError(f"{source}: malformed CSV ({err}). Fix: download the file again.") from None


def _to_number(column: pa.ChunkedArray, name: str, arrow_type: pa.DataType, problems: ParseContext) -> pa.Array:
    """Parse a text column to ``arrow_type``; bad values are flagged (required) or nulled and counted.

    Integers are parsed exactly (never through a float, which would change ids above 2**53): at most 18
    digits, optionally followed by ``.0`` (pandas writes integer columns with NaN so). Floats must be finite.
    """
    text = pc.utf8_trim_whitespace(column.combine_chunks())
    integer = pa.types.is_integer(arrow_type)
    pattern = r"^[+-]?\d{1,18}(\.0*)?$" if integer else r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
    # A null cell (an empty field) is absent, never null-propagated into the masks.
    present = pc.fill_null(pc.and_kleene(pc.is_valid(text), pc.not_equal(text, "")), False)
    good = pc.fill_null(pc.and_kleene(present, pc.match_substring_regex(text, pattern)), False)
    bad = pc.and_(present, pc.invert(good)).to_numpy(zero_copy_only=False)
    chosen = pc.if_else(good, text, pa.scalar(None, pa.string()))
    if integer:
        digits = pc.replace_substring_regex(pc.replace_substring_regex(chosen, r"^\+", ""), r"\.0*$", "")
        values = digits.cast(pa.int64())
        numbers = pc.fill_null(values, 0).to_numpy(zero_copy_only=False)
        info = np.iinfo(arrow_type.to_pandas_dtype())
        low, high = _RANGES.get(name, (float(info.min), float(info.max)))
    else:
        values = chosen.cast(pa.float64())
        numbers = pc.fill_null(values, 0.0).to_numpy(zero_copy_only=False)
        low, high = _RANGES.get(name, (-math.inf, math.inf))
    parsed = good.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        bad |= parsed & (~np.isfinite(numbers) | (numbers < low) | (numbers > high))
    missing = ~present.to_numpy(zero_copy_only=False)
    if name in _REQUIRED_NUMERIC:
        _flag(np.flatnonzero(missing), f"missing_{name}", f"column {name!r} is empty", problems)
        rows = np.flatnonzero(bad)
        detail = f"column {name!r} holds {text[int(rows[0])].as_py()!r}, not a valid {arrow_type}" if rows.size else ""
        _flag(rows, f"invalid_{name}", detail, problems)
    else:
        problems.count_nulled(f"invalid_{name}", int(bad.sum()))
    mask = missing | bad
    return pa.array(np.where(mask, 0, numbers), mask=mask).cast(arrow_type)


def _flag_duplicates(ids: pa.Array, problems: ParseContext) -> None:
    """Flag every row whose image id occurs more than once (as the official JSON reader does)."""
    valid = ids.is_valid().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(valid)
    values = ids.filter(pa.array(valid)).to_numpy(zero_copy_only=False)
    order = np.argsort(values, kind="stable")
    same = values[order][1:] == values[order][:-1]
    dup = np.zeros(values.size, dtype=bool)
    dup[1:] |= same
    dup[:-1] |= same
    rows = np.sort(rows[order[dup]])
    detail = f"image id {ids[int(rows[0])].as_py()} occurs more than once" if rows.size else ""
    _flag(rows, "duplicate_image_id", detail, problems)


def _flag(rows: np.ndarray, reason: str, detail: str, problems: ParseContext) -> None:
    if rows.size:
        problems.add(rows, reason, f"row {int(rows[0]) + 1}: {detail}")


def _require_text(column: pa.ChunkedArray, name: str, problems: ParseContext) -> None:
    empty = pc.or_kleene(pc.is_null(column), pc.equal(column, "")).to_numpy(zero_copy_only=False)
    _flag(np.flatnonzero(empty), f"missing_{name}", f"column {name!r} is empty", problems)


Entries = list[tuple[np.ndarray, pa.Table]]
"""Where each row's lineage is: (a code per row, ``-1`` for none; a table ``category_id, *RANKS`` the codes index)."""


def _lineage(columns: dict, problems: ParseContext) -> tuple[np.ndarray, Entries]:
    """Official category id per row (-1 if unknown) and where each row's ranks are: its folder's, where the folder
    follows the official naming, else the ``species`` column matched against the official list.
    """
    dirs = parse_image_dirs(columns["file_name"])
    odd = np.flatnonzero(dirs.matched & ~dirs.official())
    detail = (
        f"the file name's folder {dirs.folder_of(int(odd[0]))!r} is not an official iNat 2021 category "
        "(id, species and kingdom differ from the official list)"
        if odd.size
        else ""
    )
    _flag(odd, "unknown_category", detail, problems)
    for rank in RANKS:
        if rank in columns:
            _flag_disagreements(columns[rank].combine_chunks(), rank, dirs, problems)
    category_ids = dirs.category_ids
    entries: Entries = [(dirs.codes, dirs.folders)]
    rows = np.flatnonzero(~dirs.matched)  # the rows without an official folder: today's rules
    if rows.size:
        taken = pa.array(rows)
        subset = {name: columns[name].take(taken) for name in RANKS if name in columns}
        category_ids[rows], fallback = _match_species(subset, problems, rows)
        codes = np.full(category_ids.size, -1, dtype=np.int64)
        codes[rows] = np.arange(rows.size)
        entries.append((codes, fallback))
    return category_ids, entries


def _flag_disagreements(values: pa.Array, rank: str, dirs: ImageDirs, problems: ParseContext) -> None:
    """Flag the rows whose own ``rank`` column disagrees with their folder (an empty cell never disagrees)."""
    rows = np.flatnonzero(dirs.disagreeing(values, rank))
    if rows.size:
        row = int(rows[0])
        said = dirs.folders[rank][int(dirs.codes[row])].as_py()
        _flag(
            rows,
            f"{rank}_differs_from_folder",
            f"column {rank!r} is {values[row].as_py()!r} but the file name's folder {dirs.folder_of(row)!r} "
            f"says {said!r}",
            problems,
        )


def _match_species(columns: dict, problems: ParseContext, rows: np.ndarray) -> tuple[np.ndarray, pa.Table]:
    """Official category id (-1 if unknown) and the ranks (a table ``category_id, *RANKS``) of each row of
    ``columns``, the file's ``rows``, from the ``species`` column and the official list.
    """
    official = official_species()
    species = columns["species"].combine_chunks()
    as_id = pc.fill_null(pc.match_substring_regex(species, r"^\d{1,18}$"), False)  # longer: no official id
    by_name = pc.index_in(species, value_set=official["name"]).to_numpy(zero_copy_only=False)
    ids = official["id"].to_numpy()
    by_id = pc.index_in(
        pc.if_else(as_id, species, pa.scalar(None, pa.string())).cast(pa.int64()), value_set=official["id"]
    ).to_numpy(zero_copy_only=False)
    position = np.where(np.isnan(by_name.astype(float)), by_id.astype(float), by_name.astype(float))
    valid = pc.is_valid(species).to_numpy(zero_copy_only=False)
    known = ~np.isnan(position) & valid
    position = np.where(known, position, 0).astype(np.int64)
    unknown = np.flatnonzero(~known & valid)
    detail = (
        f"species {species[int(unknown[0])].as_py()!r} is not one of the 10,000 iNat 2021 species"
        if unknown.size
        else ""
    )
    _flag(rows[unknown], "unknown_category", detail, problems)
    category_ids = np.where(known, ids[position], -1)
    taken = pa.array(position)
    lineage = {
        "kingdom": columns.get("kingdom", official["kingdom"].take(taken)),
        "phylum": columns["phylum"],
        "class": columns["class"],
        "order": columns["order"],
        "family": columns.get("family", pa.nulls(len(species), pa.string())),
        "genus": columns.get("genus", official["genus"].take(taken)),
        "species": official["name"].take(taken),
    }
    if "family" not in columns:
        problems.count_nulled("no_family", int(known.sum()))
    return category_ids, pa.table({"category_id": category_ids, **{rank: lineage[rank] for rank in RANKS}})


def _taxonomy(category_ids: np.ndarray, entries: Entries, problems: ParseContext, source: str) -> Taxonomy:
    """One taxonomy row per category (from the lineages of the kept rows), checking that every row of a species
    agrees on every rank.
    """
    keep = (category_ids >= 0) & problems.mask(len(category_ids))
    parts = []
    for codes, lineage in entries:
        used = np.unique(codes[keep & (codes >= 0)])
        parts.append(lineage.select(["category_id", *RANKS]).take(pa.array(used, type=pa.int64())))
    table = pa.concat_tables(parts)
    grouped = table.group_by("category_id", use_threads=False).aggregate([(r, "count_distinct") for r in RANKS])
    for rank in RANKS:
        conflicts = pc.greater(grouped[f"{rank}_count_distinct"], 1)
        if pc.any(conflicts).as_py():
            cid = grouped["category_id"].filter(conflicts)[0].as_py()
            raise MetadataError(
                f"{source}: species id {cid} has more than one {rank!r} across rows. "
                "Fix: every row of one species must carry the same taxonomy."
            )
    first = table.group_by("category_id", use_threads=False).aggregate([(r, "first") for r in RANKS])
    return build_taxonomy(
        first["category_id"].to_numpy(),
        {r: first[f"{r}_first"].to_pylist() for r in RANKS},
        source,
    )
