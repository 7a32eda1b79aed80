"""The one module that reads the private state of ``datasets.Dataset``.

``datasets`` has no public way to slice a dataset without re-serialising its features, to see whether it
reads through an indices mapping, to read that mapping in bulk, or to read its fingerprint. These small
functions do, and nothing else in the project touches a ``Dataset``'s private fields; ``tests/test_clients.py``
fails if a ``datasets`` release moves them (and :func:`contiguous_slice` falls back to the public ``select``).
"""

from __future__ import annotations

import copy

import datasets
import datasets.table
import numpy as np
from numpy.typing import NDArray

DATASET_STATE = ("_data", "_info", "_indexes", "_indices", "_format_kwargs", "_format_columns", "_fingerprint")
"""The private fields of ``datasets.Dataset`` that :func:`contiguous_slice` sets (``tests/test_clients.py``)."""


def contiguous_slice(dataset: datasets.Dataset, offset: int, length: int, fingerprint: str) -> datasets.Dataset:
    """What ``dataset.select(range(offset, offset + length))`` returns, in well under a millisecond.

    ``select`` over a range already slices the Arrow table (no indices mapping), but every new
    ``Dataset`` re-derives its features from the Arrow schema and serialises them back into the schema
    metadata, JSON of every ``ClassLabel`` name included: about 30 ms per call with iNat's 1,103
    families (more with 10,000 species). ``datasets`` has no public way to make a dataset over a slice of
    the same schema without that work, so this is the one place that uses its private state
    (:data:`DATASET_STATE`, checked against the installed ``datasets`` by ``tests/test_clients.py``): the dataset's
    state is copied and only the table, the info (a shallow copy), the format, the index registry and the
    fingerprint are new. The ``Features`` object is shared with ``dataset`` (``Dataset.features`` hands out
    copies, and ``datasets`` copies a dataset before changing its features). Should a future ``datasets``
    lack one of these fields, the public ``select`` is used instead (correct, only slower).

    The table is sliced by :func:`slice_table`, in time independent of how many chunks and shards it has.

    ``dataset`` may not carry an indices mapping; ``fingerprint`` is the new dataset's.
    """
    if offset < 0 or length < 0 or offset + length > dataset.num_rows:
        raise ValueError(f"rows {offset}..{offset + length} are outside the dataset's {dataset.num_rows} rows")
    state = vars(dataset)
    if not all(name in state for name in DATASET_STATE):
        return dataset.select(range(offset, offset + length), new_fingerprint=fingerprint)
    if state["_indices"] is not None:
        raise ValueError("the dataset carries an indices mapping; call dataset.flatten_indices() first")
    part = datasets.Dataset.__new__(datasets.Dataset)
    vars(part).update(
        state,
        _data=slice_table(state["_data"], offset, length),
        _info=copy.copy(state["_info"]),
        _indexes={},
        _format_kwargs=dict(state["_format_kwargs"]),
        _format_columns=list(state["_format_columns"]) if state["_format_columns"] is not None else None,
        _fingerprint=fingerprint,
    )
    return part


def slice_table(table: datasets.table.Table, offset: int, length: int) -> datasets.table.Table:
    """``table.slice(offset, length)``, found by binary search over the table's record batches.

    A split of one Arrow file (``MemoryMappedTable``) already slices so. A split of several files (a
    ``ConcatenationTable``: ``load_dataset`` writes a shard per 500 MB, 7 for the full train split with image
    bytes, 51,155 chunks per column from its row groups of at most 256 rows) slices its whole ``pyarrow.Table``
    with ``pyarrow.Table.slice``, which walks every chunk of every column to find the offset: about 0.12 ms
    per 1,000 chunks, 4.0 ms per client at 33,588 chunks (``scripts/bench.py clients --shards``). Here the
    concatenated table is sliced through the batch offsets that ``datasets`` keeps (``fast_slice``) and each
    shard (a block) as ``datasets`` slices it, so that the result is what ``table.slice`` gives: the same rows,
    schema, blocks and replays.
    """
    concatenated = datasets.table.ConcatenationTable
    if type(table) is not concatenated or not hasattr(table, "fast_slice") or length == 0:
        return table.slice(offset, length)  # one file already slices so; an empty slice: datasets' own
    rows = table.fast_slice(offset, length)
    blocks = []
    for row in table.blocks:  # the shards, each a list of tables side by side (one when nothing was added)
        size = len(row[0])
        if length == 0:
            break
        if size <= offset:
            offset -= size
            continue
        if offset + length >= size:  # to the shard's end, recorded as datasets records it (no length)
            blocks.append([block.slice(offset) for block in row])
            offset, length = 0, length - (size - offset)
        else:
            blocks.append([block.slice(offset, length) for block in row])
            offset, length = 0, 0
    return concatenated(rows, blocks)


def has_indices_mapping(dataset: datasets.Dataset) -> bool:
    """Whether ``dataset`` reads its rows through an indices mapping (after ``shuffle``, ``filter`` or a
    non-contiguous ``select``), so that its rows are not its Arrow table's rows in order.

    ``datasets`` shows the mapping only as the private ``_indices``; the public ``flatten_indices``
    would copy the data.
    """
    return getattr(dataset, "_indices", None) is not None


def table_rows(dataset: datasets.Dataset) -> NDArray[np.int64] | None:
    """The Arrow table row of each of ``dataset``'s rows when it reads through an indices mapping, else None.

    ``datasets`` has no public way to read a column through the mapping in bulk short of reading it row-set
    by row-set (``dataset.with_format("arrow")[:]``: 6.5 s for 2.7M rows, against 0.08 s with this and one
    numpy take), so this reads the private ``_indices`` table, as :func:`has_indices_mapping` does.
    """
    mapping = getattr(dataset, "_indices", None)
    return None if mapping is None else np.asarray(mapping.column(0).to_numpy(), dtype=np.int64)


def dataset_fingerprint(dataset: datasets.Dataset) -> str:
    """The fingerprint ``datasets`` gave ``dataset`` (the private ``_fingerprint``: no public name)."""
    return str(dataset._fingerprint)
