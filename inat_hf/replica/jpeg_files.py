"""The replica's JPEG files: one task per species, in threads or processes, resumable, with progress.

A task writes every JPEG of one species: its ``train/<image_dir_name>/`` files, its ``val/...`` files and its
``train_mini/...`` files (a train_mini JPEG has the bytes of its train image, drawn once). It lists each of
its folders once (one request on an object store), removes what a killed run left half-written (hidden
``.name.*.part`` files), and, when resuming, leaves the files already there: a file appears under its name
only complete (:func:`inat_hf.storage.write_bytes`), so a present, non-empty file is a complete one. The
bytes of a file depend only on its record and the seed (:func:`inat_hf.replica.images.render`), so a resumed
run gives the files of an uninterrupted one.

Tasks run in a thread pool of this process, or in ``processes`` worker processes (``spawn``; for millions
of files on a machine with several cores: drawing a JPEG is CPU work that holds the GIL). Progress on stderr:
files done, written and present, files/s and the time left.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inat_hf import storage
from inat_hf.replica.images import render
from inat_hf.replica.taxonomy import species_categories

_COLUMNS = ("file_name", "width", "height", "id")
TASKS_AHEAD = 4
"""Tasks submitted ahead per worker (a window: the driver never holds every task's rows)."""


@dataclass(frozen=True)
class SpeciesTask:
    """The JPEGs of one species: per split, its rows (``file_name, width, height, id``)."""

    species: int
    splits: tuple[tuple[str, pa.Table], ...]

    @property
    def files(self) -> int:
        """JPEG files this task stands for."""
        return sum(rows.num_rows for _, rows in self.splits)


@dataclass(frozen=True)
class JpegCounts:
    """What a run did: files written and found complete (``present``), and their bytes."""

    written: int = 0
    present: int = 0
    bytes_written: int = 0
    bytes_present: int = 0

    def __add__(self, other: JpegCounts) -> JpegCounts:
        return JpegCounts(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, int, int, int]:
        """``(written, present, bytes_written, bytes_present)``."""
        return self.written, self.present, self.bytes_written, self.bytes_present


def species_tasks(splits: Sequence[tuple[str, pa.Table]]) -> Iterator[SpeciesTask]:
    """One task per species present in any split, in species order (each split's rows in row order)."""
    grouped = []
    for split, table in splits:
        order = pc.sort_indices(table["category_id"]).to_numpy()  # stable: row order inside a species
        species = table["category_id"].to_numpy()[order]
        first = np.flatnonzero(np.r_[True, species[1:] != species[:-1]]) if len(species) else np.array([], int)
        stops = np.r_[first[1:], len(species)]
        bounds = {int(s): (int(a), int(b)) for s, a, b in zip(species[first], first, stops, strict=True)}
        grouped.append((split, table.select(list(_COLUMNS)), order, bounds))
    every = sorted(set().union(*(bounds for _, _, _, bounds in grouped)))
    for species_id in every:
        parts = []
        for split, table, order, bounds in grouped:
            if species_id in bounds:
                start, stop = bounds[species_id]
                parts.append((split, table.take(pa.array(order[start:stop]))))
        yield SpeciesTask(int(species_id), tuple(parts))


def _present(loc: storage.Location, folder: str) -> dict[str, int]:
    """Complete files in ``folder`` (base name -> size); half-written files of a killed run are removed."""
    try:
        names = storage.list_names(loc, folder)
    except storage.StorageNotFoundError:
        return {}
    for name in names:
        if name.startswith(".") and name.endswith(".part"):
            storage.remove(loc, f"{folder}/{name}")
    return {name: int(token.split(":", 1)[0]) for name, token in names.items() if not name.startswith(".")}


def write_species(loc: storage.Location, task: SpeciesTask, seed: int, resume: bool) -> JpegCounts:
    """Write the JPEGs of one species that are not already complete (all of them unless ``resume``)."""
    category = species_categories()[task.species]
    family, genus, dir_name = str(category["family"]), str(category["genus"]), str(category["image_dir_name"])
    seen = Counter(itertools.chain.from_iterable(rows["id"].to_pylist() for _, rows in task.splits))
    shared = {image_id for image_id, n in seen.items() if n > 1}  # train_mini ids: drawn once, written twice
    memo: dict[int, bytes] = {}
    written = present = bytes_written = bytes_present = 0
    local = storage.is_local(loc)
    pending: list[tuple[str, bytes]] = []
    for split, rows in task.splits:
        found = _present(loc, f"{split}/{dir_name}")
        for name, width, height, image_id in zip(*(rows[c].to_pylist() for c in _COLUMNS), strict=True):
            size = found.get(name.rsplit("/", 1)[-1], 0)
            if resume and size > 0:
                present, bytes_present = present + 1, bytes_present + size
                continue
            data = memo.get(image_id) or render(width, height, family, genus, task.species, image_id, seed)
            if image_id in shared:
                memo[image_id] = data
            written, bytes_written = written + 1, bytes_written + len(data)
            if local:
                storage.write_bytes(loc, name, data)
            else:
                pending.append((name, data))
    if pending:  # an object store: the writes of a species go concurrently
        storage.write_many(loc, pending)
    return JpegCounts(written, present, bytes_written, bytes_present)


class _Meter:
    """Files done / total, written and present, files/s and the time left, on stderr at most once a second."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.start, self.shown = total, enabled, time.monotonic(), 0.0
        self.counts = JpegCounts()
        self.first: tuple[float, int] | None = None  # the first result: the rate counts from there (workers up)

    def add(self, counts: JpegCounts) -> None:
        self.counts += counts
        now = time.monotonic()
        done = self.counts.written + self.counts.present
        if self.first is None:
            self.first = (now, done)
        if self.enabled and (now - self.shown >= 1 or done == self.total):
            self.shown, elapsed = now, now - self.start
            rate = (done - self.first[1]) / max(now - self.first[0], 1e-9)
            left = f"about {(self.total - done) / rate:,.0f} s left" if rate else "time left not known yet"
            sys.stderr.write(
                f"\r[inat_hf.sample] JPEGs: {done:,}/{self.total:,} ({self.counts.written:,} written, "
                f"{self.counts.present:,} present), {rate:,.0f} files/s, {elapsed:,.0f} s, {left}   "
            )
            sys.stderr.flush()


def _pool(processes: int | None) -> tuple[Executor, int]:
    """The executor of the tasks and its number of workers."""
    if processes and processes > 1:
        return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")), processes
    threads = max(1, min(8, os.cpu_count() or 1))
    return ThreadPoolExecutor(threads, thread_name_prefix="inat-jpeg"), threads


def write_jpegs(
    loc: storage.Location,
    splits: Sequence[tuple[str, pa.Table]],
    seed: int,
    *,
    resume: bool = True,
    processes: int | None = None,
    progress: bool = False,
) -> JpegCounts:
    """Write every JPEG of the splits' records (one task per species, :func:`write_species`).

    Parameters
    ----------
    loc : Location
        The replica's root.
    splits : sequence of (str, pyarrow.Table)
        The split name and its records (``file_name, width, height, id, category_id``).
    seed : int
        The replica's seed (the JPEGs' noise and placement).
    resume : bool
        Leave the complete files already there (False: write every file again).
    processes : int, optional
        Worker processes; ``None`` or 1: a thread pool in this process.
    progress : bool
        Show files/s and the time left on stderr.

    Raises
    ------
    ValueError
        ``processes`` > 1 with a filesystem that lives in this process (``memory://``).
    """
    if processes and processes > 1 and storage.is_per_process(loc):
        raise ValueError(f"{loc.url}: a memory:// replica lives in one process; write it with processes=None")
    meter = _Meter(sum(table.num_rows for _, table in splits), progress)
    tasks = species_tasks(splits)
    pool, workers = _pool(processes)
    with pool:
        window = TASKS_AHEAD * workers
        running: set[Future[JpegCounts]] = {
            pool.submit(write_species, loc, t, seed, resume) for t in itertools.islice(tasks, window)
        }
        try:
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    meter.add(future.result())
                more = itertools.islice(tasks, len(done))
                running |= {pool.submit(write_species, loc, t, seed, resume) for t in more}
        except BaseException:
            for future in running:
                future.cancel()
            raise
    if progress:
        sys.stderr.write("\n")
    return meter.counts
