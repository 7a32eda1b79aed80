"""Assembling the images table from record columns: typed, dictionary-encoded ranks, bad rows dropped
and counted in the file's report.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inat_hf.metadata.fields import ParseContext
from inat_hf.metadata.report import FileReport
from inat_hf.taxonomy import RANKS, Taxonomy

_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


def parse_dates(dates: pa.Array, problems: ParseContext) -> pa.Array:
    """Parse the official date strings to UTC timestamps; unparseable ones become null and are counted."""
    parsed = pc.strptime(dates, format=_DATE_FORMATS[0], unit="s", error_is_null=True)
    for fmt in _DATE_FORMATS[1:]:
        retry = pc.and_(pc.is_null(parsed), pc.is_valid(dates))
        if not pc.any(retry).as_py():
            break
        again = pc.strptime(dates, format=fmt, unit="s", error_is_null=True)
        if again.type.tz is None:
            again = pc.assume_timezone(again, "UTC")
        parsed = pc.if_else(retry, again, parsed)
    failed = pc.sum(pc.and_(pc.is_null(parsed), pc.is_valid(dates))).as_py() or 0
    problems.count_nulled("invalid_date", failed)
    return parsed.cast(pa.timestamp("s", tz="UTC"))


def start_side_columns(columns: Mapping[str, pa.Array], problems: ParseContext, pool: Executor) -> dict[str, Future]:
    """Start, on ``pool``, the columns of :func:`images_table` that need no join: ``date`` and ``user``.

    (Arrow releases the GIL: they are ready while the caller joins the annotations.)
    """
    return {
        "date": pool.submit(parse_dates, columns["date"], problems),
        "user": pool.submit(_users, columns["rights_holder"]),
    }


def _users(rights_holder: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pc.dictionary_encode(_whole(rights_holder))  # one dictionary, not one per chunk


def images_table(
    columns: Mapping[str, pa.Array],
    category_ids: np.ndarray,
    taxonomy: Taxonomy,
    split: str,
    problems: ParseContext,
    report: FileReport,
    side: Mapping[str, Future] | None = None,
) -> pa.Table:
    """Assemble the images table from record columns, drop rows with a reason, and fill the report.

    ``side``: the futures of :func:`start_side_columns`, if the caller started them.
    """
    side = side or {}
    dates = side["date"].result() if "date" in side else parse_dates(columns["date"], problems)
    users = side["user"].result() if "user" in side else _users(columns["rights_holder"])
    num_rows = len(category_ids)
    category_rows = taxonomy.rows_of(category_ids)
    latitude, longitude = columns["latitude"], columns["longitude"]
    no_location = pc.or_(pc.is_null(latitude), pc.is_null(longitude))
    has_species = pa.array(category_rows >= 0)
    data: dict[str, Any] = {
        "image_id": columns["id"],
        "split": pa.DictionaryArray.from_arrays(pa.array(np.zeros(num_rows, np.int32)), pa.array([split])),
        "file_name": columns["file_name"],
        "user": users,
        "width": columns["width"],
        "height": columns["height"],
        "license": columns["license"],
        "date": dates,
        "latitude": pc.if_else(no_location, pa.scalar(None, pa.float64()), latitude),
        "longitude": pc.if_else(no_location, pa.scalar(None, pa.float64()), longitude),
        "location_uncertainty": columns["location_uncertainty"],
        "species_id": pc.if_else(has_species, pa.array(category_ids), pa.scalar(None, pa.int64())),
        **{rank: taxonomy.rank_array(rank, category_rows) for rank in RANKS},
    }
    table = pa.table(data)
    keep = problems.mask(num_rows)
    if not keep.all():
        table = table.filter(pa.array(keep))
    report.rows_out = table.num_rows
    report.skipped = problems.counts()
    report.skipped_examples = _examples(problems.reasons)
    report.nulled = dict(sorted(problems.nulled.items()))
    report.null_location = int(pc.sum(pc.is_null(table["latitude"])).as_py() or 0)
    return table


def _whole(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _examples(reasons: Mapping[int, str], limit: int = 5) -> dict[str, list[int]]:
    examples: dict[str, list[int]] = {}
    for row in sorted(reasons):
        bucket = examples.setdefault(reasons[row], [])
        if len(bucket) < limit:
            bucket.append(row)
    return examples


def train_pool(images: pa.Table) -> pa.Table:
    """The train-pool rows of an images table: its ``train`` rows, or its ``train_mini`` rows when it has no
    ``train`` row (metadata loaded with ``train_split="train_mini"``). A table without a ``split`` column is
    returned whole.
    """
    if "split" not in images.column_names:
        return images
    split = images["split"].combine_chunks()
    split = split.dictionary_decode() if pa.types.is_dictionary(split.type) else split
    train = images.filter(pc.equal(split, "train"))
    return train if train.num_rows else images.filter(pc.equal(split, "train_mini"))
