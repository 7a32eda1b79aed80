"""How a manifest (or a file of examples) is cut: client-aligned row groups, shards of whole clients, and
reading one client's rows or a shard's rows back without scanning the rest.

Two row-group sizes, two purposes: :data:`MANIFEST_ROW_GROUP_ROWS` for the cached manifest (read by shards of
thousands of rows) and :data:`EXPORT_ROW_GROUP_ROWS` for exported files (read one client at a time, so
smaller groups mean less read per client). In these, no client ever straddles two row groups. Files with
image bytes (``inat-fl prepare``) are written in batches of at most :data:`IMAGE_ROW_GROUP_ROWS` rows, one
row group each, so a client larger than that spans several row groups of its file
(:mod:`inat_hf.prepare.stream`): readers find a client's row groups by their statistics
(:func:`client_row_groups`), never by assuming one group per client.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from inat_hf.manifest.build import Manifest
from inat_hf.schema import SPLITS

MANIFEST_ROW_GROUP_ROWS = 65_536
"""Target rows per row group of the cached manifest."""
EXPORT_ROW_GROUP_ROWS = 8_192
"""Target rows per row group of an exported Parquet file, so that one client reads little."""
IMAGE_ROW_GROUP_ROWS = 256
"""Most rows per row group of a Parquet file with image bytes (``inat-fl prepare``'s default batch): about
20 MB at iNat's 80 KB per image, so that reading one client reads little and a worker holds one batch of
images at a time (a larger client spans several row groups)."""
SHARD_ROWS = 10_000
"""About this many rows per builder shard; at least :data:`MIN_SHARDS` (fewer only with fewer clients)."""
MIN_SHARDS = 16
MAX_SHARDS = 512


def row_group_bounds(table: pa.Table, target: int) -> list[tuple[int, int]]:
    """Row ranges of about ``target`` rows that never cut a (split, client) run in two and never mix splits.

    Parameters
    ----------
    table : pyarrow.Table
        Rows sorted by (split, client); the ``split`` column is optional (one split per table).
    target : int
        Rows per range to aim at (a client larger than this gets a range of its own).

    Returns
    -------
    list of (start, stop)
        Contiguous, covering every row; empty for an empty table.
    """
    if table.num_rows == 0:
        return []
    client = table["client_id"].to_numpy()
    if "split" in table.column_names:
        split = pc.index_in(table["split"], value_set=pa.array(SPLITS)).to_numpy(zero_copy_only=False)
    else:  # one split per table (an export's file)
        split = np.zeros(table.num_rows, dtype=np.int64)
    split_change = split[1:] != split[:-1]
    starts = np.flatnonzero(np.concatenate(([True], (client[1:] != client[:-1]) | split_change)))
    split_starts = set((np.flatnonzero(split_change) + 1).tolist())
    bounds, begin = [], 0
    for start in starts[1:].tolist():
        if start - begin >= target or start in split_starts:
            bounds.append((begin, start))
            begin = start
    bounds.append((begin, table.num_rows))
    return bounds


def plan_shards(
    manifest: Manifest,
    split: str,
    *,
    target_rows: int = SHARD_ROWS,
    min_shards: int = MIN_SHARDS,
    max_shards: int = MAX_SHARDS,
) -> list[tuple[int, int]]:
    """Row ranges of ``split`` in the manifest, each a run of whole clients (any cut for ``validation``).

    About ``target_rows`` rows each, evenly spread: ``ceil(rows / target_rows)`` ranges kept within
    ``[min_shards, max_shards]`` (fewer when there are fewer clients), each cut at the first client start
    at or after its even share. Deterministic: the same manifest gives the same ranges.
    """
    offset, length = manifest.split_range(split)
    if length == 0:
        return []
    if split == "validation":
        starts = np.arange(offset, offset + length)
    else:
        index = manifest.clients
        starts = np.sort(index[f"{split}_offset"].to_numpy()[index[f"{split}_length"].to_numpy() > 0])
    wanted_shards = max(min_shards, min(max_shards, math.ceil(length / max(1, target_rows))))
    target = max(1, min(len(starts), wanted_shards))
    wanted = offset + np.arange(1, target) * length / target
    cuts = np.unique(starts[np.minimum(np.searchsorted(starts, wanted), len(starts) - 1)])
    bounds = [offset, *[int(c) for c in cuts if offset < c < offset + length], offset + length]
    return list(itertools.pairwise(bounds))


def read_rows(manifest_file: Path, shards: list[tuple[int, int]]) -> pa.Table:
    """The manifest rows of ``shards`` (row ranges), in order, reading only the Parquet row groups they touch."""
    parquet = pq.ParquetFile(manifest_file, memory_map=True)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    bounds = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    first = int(np.searchsorted(bounds, min(start for start, _ in shards), side="right")) - 1
    last = int(np.searchsorted(bounds, max(end for _, end in shards), side="left"))
    table = parquet.read_row_groups(list(range(first, last)))
    offset = int(bounds[first])
    return pa.concat_tables([table.slice(start - offset, end - start) for start, end in shards])


def client_row_groups(metadata: pq.FileMetaData, client_id: int, split: str | None = "train") -> list[int]:
    """Row groups of a Parquet file whose statistics can hold ``client_id``'s rows (of ``split``, when the
    file has a ``split`` column and ``split`` is given).
    """
    # Parquet leaf columns, by path: a struct before them (an ``image``: bytes, path) shifts their indices.
    leaves = {metadata.schema.column(i).path: i for i in range(len(metadata.schema))}
    wanted: dict[str, Any] = {"client_id": client_id}
    if split is not None and "split" in leaves:
        wanted["split"] = split
    columns = {name: leaves[name] for name in wanted}
    groups = []
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        if all(_may_hold(group.column(columns[name]).statistics, value) for name, value in wanted.items()):
            groups.append(index)
    return groups


def _may_hold(stats: Any, value: Any) -> bool:
    return stats is None or not stats.has_min_max or stats.min <= value <= stats.max


def read_client_rows(parquet: pq.ParquetFile, client_id: int, split: str = "train") -> pa.Table:
    """One client's rows of ``split`` from a manifest Parquet file, reading only its row groups."""
    groups = client_row_groups(parquet.metadata, client_id, split)
    table = parquet.read_row_groups(groups) if groups else parquet.schema_arrow.empty_table()
    return table.filter(pc.and_(pc.equal(table["client_id"], client_id), pc.equal(table["split"], split)))


def write_client_aligned(table: pa.Table, sink: Any, target: int) -> int:
    """Write ``table`` to ``sink`` (a path or binary file) as Parquet whose row groups hold whole clients
    (:func:`row_group_bounds`), statistics on, the table's schema metadata kept; return the row groups written.
    """
    bounds = row_group_bounds(table, target) or [(0, 0)]
    with pq.ParquetWriter(sink, table.schema, write_statistics=True) as writer:
        for start, stop in bounds:
            writer.write_table(table.slice(start, stop - start), row_group_size=max(1, stop - start))
    return len(bounds)
