"""The per-user table of the processed data (``images_and_categories_per_users.csv``).

One row per user (``rights_holder``) of the ``train`` split: ``user, images, phyla, classes, orders,
species`` (images and distinct phyla, classes, orders and species), sorted by user.
:func:`user_table` computes it from an images table, :func:`write_user_table` / :func:`read_user_table`
store and load it as CSV through :mod:`inat_hf.storage`, and :func:`cross_check_user_table` compares a
stored table with the images table it should describe.

Reading tolerates a pandas index column (empty header or ``Unnamed: 0``) and the usual spellings of the
column names: case, spaces, a ``num_``/``n_``/``nb_``/``number_of_``/``count_`` prefix or ``_count`` suffix,
and singular or plural (``num_images``, ``n_images``, ``phylum``, ``Number of classes``,
``rights_holder``...; ``categories`` means species, as in iNat's own files). Rows with no user are not
counted (they belong to no client).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from inat_hf import storage
from inat_hf.errors import MetadataError
from inat_hf.metadata.image_table import train_pool

USER_COLUMNS = ("user", "images", "phyla", "classes", "orders", "species")
COUNT_COLUMNS = USER_COLUMNS[1:]
_RANK_OF = {"phyla": "phylum", "classes": "class", "orders": "order", "species": "species"}
_ALIASES = {
    "user": ("user", "users", "rights_holder", "user_id", "username", "user_name", "observer"),
    "images": ("images", "image", "imgs", "img", "image_ids", "photos"),
    "phyla": ("phyla", "phylum", "phylums"),
    "classes": ("classes", "class"),
    "orders": ("orders", "order"),
    "species": ("species", "specie", "categories", "category", "category_id", "category_ids"),
}
_PREFIXES = ("number_of_", "num_", "nb_", "nr_", "n_", "count_", "distinct_", "unique_", "total_")
_SUFFIXES = ("_count", "_counts", "_num", "_total")


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Each value as the rank of its name among the distinct names (``-1`` for null), and those names."""
    array = column.combine_chunks()
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    names, rank = np.unique(array.dictionary.cast(pa.string()).to_numpy(zero_copy_only=False), return_inverse=True)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    indices = array.indices.fill_null(0).to_numpy(zero_copy_only=False)
    return np.where(valid, rank.reshape(-1)[indices], -1).astype(np.int64), names


def _distinct_per_user(users: np.ndarray, values: np.ndarray, num_users: int) -> np.ndarray:
    """Distinct non-null values per user: unique ``user * k + value`` keys, counted per user."""
    valid = values >= 0
    width = int(values.max()) + 1 if valid.any() else 1
    keys = np.sort(users[valid] * width + values[valid])  # sort + diff: faster than np.unique's hash path
    first = np.concatenate(([True], keys[1:] != keys[:-1])) if keys.size else np.zeros(0, dtype=bool)
    return np.bincount(keys[first] // width, minlength=num_users)


def user_table(images: pa.Table) -> pa.Table:
    """Per-user counts over the train-pool rows (``train``, else ``train_mini``) of an images table
    (:func:`inat_hf.metadata.load_metadata`).

    Vectorised over integer codes (no string hashing): 2.7M rows take about a second.

    Returns
    -------
    pyarrow.Table
        Columns ``user`` (string), ``images``, ``phyla``, ``classes``, ``orders``, ``species`` (int64:
        rows and distinct non-null names), one row per user, sorted by user.
    """
    train = train_pool(images)
    users, user_names = _codes(train["user"])
    has_user = users >= 0
    users = users[has_user]
    images_per_user = np.bincount(users, minlength=user_names.size)
    counts = {"images": images_per_user}
    for name, rank in _RANK_OF.items():
        values = _codes(train[rank])[0][has_user]
        counts[name] = _distinct_per_user(users, values, user_names.size)
    present = images_per_user > 0  # the dictionary may name users of other splits
    table = {"user": pa.array(user_names[present], type=pa.string())}
    table.update({name: pa.array(values[present], type=pa.int64()) for name, values in counts.items()})
    return pa.table(table)  # codes are ranks of the sorted names, so the rows are sorted by user


def write_user_table(table: pa.Table, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write a user table as CSV (header ``user,images,phyla,classes,orders,species``) to ``url``."""
    missing = [name for name in USER_COLUMNS if name not in table.column_names]
    if missing:
        raise ValueError(f"not a user table: column(s) {missing} missing; make it with user_table(images)")
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table.select(list(USER_COLUMNS)), sink)
    storage.write_bytes(storage.resolve(url, storage_options), "", sink.getvalue().to_pybytes())


def _canonical(header: str) -> str:
    name = re.sub(r"[^0-9a-z]+", "_", header.strip().lower()).strip("_")
    for prefix in _PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            name = name.removeprefix(prefix)
            break
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name.removesuffix(suffix)
            break
    return next((column for column, aliases in _ALIASES.items() if name in aliases), "")


def _match_columns(header: list[str], source: str) -> dict[str, str]:
    """Map each of :data:`USER_COLUMNS` to the header name that holds it."""
    found: dict[str, list[str]] = {}
    for name in header:
        if not name.strip() or name.startswith("Unnamed:"):
            continue  # pandas index column
        column = _canonical(name)
        if column:
            found.setdefault(column, []).append(name)
    for column, names in found.items():
        if len(names) > 1:
            raise MetadataError(
                f"{source}: columns {names} all look like {column!r}. Fix: keep one of them (or rename the others)."
            )
    missing = [column for column in USER_COLUMNS if column not in found]
    if missing:
        raise MetadataError(
            f"{source}: required column(s) {missing} missing; found {header}. Fix: the per-user CSV needs "
            f"{', '.join(USER_COLUMNS)} (also spelled e.g. num_images, phylum, n_classes, rights_holder)."
        )
    return {column: found[column][0] for column in USER_COLUMNS}


def read_user_table(url: str | storage.Location, storage_options: Mapping[str, Any] | None = None) -> pa.Table:
    """Read a per-user CSV (a URL with its ``storage_options``, or a Location) into a table with
    :data:`USER_COLUMNS`, sorted by user.

    Raises
    ------
    MetadataError
        Not a CSV, a required column missing, a count that is empty, not an integer or negative, or a user
        listed twice.
    """
    loc = url if isinstance(url, storage.Location) else storage.resolve(url, storage_options)
    source = loc.url
    try:
        with storage.open_binary(loc) as stream:
            header = pacsv.open_csv(stream).schema.names
        names = _match_columns(header, source)
        types = {names["user"]: pa.string(), **{names[c]: pa.int64() for c in COUNT_COLUMNS}}
        options = pacsv.ConvertOptions(column_types=types, include_columns=list(types))
        with storage.open_binary(loc) as stream:
            raw = pacsv.read_csv(stream, convert_options=options)
    except pa.ArrowInvalid as err:
        raise MetadataError(
            f"{source}: not a readable per-user CSV ({err}). Fix: the counts must be whole numbers, one user a row."
        ) from None
    table = pa.table({column: raw[names[column]] for column in USER_COLUMNS})
    for column in COUNT_COLUMNS:
        values = table[column]
        if values.null_count:
            raise MetadataError(
                f"{source}: column {names[column]!r} has {values.null_count} empty value(s). "
                "Fix: every user needs every count."
            )
        if len(values) and pc.min(values).as_py() < 0:
            raise MetadataError(f"{source}: column {names[column]!r} has negative counts. Fix: counts are >= 0.")
    counts = pc.value_counts(table["user"].combine_chunks())
    twice = counts.filter(pc.greater(counts.field("counts"), 1)).field("values").to_pylist()
    if twice:
        raise MetadataError(f"{source}: user(s) {twice[:5]} listed more than once. Fix: one row per user.")
    return table.sort_by("user")


def _names(users: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(u) for u in users[:limit])
    return shown + (f", ... ({len(users) - limit} more)" if len(users) > limit else "")


def cross_check_user_table(images: pa.Table, table: pa.Table, limit: int = 100) -> list[str]:
    """Where a user table disagrees with the images table; ``[]`` when they agree.

    Parameters
    ----------
    images : pyarrow.Table
        The images table the user table should describe.
    table : pyarrow.Table
        A user table (:func:`read_user_table`).
    limit : int
        At most this many users with differing counts are listed one by one; a last line counts the rest.

    Returns
    -------
    list of str
        One line per kind of missing user, then one line per user whose counts differ.
    """
    expected = user_table(images)
    given = table.select(list(USER_COLUMNS)).cast(expected.schema)
    joined = expected.join(given, "user", join_type="full outer", left_suffix="_images", right_suffix="_file")
    joined = joined.sort_by("user")
    in_images = pc.is_valid(joined["images_images"]).to_numpy(zero_copy_only=False)
    in_file = pc.is_valid(joined["images_file"]).to_numpy(zero_copy_only=False)
    users = joined["user"].to_numpy(zero_copy_only=False)
    lines = []
    for mask, where, other in ((in_images & ~in_file, "images", "user"), (in_file & ~in_images, "user", "images")):
        only = users[mask].tolist()
        if only:
            lines.append(f"{len(only)} user(s) in the {where} table but not in the {other} table: {_names(only)}")
    both = in_images & in_file
    ours = {c: joined[f"{c}_images"].fill_null(-1).to_numpy() for c in COUNT_COLUMNS}
    theirs = {c: joined[f"{c}_file"].fill_null(-1).to_numpy() for c in COUNT_COLUMNS}
    differs = both & np.logical_or.reduce([ours[c] != theirs[c] for c in COUNT_COLUMNS])
    rows = np.flatnonzero(differs)
    for row in rows[:limit].tolist():
        diffs = [f"{c} {ours[c][row]} vs {theirs[c][row]}" for c in COUNT_COLUMNS if ours[c][row] != theirs[c][row]]
        lines.append(f"user {users[row]!r}: {', '.join(diffs)} (images table vs user table)")
    if rows.size > limit:
        lines.append(f"... and {rows.size - limit} more user(s) with differing counts")
    return lines
