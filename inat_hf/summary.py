"""A short, printable summary of an images table: rows per split, users, labels per rank, the load report."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from inat_hf.metadata.report import metadata_report
from inat_hf.taxonomy import RANKS


@dataclass(frozen=True)
class SplitSummary:
    """Counts of one split of an images table."""

    split: str
    images: int
    users: int
    null_locations: int
    rank_counts: dict[str, int]
    """Distinct names per rank among the split's rows."""


def summarize(table: pa.Table) -> list[SplitSummary]:
    """Per-split counts of an images table (see :func:`inat_hf.metadata.load_metadata`)."""
    out = []
    splits = pc.unique(table["split"].combine_chunks().dictionary_decode()).to_pylist()
    for split in sorted(splits, key=_split_order):
        rows = table.filter(pc.equal(table["split"], split))
        out.append(
            SplitSummary(
                split=split,
                images=rows.num_rows,
                users=_distinct(rows["user"]),
                null_locations=rows["latitude"].null_count,
                rank_counts={rank: _distinct(rows[rank]) for rank in RANKS},
            )
        )
    return out


def _split_order(split: str) -> tuple[int, str]:
    order = {"train": 0, "train_mini": 1, "val": 2, "public_test": 3}
    return order.get(split, 9), split


def _distinct(column: pa.ChunkedArray) -> int:
    return len(pc.unique(column.combine_chunks()).drop_null())


def format_summary(table: pa.Table) -> str:
    """The summary as an aligned text table, followed by the load report."""
    header = ["split", "images", "users", "no location", *RANKS]
    rows = [
        [s.split, f"{s.images:,}", f"{s.users:,}", f"{s.null_locations:,}", *(f"{s.rank_counts[r]:,}" for r in RANKS)]
        for s in summarize(table)
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).rjust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    report = metadata_report(table).summary()
    return "\n".join([*lines, "", report]) if report else "\n".join(lines)
