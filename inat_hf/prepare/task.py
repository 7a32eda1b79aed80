"""The worker's task: one :class:`~inat_hf.prepare.plan.FileTask` in, one complete Parquet file out.

:func:`run_file` first looks for the file: if it is there, complete, and records the same prepare key and row
range, the task reports it as ``reused`` and writes nothing (unless ``redo_skipped`` is set and the file
skipped rows). Otherwise it reads its manifest rows from the driver's copy next to the output (one record
batch of it: :mod:`inat_hf.prepare.rows`; rows never travel in the task graph) and writes the file through
:func:`inat_hf.storage.open_atomic`, batch by batch
(:mod:`inat_hf.prepare.stream`: the images fetched through :mod:`inat_hf.storage` concurrently, with the
package's retries, the bad-image policy and ``max_image_side`` applied, the export's table with the builder's
features in the schema metadata, one row group with statistics per batch, so that memory is bounded by a
batch, not by a client), then reads the footer back to check the row count and the record.

The record (Parquet key-value metadata ``inat_fl_prepare``, JSON): prepare key, manifest fingerprint, config,
split, row range, rows in / written / skipped and each skipped row with its reason. Credentials reach the
task only as its ``image_options`` / ``out_options`` arguments (resolved by reference, never in the graph).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from inat_hf import storage
from inat_hf.prepare.plan import FileTask
from inat_hf.prepare.rows import read_rows
from inat_hf.prepare.stream import RECORD_KEY, write_prepared

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


def release_memory() -> None:
    """Give the memory this process has freed back to the system, before a peak: Python's unreachable objects,
    Arrow's pool, and the C heap's free pages (``malloc_trim``, where the C library is glibc).
    """
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


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
        If storage fails after the retries, the rows copy is missing or not this plan's, or the file read back
        does not hold what was written.
    """
    began = time.perf_counter()
    out = storage.resolve(task.settings.out_url, resolve_options(out_options))
    found = read_record(out, task.relative)
    redo = task.settings.redo_skipped and found is not None and bool(found[0].get("rows_skipped"))
    if _matches(found, task) and found is not None and not redo:
        return {**found[0], "status": "reused", "bytes": storage.size(out, task.relative),
                "seconds": time.perf_counter() - began, "worker_peak_rss": peak_rss()}  # fmt: skip
    images = None
    if task.settings.images_url is not None:
        images = storage.resolve(task.settings.images_url, resolve_options(image_options))
    rows = read_rows(out, task)
    with storage.open_atomic(out, task.relative) as handle:
        record = write_prepared(task, rows, handle, images)
    del rows
    if not _matches(read_record(out, task.relative), task):
        storage.remove(out, task.relative)
        raise storage.StorageError(f"{out.url}/{task.relative}: the file read back does not hold what was written")
    return {**record, "status": "written", "bytes": storage.size(out, task.relative),
            "seconds": time.perf_counter() - began, "worker_peak_rss": peak_rss()}  # fmt: skip
