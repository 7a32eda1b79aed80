"""What an images table holds: rows per split, users, labels per rank, the load report (a printable summary),
and the skews of its train images that a user of the data should know (:func:`compute_biases`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inat_hf.metadata.image_table import train_pool
from inat_hf.metadata.report import metadata_report
from inat_hf.taxonomy import RANKS

TOP_CLIENT_FRACTION = 0.01
"""The "largest clients" of the limitations section: this fraction of the photographers."""
TINY_CLIENT_SIZE = 5
"""Photographers with at most this many train images count as tiny clients."""
GRID_DEGREES = 10
TOP_CELLS = 5
"""Geographic concentration: share of located train images in the busiest ``TOP_CELLS`` grid cells."""


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


@dataclass(frozen=True)
class DataBiases:
    """Skews of the train images that a user of the data should know (see :func:`compute_biases`)."""

    train_images: int
    located: int
    northern: int
    top_cells: tuple[tuple[str, int], ...]
    occupied_cells: int
    users: int
    top_users: int
    top_users_images: int
    tiny_users: int
    tiny_users_images: int
    kingdom_images: tuple[tuple[str, int], ...]
    species_images_min: int
    species_images_max: int


def _degrees(value: int, positive: str, negative: str) -> str:
    return f"{abs(value)}°{positive if value > 0 else negative if value < 0 else ''}"


def _cell_name(lat_index: int, lon_index: int) -> str:
    """``30°N–40°N, 80°W–70°W`` for the grid cell of indices (3, -8)."""
    lat, lon = lat_index * GRID_DEGREES, lon_index * GRID_DEGREES
    lat_span = f"{_degrees(lat, 'N', 'S')}–{_degrees(lat + GRID_DEGREES, 'N', 'S')}"
    return f"{lat_span}, {_degrees(lon, 'E', 'W')}–{_degrees(lon + GRID_DEGREES, 'E', 'W')}"


def _value_counts(column: pa.ChunkedArray) -> list[tuple[Any, int]]:
    """(value, count) pairs of a column's non-null values, most frequent first (ties: first seen)."""
    items = pc.value_counts(column.combine_chunks().drop_null()).to_pylist()
    return sorted(((item["values"], int(item["counts"])) for item in items), key=lambda pair: -pair[1])


def compute_biases(images: pa.Table) -> DataBiases:
    """Geographic, per-photographer and taxonomic skews of the ``train`` rows of an images table.

    Parameters
    ----------
    images : pyarrow.Table
        As :func:`inat_hf.metadata.load_metadata` returns it.
    """
    train = train_pool(images)  # train, or train_mini for a train_mini export
    lat, lon = (train[c].to_numpy().astype(np.float64) for c in ("latitude", "longitude"))
    located = ~(np.isnan(lat) | np.isnan(lon))
    cells = np.floor(np.stack([lat[located], lon[located]], axis=1) / GRID_DEGREES).astype(np.int64)
    cells = np.minimum(cells, [90 // GRID_DEGREES - 1, 180 // GRID_DEGREES - 1])  # 90°N, 180°E: the cell below
    keys, cell_counts = np.unique(cells, axis=0, return_counts=True)
    top = np.argsort(-cell_counts, kind="stable")[:TOP_CELLS]
    users = np.array([n for _, n in _value_counts(train["user"])], dtype=np.int64)
    k = max(1, math.ceil(TOP_CLIENT_FRACTION * users.size)) if users.size else 0
    tiny = users <= TINY_CLIENT_SIZE
    species = [n for _, n in _value_counts(train["species_id"])]
    return DataBiases(
        train_images=train.num_rows,
        located=int(located.sum()),
        northern=int((lat[located] >= 0).sum()),
        top_cells=tuple((_cell_name(*map(int, keys[i])), int(cell_counts[i])) for i in top),
        occupied_cells=len(keys),
        users=int(users.size),
        top_users=k,
        top_users_images=int(users[:k].sum()),
        tiny_users=int(tiny.sum()),
        tiny_users_images=int(users[tiny].sum()),
        kingdom_images=tuple((str(name), n) for name, n in _value_counts(train["kingdom"])),
        species_images_min=min(species, default=0),
        species_images_max=max(species, default=0),
    )
