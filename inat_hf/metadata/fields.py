"""Typed columns from lists of parsed records, with row-level problems recorded instead of lost.

Used by the metadata readers: each slice of parsed JSON records becomes pyarrow arrays at once. A value of
the wrong type never raises a raw ``TypeError``/``KeyError``: the row gets a reason (``"invalid_width"``,
``"missing_file_name"``, ...) in a :class:`ParseContext`, and the context's ``on_invalid`` policy decides whether
that is an error or a skipped row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inat_hf.errors import MetadataError
from inat_hf.schema import Policy

Check = Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())


def _is_float(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond the range of a float
        return False


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


_CHECKS: dict[pa.DataType, Check] = {
    pa.int64(): _is_int,
    pa.int32(): _is_int,
    pa.float64(): _is_float,
    pa.string(): _is_str,
}


@dataclass(frozen=True)
class Field:
    """One field of a record: its key, arrow type, whether a row needs it, and its allowed range."""

    key: str
    type: pa.DataType
    required: bool = False
    low: float | None = None
    high: float | None = None


@dataclass
class ParseContext:
    """The parse of one array of one file: its name and source, the ``on_invalid`` policy, and the reasons
    attached to rows (a row with a reason is dropped with ``skip``; with ``error`` the first one raises).
    """

    name: str
    source: str
    on_invalid: Policy = "error"
    reasons: dict[int, str] = field(default_factory=dict)
    """Row index -> first reason found for it."""
    nulled: dict[str, int] = field(default_factory=dict)
    """Counts of values set to null but kept (``invalid_latitude``, ``invalid_date``, ...)."""

    def add(self, rows: np.ndarray | Sequence[int], reason: str, detail: str) -> None:
        """Record ``reason`` for ``rows``; raise a :class:`MetadataError` with ``detail`` if errors are wanted."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        if self.on_invalid == "error":
            raise MetadataError(
                f"{self.source}: {detail} ({rows.size} row(s) of {self.name}). Fix the file, or load it with "
                "on_invalid='skip' to drop such rows (they are counted in the report)."
            )
        for row in rows.tolist():
            self.reasons.setdefault(row, reason)

    def count_nulled(self, reason: str, count: int) -> None:
        """Count ``count`` values set to null for ``reason``."""
        if count:
            self.nulled[reason] = self.nulled.get(reason, 0) + int(count)

    def mask(self, num_rows: int) -> np.ndarray:
        """Boolean mask of the rows that have no reason (the rows to keep)."""
        keep = np.ones(num_rows, dtype=bool)
        if self.reasons:
            keep[np.fromiter(self.reasons, dtype=np.int64)] = False
        return keep

    def counts(self) -> dict[str, int]:
        """Number of rows per reason."""
        out: dict[str, int] = {}
        for reason in self.reasons.values():
            out[reason] = out.get(reason, 0) + 1
        return dict(sorted(out.items()))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def records_to_columns(
    records: list[Any], first: int, fields: Sequence[Field], problems: ParseContext
) -> dict[str, pa.Array | pa.ChunkedArray]:
    """Turn parsed records (dicts) into one arrow array per field.

    Parameters
    ----------
    records : list
        One slice of a JSON array; elements should be objects.
    first : int
        Index of ``records[0]`` in the whole array (row numbers in messages and reasons are global).
    fields : sequence of Field
    problems : ParseContext
        Receives the reasons of bad rows; raises at once when its ``on_invalid`` is ``"error"``.

    Returns
    -------
    dict of str to pyarrow.Array, each of length ``len(records)``; bad values are null.
    """
    not_objects = [i for i, rec in enumerate(records) if not isinstance(rec, dict)]
    if not_objects:
        i = not_objects[0]
        problems.add(
            np.asarray(not_objects) + first,
            "not_an_object",
            f"{problems.name}[{first + i}] is {_short(records[i])}, not an object",
        )
        records = [rec if isinstance(rec, dict) else {} for rec in records]
    return {f.key: _column(records, first, f, problems) for f in fields}


def _column(records: list[dict], first: int, spec: Field, problems: ParseContext) -> pa.Array | pa.ChunkedArray:
    values = [rec.get(spec.key) for rec in records]
    # pa.array would silently truncate 1.5 to an integer 1, and take True for the number 1.0: such values
    # (rare: Arrow's JSON reader refuses them, so they only reach this path) go through the checks.
    lax = float if pa.types.is_integer(spec.type) else bool if pa.types.is_floating(spec.type) else None
    if lax is not None and any(type(v) is lax for v in values):
        return validate_column(_sanitise(values, first, spec, problems), first, spec, problems)
    try:
        array = pa.array(values, type=spec.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        array = _sanitise(values, first, spec, problems)
    return validate_column(array, first, spec, problems)


def table_to_columns(
    table: pa.Table, first: int, fields: Sequence[Field], problems: ParseContext
) -> dict[str, pa.Array | pa.ChunkedArray]:
    """Like :func:`records_to_columns`, for a slice already parsed by Arrow with the fields' types.

    A missing key is null in ``table``; a missing column means no record had the key.
    """
    columns = {}
    for spec in fields:
        if spec.key in table.column_names:
            array: pa.Array | pa.ChunkedArray = table[spec.key]
        else:
            array = pa.nulls(table.num_rows, type=spec.type)
        columns[spec.key] = validate_column(array, first, spec, problems)
    return columns


def validate_column(
    array: pa.Array | pa.ChunkedArray, first: int, spec: Field, problems: ParseContext
) -> pa.Array | pa.ChunkedArray:
    """Flag missing (null, or an empty string) required values and values out of range; null out NaN (counted).

    A column that passes every check is returned as it is (a chunked array stays chunked).
    """
    if _plainly_valid(array, spec):
        return array
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    absent = array.is_null()
    if spec.required and pa.types.is_string(spec.type):  # "" names no file (the processed CSV says so too)
        absent = pc.or_(absent, pc.fill_null(pc.equal(array, ""), False))
    if spec.required and pc.any(absent).as_py():
        missing = np.flatnonzero(absent.to_numpy(zero_copy_only=False))
        missing = np.setdiff1d(missing, np.fromiter(problems.reasons, dtype=np.int64) - first)
        if missing.size:
            problems.add(
                missing + first,
                f"missing_{spec.key}",
                f"{problems.name}[{first + int(missing[0])}] has no {spec.key!r} (or it is null or empty); it is "
                "required",
            )
    if spec.low is not None or spec.high is not None:
        array = _check_range(array, first, spec, problems)
    if pa.types.is_floating(spec.type):
        array = _null_nan(array, spec, problems)
    return array


def _plainly_valid(array: pa.Array | pa.ChunkedArray, spec: Field) -> bool:
    """Whether :func:`validate_column` has nothing to flag: whole-column tests, no copy of the values.

    (The common case: one pass for the range, one for NaN; anything else takes the detailed path.)
    """
    if spec.required and array.null_count:
        return False
    empty = spec.required and pa.types.is_string(spec.type) and len(array) > 0
    if empty and pc.min(pc.binary_length(array)).as_py() == 0:
        return False
    if pa.types.is_floating(spec.type) and pc.any(pc.is_nan(array)).as_py():
        return False
    if spec.low is None and spec.high is None:
        return True
    bounds = pc.min_max(array)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is None:  # no value at all
        return True
    return (spec.low is None or low >= spec.low) and (spec.high is None or high <= spec.high)


def _sanitise(values: list[Any], first: int, spec: Field, problems: ParseContext) -> pa.Array:
    check = _CHECKS[spec.type]
    bad = [i for i, v in enumerate(values) if v is not None and not check(v)]
    if pa.types.is_integer(spec.type):
        info = np.iinfo(spec.type.to_pandas_dtype())
        bad += [i for i, v in enumerate(values) if v is not None and check(v) and not info.min <= v <= info.max]
    bad = sorted(set(bad))
    _report(np.asarray(bad, dtype=np.int64), values, first, spec, problems, "is not a valid")
    bad_set = set(bad)
    as_type = int if pa.types.is_integer(spec.type) else float if pa.types.is_floating(spec.type) else str
    cleaned = [None if i in bad_set or v is None else as_type(v) for i, v in enumerate(values)]
    return pa.array(cleaned, type=spec.type)


def _check_range(array: pa.Array, first: int, spec: Field, problems: ParseContext) -> pa.Array:
    numbers = array.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become nan
    low = -np.inf if spec.low is None else spec.low
    high = np.inf if spec.high is None else spec.high
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~np.isnan(numbers) & ((numbers < low) | (numbers > high)))
    if bad.size == 0:
        return array
    shown = {int(bad[0]): array[int(bad[0])].as_py()}  # the first bad value as the file has it (an int stays one)
    _report(bad, shown, first, spec, problems, f"is outside [{spec.low}, {spec.high}] for")
    mask = np.zeros(len(array), dtype=bool)
    mask[bad] = True
    return pa.array(numbers, type=pa.float64(), mask=mask | np.isnan(numbers)).cast(spec.type, safe=False)


def _report(
    bad: np.ndarray,
    values: list[Any] | dict[int, Any],
    first: int,
    spec: Field,
    problems: ParseContext,
    what: str,
) -> None:
    if bad.size == 0:
        return
    if spec.required:
        i = int(bad[0])
        problems.add(
            bad + first,
            f"invalid_{spec.key}",
            f"{problems.name}[{first + i}].{spec.key} = {_short(values[i])} {what} {spec.key!r} ({spec.type})",
        )
    else:
        problems.count_nulled(f"invalid_{spec.key}", bad.size)


def _null_nan(array: pa.Array, spec: Field, problems: ParseContext) -> pa.Array:
    numbers = array.to_numpy(zero_copy_only=False)
    nan = np.isnan(numbers) & array.is_valid().to_numpy(zero_copy_only=False)
    if not nan.any():
        return array
    problems.count_nulled(f"invalid_{spec.key}", int(nan.sum()))
    return pa.array(numbers, type=spec.type, mask=np.isnan(numbers))
