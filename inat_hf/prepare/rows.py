"""The tasks' rows: a copy of each config's manifest that the driver writes once next to the output.

A task never carries its manifest rows through the Dask graph (the scheduler would hold them, and a driver
with an in-process ``LocalCluster`` grew by them over the run: 1.3 GiB at full scale). The driver writes, once
per config, ``{out}/.inat-fl-prepare-{config}-{fingerprint}.arrow`` (:func:`~inat_hf.prepare.plan.copy_path`):
an Arrow IPC file with ONE record batch per planned file (its rows ``[start, stop)``, dictionaries decoded,
plus :data:`PSEUDONYM_COLUMN`, each row's ``client`` pseudonym computed once over the whole manifest by
:func:`inat_hf.export.files.client_pseudonyms`; zstd-compressed), written a batch at a time. Each
:class:`~inat_hf.prepare.plan.FileTask` names its batch (``rows_file``, ``rows_index``); a task reads the
copy's footer (24 bytes per batch, plus the schema and the copy's record) and its own batch, nothing else
(:func:`read_rows`), from wherever the output is, with the output's storage options: the workers of any
cluster can read it.

The copy is written through :func:`inat_hf.storage.open_atomic` (it appears complete or not at all) and
records, in its schema metadata (:data:`ROWS_KEY`), the manifest fingerprint, the label vocabulary and each
batch's file and row range. A rerun after a kill finds it and reuses it when that record is the plan's
(:func:`ensure_copy`), else writes it again; a task whose batch does not hold its file's range stops with a
clear error instead of writing wrong rows. The copy is auxiliary: it is hidden, not under ``data/`` and matches
no ``data_files`` glob of the card, so ``datasets.load_dataset(OUT, config)`` never reads it; a complete run
deletes it (:func:`remove_copies`; credentials that may not delete leave it, with a warning) and
``inat-fl push`` never uploads one a failed run left (it holds the raw ``user``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
import pyarrow as pa

from inat_hf import storage
from inat_hf.export.files import client_pseudonyms
from inat_hf.manifest import Manifest
from inat_hf.prepare.plan import ROWS_PREFIX, FileTask

LOG = logging.getLogger(__name__)

ROWS_KEY = b"inat_fl_prepare_rows"
"""Schema metadata key of the copy's record (JSON: fingerprint, config, label names, files)."""
PSEUDONYM_COLUMN = "_inat_fl_client"
"""The copy's column of each row's ``client`` pseudonym (null in ``validation``), dropped by :func:`read_rows`."""
COMPRESSION = "zstd"


@dataclass(frozen=True)
class TaskRows:
    """What a task reads from the copy: its manifest rows, the label vocabulary, its clients' pseudonyms."""

    table: pa.Table
    label_names: tuple[str, ...]
    pseudonyms: dict[int, str]


def _record(tasks: Sequence[FileTask], label_names: Sequence[str]) -> dict[str, Any]:
    first = tasks[0]
    return {
        "fingerprint": first.fingerprint,
        "config": first.config.name,
        "label_names": list(label_names),
        "files": [[t.relative, t.start, t.stop] for t in tasks],
    }


def _run_starts(client: np.ndarray) -> np.ndarray:
    """The first row of each run of equal client ids (rows are sorted by client)."""
    if client.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], client[1:] != client[:-1])))


def compact(rows: pa.Table, pseudonyms: Mapping[int, str] | None = None) -> pa.RecordBatch:
    """``rows`` as one record batch holding only these rows, dictionary columns decoded (chunk by chunk: a
    manifest read from Parquet has a dictionary per row group); with ``pseudonyms`` (client id to ``client``),
    :data:`PSEUDONYM_COLUMN` is added (validation rows, whose ``client`` is central, get null).
    """
    arrays, names = [], list(rows.column_names)
    for column in rows.columns:
        if pa.types.is_dictionary(column.type):
            column = pa.chunked_array([chunk.dictionary_decode() for chunk in column.chunks],
                                      type=column.type.value_type)  # fmt: skip
        arrays.append(column.combine_chunks())
    if pseudonyms is not None:
        client = rows["client_id"].to_numpy()
        starts = _run_starts(client)
        run_names = pa.array([pseudonyms.get(c) for c in client[starts].tolist()], type=pa.string())
        lengths = np.diff(np.append(starts, client.size))
        arrays.append(run_names.take(pa.array(np.repeat(np.arange(starts.size), lengths))))
        names.append(PSEUDONYM_COLUMN)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def found_record(out: storage.Location, relative: str) -> dict[str, Any] | None:
    """The record of the copy at ``relative``, or None if there is none (or it is not a readable copy)."""
    if not storage.exists(out, relative):
        return None
    try:
        with storage.open_binary(out, relative) as handle:
            metadata = pa.ipc.open_file(handle).schema.metadata or {}
        found: dict[str, Any] = json.loads(metadata[ROWS_KEY])
    except (pa.ArrowInvalid, KeyError, ValueError, OSError):
        return None
    return found


def write_copy(
    out: storage.Location,
    tasks: Sequence[FileTask],
    tables: Iterable[pa.Table],
    label_names: Sequence[str],
    pseudonyms: Mapping[int, str],
) -> int:
    """Write the copy of ``tasks`` (all of one config, in plan order, naming the same ``rows_file``) with
    ``tables``, one table of manifest rows per task in the same order, a batch at a time, and each row's
    pseudonym from ``pseudonyms`` (every client of the manifest); return the bytes written.
    """
    metadata = {ROWS_KEY: json.dumps(_record(tasks, label_names), sort_keys=True).encode()}
    options = pa.ipc.IpcWriteOptions(compression=COMPRESSION)
    with storage.open_atomic(out, tasks[0].rows_file) as handle:
        writer = None
        for task, rows in zip(tasks, tables, strict=True):
            batch = compact(rows, pseudonyms if task.split != "validation" else {})  # central: no name
            if batch.num_rows != task.rows_in:
                raise ValueError(f"{task.relative}: {batch.num_rows} rows for a range of {task.rows_in}")
            if writer is None:
                writer = pa.ipc.new_file(handle, batch.schema.with_metadata(metadata), options=options)
            writer.write_batch(batch)
        if writer is not None:
            writer.close()
        return int(handle.tell())


def ensure_copy(out: storage.Location, manifest: Manifest, tasks: Sequence[FileTask], log: TextIO | None) -> str:
    """The copy of one config's plan: reused if one with the plan's record is there, else written from
    ``manifest`` a batch at a time (the driver never holds more than one file's decoded rows), the pseudonyms
    computed over the whole manifest; other copies of the config (another fingerprint or plan, files a killed
    write left) are deleted. Returns ``"reused"`` or ``"written"``.
    """
    relative = tasks[0].rows_file
    _remove_others(out, tasks[0].config.name, relative, log)
    if found_record(out, relative) == _record(tasks, manifest.label_names):
        return "reused"
    names = client_pseudonyms(manifest.table, tasks[0].config)  # once, over each client's every row
    tables = (manifest.table.slice(t.start, t.rows_in) for t in tasks)
    size = write_copy(out, tasks, tables, manifest.label_names, names)
    if log is not None:
        print(f"prepare: wrote the tasks' rows, {len(tasks):,} files, {size / 2**20:,.1f} MiB: {relative}", file=log)
    return "written"


def is_copy(name: str) -> bool:
    """Whether ``name`` (a file name at the output's root) is a rows copy or a killed write's part of one."""
    return name.lstrip(".").startswith(ROWS_PREFIX.lstrip("."))


def _remove_others(out: storage.Location, config_name: str, keep: str, log: TextIO | None) -> None:
    """Delete the other copies of ``config_name`` at the output's root, and what a killed write left."""
    if not storage.exists(out):
        return
    mine = f"{ROWS_PREFIX.lstrip('.')}{config_name}-"  # a local write in progress is ".{name}.{random}.part"
    stale = [name for name in storage.list_names(out) if name != keep and name.lstrip(".").startswith(mine)]
    removed = [name for name in stale if _remove_or_warn(out, name)]
    if removed and log is not None:
        print(f"prepare: removed {len(removed)} stale rows copy file(s) of {config_name}: {', '.join(removed)}",
              file=log)  # fmt: skip


def remove_copies(out: storage.Location, relatives: Sequence[str]) -> list[str]:
    """Delete the copies of a complete run (the output no longer needs them); return those left because the
    credentials may not delete (each named in a warning).
    """
    return [relative for relative in relatives if not _remove_or_warn(out, relative)]


def _remove_or_warn(out: storage.Location, relative: str) -> bool:
    """Delete ``relative``; if the output's credentials may write but not delete (upload-only SAS tokens are
    common), leave it, warn with its location and how to delete it, and return False. The copy is hidden and
    never read by ``load_dataset`` nor uploaded by ``inat-fl push``, so the output stays correct.
    """
    try:
        storage.remove(out, relative)
    except storage.StorageAuthError as err:
        denied = str(err).split("; give credentials")[0]  # names the URL (redacted) and the store's answer
        LOG.warning(
            "prepare: left the rows copy %s: it is not part of the dataset (hidden, never loaded nor "
            "pushed) but holds the raw user ids; delete it with credentials that may delete",
            denied,
        )
        return False
    return True


def read_rows(out: storage.Location, task: FileTask) -> TaskRows:
    """The manifest rows of ``task``, the label vocabulary and its clients' pseudonyms, read from the copy (its
    footer and one batch).

    Raises
    ------
    StorageError
        If the copy is missing, unreadable, or not this plan's (its record does not name this file's range).
    """
    where = f"{out.url.rstrip('/')}/{task.rows_file}"
    try:
        with storage.open_binary(out, task.rows_file) as handle:
            # Decompressed into the C heap, not Arrow's default pool (mimalloc): over a worker's hundreds of
            # tasks, mimalloc kept 60-80 MiB of these buffers of varying sizes; malloc gives them back.
            reader = pa.ipc.open_file(handle, memory_pool=pa.system_memory_pool())
            record = json.loads((reader.schema.metadata or {})[ROWS_KEY])
            files = record["files"]
            entry = files[task.rows_index] if 0 <= task.rows_index < len(files) else None
            if record["fingerprint"] != task.fingerprint or entry != [task.relative, task.start, task.stop]:
                problem = f"it does not hold {task.relative} (rows {task.start}-{task.stop}) at batch {task.rows_index}"
                raise ValueError(f"{problem}: it is another plan's")
            batch = reader.get_batch(task.rows_index)
    except storage.StorageNotFoundError:
        message = f"{where}: the tasks' rows copy is missing (deleted while the run went on?); rerun prepare"
        raise storage.StorageNotFoundError(out.redact(message)) from None
    except (pa.ArrowInvalid, KeyError, ValueError, TypeError) as err:
        message = f"{where}: not this run's rows copy ({err}); rerun prepare, which writes it again"
        raise storage.StorageError(out.redact(message)) from None
    if batch.num_rows != task.rows_in or PSEUDONYM_COLUMN not in batch.schema.names:
        message = f"{where}: batch {task.rows_index} has {batch.num_rows} rows, {task.relative} needs {task.rows_in}"
        raise storage.StorageError(out.redact(f"{message}; rerun prepare, which writes it again"))
    client = batch.column("client_id").to_numpy()
    starts = _run_starts(client)
    names = batch.column(PSEUDONYM_COLUMN).take(pa.array(starts)).to_pylist()
    pseudonyms = {c: n for c, n in zip(client[starts].tolist(), names, strict=True) if n is not None}
    table = pa.Table.from_batches([batch.drop_columns([PSEUDONYM_COLUMN]).replace_schema_metadata(None)])
    return TaskRows(table, tuple(record["label_names"]), pseudonyms)
