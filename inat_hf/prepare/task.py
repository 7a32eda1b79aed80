"""The worker's task: one :class:`~inat_hf.prepare.plan.FileTask` in, one complete Parquet file out.

:func:`run_file` first looks for the file: if it is there, complete, and records the same prepare key and row
range, the task reports it as ``reused`` and writes nothing. Otherwise it fetches the file's images through
:mod:`inat_hf.storage` (concurrently, with the package's retries: :func:`inat_hf.manifest.examples.iter_fetched`),
applies the bad-image policy and ``max_image_side`` (:func:`inat_hf.manifest.examples.vet_image`), builds the export's
table (:func:`inat_hf.hub.export.rows_table`: the builder's features in the schema metadata) and writes it
with client-aligned row groups and statistics through :func:`inat_hf.storage.open_atomic`, then reads the
footer back to check the row count and the record.

The record (Parquet key-value metadata ``inat_fl_prepare``, JSON): prepare key, manifest fingerprint, config,
split, row range, rows in / written / skipped and each skipped row with its reason. Credentials reach the
task only as its ``image_options`` / ``out_options`` arguments (resolved by reference, never in the graph).
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from inat_hf import storage
from inat_hf.hub.export import rows_table
from inat_hf.manifest import layout
from inat_hf.manifest.examples import BadImageError, iter_fetched, vet_image
from inat_hf.prepare.plan import FileTask

RECORD_KEY = b"inat_fl_prepare"
"""Parquet key-value metadata key of a prepared file's record."""

_LOCAL_OPTIONS: dict[str, Mapping[str, Any]] = {}
"""Storage options of in-process runs (the synchronous scheduler), by token: the graph holds the token only."""


@dataclass(frozen=True)
class LocalOptions:
    """A reference to storage options kept in this process (:data:`_LOCAL_OPTIONS`), for in-process runs."""

    token: str


def resolve_options(ref: Mapping[str, Any] | LocalOptions | None) -> Mapping[str, Any] | None:
    """The storage options a reference stands for (a distributed worker receives the scattered mapping)."""
    if isinstance(ref, LocalOptions):
        try:
            return _LOCAL_OPTIONS[ref.token]
        except KeyError:
            raise ValueError(
                "storage options held by reference in the driver's process are not here: in-process references "
                "work with scheduler='synchronous' only"
            ) from None
    return ref


def peak_rss() -> int:
    """The peak resident set size of the current process in bytes: ``VmHWM`` of ``/proc/self/status``, which
    counts this program only (``ru_maxrss`` also holds the parent's memory when a process was forked and
    exec'd, as Dask's worker processes are); ``ru_maxrss`` where there is no ``/proc``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def read_record(out: storage.Location, relative: str) -> tuple[dict[str, Any], int] | None:
    """The record and the row count of a prepared file, or None if it is missing or not a prepared file."""
    if not storage.exists(out, relative):
        return None
    try:
        with storage.open_binary(out, relative) as handle:
            metadata = pq.ParquetFile(handle).metadata
        record = json.loads((metadata.metadata or {})[RECORD_KEY])
    except (pa.ArrowInvalid, KeyError, ValueError, OSError):
        return None
    return record, metadata.num_rows


def _matches(found: tuple[dict[str, Any], int] | None, task: FileTask) -> bool:
    if found is None:
        return False
    record, num_rows = found
    wanted = (task.key, task.start, task.stop)
    return (record.get("key"), record.get("start"), record.get("stop")) == wanted and record.get(
        "rows_written"
    ) == num_rows


def _images(task: FileTask, rows: pa.Table, loc: storage.Location) -> tuple[pa.Array, list[bool], list[dict]]:
    """The image column of the kept rows, which rows are kept, and the skipped rows with their reasons."""
    names = rows["file_name"].to_pylist()
    ids = rows["image_id"].to_pylist()
    blobs: list[bytes] = []
    keep: list[bool] = []
    skipped: list[dict[str, Any]] = []
    config = task.config
    for start, fetched in iter_fetched(rows["file_name"], loc):
        for offset, image in enumerate(fetched):
            i = start + offset
            data, reason = vet_image(image, names[i], ids[i], loc, config.on_bad_image, config.max_image_side)
            keep.append(data is not None)
            if data is None:
                skipped.append({"image_id": ids[i], "file_name": names[i], "reason": loc.redact(reason or "")})
            else:
                blobs.append(data)
    paths = [name for name, kept in zip(names, keep, strict=True) if kept]
    column = pa.StructArray.from_arrays(
        [pa.array(blobs, type=pa.binary()), pa.array(paths, type=pa.string())], names=["bytes", "path"]
    )
    return column, keep, skipped


def run_file(
    task: FileTask,
    image_options: Mapping[str, Any] | LocalOptions | None = None,
    out_options: Mapping[str, Any] | LocalOptions | None = None,
) -> dict[str, Any]:
    """Write one prepared file (or find it already written); return its record with ``status``, ``bytes``,
    ``seconds`` and this worker's ``worker_peak_rss``.

    Raises
    ------
    inat_hf.manifest.examples.BadImageError
        With ``on_bad_image="error"``: the image's URL, the reason and the image id.
    StorageError
        If storage fails after the retries, or the file read back does not hold what was written.
    """
    began = time.perf_counter()
    out = storage.resolve(task.settings.out_url, resolve_options(out_options))
    found = read_record(out, task.relative)
    if _matches(found, task) and found is not None:
        return {**found[0], "status": "reused", "bytes": storage.size(out, task.relative),
                "seconds": time.perf_counter() - began, "worker_peak_rss": peak_rss()}  # fmt: skip
    rows = task.table()
    column: pa.Array | None = None
    skipped: list[dict[str, Any]] = []
    if task.settings.images_url is not None:
        images = storage.resolve(task.settings.images_url, resolve_options(image_options))
        try:
            column, keep, skipped = _images(task, rows, images)
        except BadImageError as err:
            raise BadImageError(f"{task.relative}: {err}") from None
        rows = rows.filter(pa.array(keep, type=pa.bool_()))
    table = rows_table(
        rows, task.config, task.label_names, task.split, include_user=task.settings.include_user, image_column=column
    )
    record = {
        "key": task.key,
        "fingerprint": task.fingerprint,
        "config": task.config.name,
        "split": task.split,
        "file": task.relative,
        "start": task.start,
        "stop": task.stop,
        "rows_in": task.rows_in,
        "rows_written": table.num_rows,
        "rows_skipped": len(skipped),
        "skipped": skipped,
    }
    if record["rows_in"] != record["rows_written"] + record["rows_skipped"]:
        raise RuntimeError(f"{task.relative}: {task.rows_in} rows in, {table.num_rows} written, {len(skipped)} skipped")
    metadata = {**(table.schema.metadata or {}), RECORD_KEY: json.dumps(record, sort_keys=True).encode()}
    table = table.replace_schema_metadata(metadata)
    group_rows = layout.IMAGE_ROW_GROUP_ROWS if column is not None else layout.EXPORT_ROW_GROUP_ROWS
    with storage.open_atomic(out, task.relative) as handle:
        layout.write_client_aligned(table, handle, group_rows)
    if not _matches(read_record(out, task.relative), task):
        storage.remove(out, task.relative)
        raise storage.StorageError(f"{out.url}/{task.relative}: the file read back does not hold what was written")
    return {**record, "status": "written", "bytes": storage.size(out, task.relative),
            "seconds": time.perf_counter() - began, "worker_peak_rss": peak_rss()}  # fmt: skip
