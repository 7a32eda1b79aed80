"""Writing one prepared file batch by batch, so that a worker's memory is bounded by a batch, not by a client.

A file holds whole clients, however large a client is (a single user with 10,000+ images, a large geo cell,
an ``iid`` split with few partitions), but a task never holds the file's image bytes at once: it cuts the
file's rows into **batches** (:func:`batch_bounds`) of at most ``batch_rows`` rows, cut at client starts
where possible and, inside a client larger than ``batch_rows``, every ``batch_rows`` rows from its start.
Each batch's images are fetched (the next groups already in flight: :func:`inat_hf.manifest.examples.iter_fetched`),
vetted, and written as ONE Parquet row group (``pyarrow.parquet.ParquetWriter``) before the next batch is
assembled. So a client's rows may span several row groups of its file; the statistics of each row group
still let :func:`inat_hf.manifest.client_row_groups` (hence :func:`inat_hf.export.files.read_client`) read
only the groups that can hold a client, and every reader of a split (``ClientData``, the Flower partitioner)
sees each client as one contiguous run of rows.

**The memory bound of a task with images**, whatever its clients' sizes: about

    constant (the interpreter, pyarrow, PIL: ~0.2 GiB)
    + the task's manifest rows (no image bytes: about 1 KB a row)
    + (2 x batch_rows + (FETCH_AHEAD + 1) x GROUP_ROWS) x the largest image's bytes

(one batch as Python bytes and as its Arrow column, and the fetch groups in flight: 1,280 images at the
defaults, ``batch_rows = 256``). ``BENCHMARKS.md`` measures it for 300, 3,000 and 30,000 rows in one client.
Without images a file is written in client-aligned row groups of
:data:`~inat_hf.manifest.layout.EXPORT_ROW_GROUP_ROWS` rows (:func:`inat_hf.export.files.export_row_groups`);
``inat-fl export`` is this path.

The record (:data:`RECORD_KEY`) is known only once every row is vetted, so it is added to the file's key-value
metadata at the end (``ParquetWriter.add_key_value_metadata``), before the footer is written. The bytes
depend on the rows, the images and the settings only: the same inputs give the same file.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from contextlib import closing
from typing import Any, BinaryIO

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from inat_hf import storage
from inat_hf.export.files import export_row_groups, rows_table
from inat_hf.manifest.examples import BadImageError, iter_fetched, vet_image
from inat_hf.prepare.plan import FileTask
from inat_hf.prepare.rows import TaskRows

RECORD_KEY = b"inat_fl_prepare"
"""Parquet key-value metadata key of a prepared file's record."""


def batch_bounds(client_ids: np.ndarray, batch_rows: int) -> list[tuple[int, int]]:
    """Row ranges of at most ``batch_rows`` rows covering ``client_ids`` in order: cut at client starts where
    possible; a client longer than ``batch_rows`` is cut every ``batch_rows`` rows from its start.

    Greedy and deterministic: each range ends at the last allowed cut within ``batch_rows`` rows of its start
    (allowed cuts are never more than ``batch_rows`` apart, so every range is non-empty).

    Parameters
    ----------
    client_ids : numpy.ndarray
        One client id per row, each client's rows contiguous.
    batch_rows : int
        The most rows of a range (>= 1).

    Returns
    -------
    list of (start, stop)
        Contiguous and covering; empty for no rows.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows={batch_rows!r} is invalid; allowed: an integer >= 1")
    n = int(client_ids.size)
    if n == 0:
        return []
    first = np.concatenate(([True], client_ids[1:] != client_ids[:-1]))  # a client starts at this row
    run_start = np.flatnonzero(first)[np.cumsum(first) - 1]  # each row's client start
    cuts = np.append(np.flatnonzero((np.arange(n) - run_start) % batch_rows == 0), n)
    bounds, begin = [], 0
    while begin < n:
        stop = int(cuts[np.searchsorted(cuts, begin + batch_rows, side="right") - 1])
        bounds.append((begin, stop))
        begin = stop
    return bounds


def _vetted(
    task: FileTask, rows: pa.Table, names: list[str], ids: list[int], images: storage.Location
) -> Generator[tuple[bytes | None, str | None], None, None]:
    """Each row's usable image bytes and None, or None and why it is skipped; fetched ahead in groups."""
    config = task.config
    with closing(iter_fetched(rows["file_name"], images)) as groups:
        for start, fetched in groups:
            for offset, image in enumerate(fetched):
                i = start + offset
                try:
                    yield vet_image(image, names[i], ids[i], images, config.on_bad_image, config.max_image_side)
                except BadImageError as err:
                    raise BadImageError(f"{task.relative}: {err}") from None


def _image_batches(
    task: FileTask, rows: pa.Table, plain: pa.Table, images: storage.Location, schema: pa.Schema,
    skipped: list[dict[str, Any]],
) -> Iterator[pa.Table]:  # fmt: skip
    """The kept rows of each batch with their ``image`` column first; skipped rows go to ``skipped``."""
    names = rows["file_name"].to_pylist()
    ids = rows["image_id"].to_pylist()
    vetted = _vetted(task, rows, names, ids, images)
    with closing(vetted):
        for start, stop in batch_bounds(rows["client_id"].to_numpy(), task.settings.batch_rows):
            blobs: list[bytes] = []
            keep = np.zeros(stop - start, dtype=bool)
            for i in range(start, stop):
                data, reason = next(vetted)
                if data is None:
                    skipped.append({"image_id": ids[i], "file_name": names[i], "reason": images.redact(reason or "")})
                else:
                    blobs.append(data)
                    keep[i - start] = True
            kept = plain.slice(start, stop - start).filter(pa.array(keep))
            column = pa.StructArray.from_arrays(
                [pa.array(blobs, type=pa.binary()), kept["file_name"].combine_chunks()], names=["bytes", "path"]
            )
            del blobs
            yield pa.Table.from_arrays([column, *kept.columns], schema=schema)


def _table(task: FileTask, rows: TaskRows, table: pa.Table, image_column: pa.Array | None = None) -> pa.Table:
    """The export's table of manifest rows ``table`` (of ``rows``), each client named by the pseudonym computed
    over the whole manifest (one name per client, however its rows are cut into splits, files and batches).
    """
    return rows_table(table, task.config, rows.label_names, task.split, include_user=task.settings.include_user,
                      image_column=image_column, pseudonyms=rows.pseudonyms)  # fmt: skip


def write_prepared(task: FileTask, rows: TaskRows, sink: BinaryIO, images: storage.Location | None) -> dict[str, Any]:
    """Write the file of ``task`` to ``sink`` batch by batch (module docstring); return its record.

    Parameters
    ----------
    task : FileTask
        The file.
    rows : TaskRows
        Its manifest rows ``[task.start, task.stop)``, the label vocabulary and its clients' pseudonyms
        (:func:`inat_hf.prepare.rows.read_rows`).
    sink : binary file
        Where the Parquet bytes go (an :func:`inat_hf.storage.open_atomic` handle).
    images : storage.Location or None
        The folder of the images; None writes no ``image`` column.

    Raises
    ------
    inat_hf.manifest.examples.BadImageError
        With ``on_bad_image="error"``: the file, the image's URL, the reason and the image id.
    """
    if rows.table.num_rows != task.rows_in:
        raise ValueError(f"{task.relative}: {rows.table.num_rows} rows given for a range of {task.rows_in}")
    plain = _table(task, rows, rows.table)  # every column but the image: the task's rows, no image bytes
    skipped: list[dict[str, Any]] = []
    if images is None:
        schema = plain.schema
        batches: Iterator[pa.Table] = export_row_groups(plain)
    else:
        schema = _table(task, rows, rows.table.slice(0, 0), pa.array([], type=datasets.Image().pa_type)).schema
        batches = _image_batches(task, rows.table, plain, images, schema, skipped)
    written = 0
    with pq.ParquetWriter(sink, schema, write_statistics=True) as writer:
        for batch in batches:
            if batch.num_rows:
                writer.write_table(batch, row_group_size=batch.num_rows)
                written += batch.num_rows
        if written == 0:
            writer.write_table(schema.empty_table())
        record = {
            "key": task.key,
            "fingerprint": task.fingerprint,
            "config": task.config.name,
            "split": task.split,
            "file": task.relative,
            "start": task.start,
            "stop": task.stop,
            "rows_in": task.rows_in,
            "rows_written": written,
            "rows_skipped": len(skipped),
            "skipped": skipped,
        }
        if task.rows_in != written + len(skipped):
            raise RuntimeError(f"{task.relative}: {task.rows_in} rows in, {written} written, {len(skipped)} skipped")
        writer.add_key_value_metadata({RECORD_KEY: json.dumps(record, sort_keys=True).encode()})
    return record
