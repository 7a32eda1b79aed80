"""Running the file tasks: the synchronous scheduler (in this process, one file after the other, as Dask's
synchronous scheduler runs them, without needing Dask: ``inat-fl export`` runs so) or ``distributed`` (a
``LocalCluster`` of worker processes, a scheduler at ``tcp://HOST:PORT``, or a ``distributed.Client``).

One task per file (:func:`inat_hf.prepare.task.run_file`). A task is small (a few hundred bytes: no row,
it reads them from the driver's copy, :mod:`inat_hf.prepare.rows`); tasks are submitted as a window (a few per
worker thread), the next one as each finishes, so that the scheduler holds a window of small tasks, and the
driver's memory stays flat over the run. Storage options travel by reference, never in the task
graph: ``client.scatter`` (the graph holds the future's key; the mapping lives on the workers) with
``distributed``, a token of :data:`inat_hf.prepare.task._LOCAL_OPTIONS` in this process; with
no options, workers use their own environment (``AZURE_STORAGE_*``, read by adlfs).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from inat_hf.prepare import task as task_module
from inat_hf.prepare.plan import FileTask

OnDone = Callable[[dict[str, Any]], None]
OnSubmit = Callable[[], None]
TASKS_PER_THREAD = 2
"""Tasks in flight per worker thread (one running, one queued, so that no worker waits for the driver)."""


def task_key(task: FileTask) -> str:
    """The Dask key of a file's task: ``prepare-{prepare key}-{file}``."""
    return f"prepare-{task.key}-{task.relative}"


def run_synchronous(
    tasks: Iterable[FileTask],
    image_options: Mapping[str, Any] | None,
    out_options: Mapping[str, Any] | None,
    on_done: OnDone,
    on_submit: OnSubmit,
) -> None:
    """Run the tasks in this process, one after the other in plan order (what Dask's synchronous scheduler
    does with one task per graph; called directly, so that no Dask is needed). The storage options reach each
    task by reference, as on a cluster.
    """
    tokens = []
    refs: list[task_module.LocalOptions | None] = []
    for options in (image_options, out_options):
        if options:
            token = uuid.uuid4().hex
            task_module._LOCAL_OPTIONS[token] = options
            tokens.append(token)
            refs.append(task_module.LocalOptions(token))
        else:
            refs.append(None)
    try:
        for item in tasks:
            on_submit()
            on_done(task_module.run_file(item, *refs))
    finally:
        for token in tokens:
            task_module._LOCAL_OPTIONS.pop(token, None)


@contextlib.contextmanager
def distributed_client(scheduler: Any, workers: int | None) -> Iterator[Any]:
    """A ``distributed.Client``: the one given, one of ``tcp://...``, or of a new ``LocalCluster`` (``"local"``:
    ``workers`` processes of one thread, 2 by default), closed at the end unless it was given.
    """
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if isinstance(scheduler, str) and scheduler.startswith(("tcp://", "tls://", "ws://", "wss://")):
        with Client(scheduler) as client:
            yield client
        return
    if scheduler != "local":
        raise ValueError(
            f"scheduler={scheduler!r} is invalid; allowed: 'local', 'synchronous', 'tcp://HOST:PORT' or a "
            "distributed.Client"
        )
    with (
        LocalCluster(
            n_workers=workers or 2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def run_distributed(
    client: Any,
    tasks: Iterable[FileTask],
    image_options: Mapping[str, Any] | None,
    out_options: Mapping[str, Any] | None,
    on_done: OnDone,
    on_submit: OnSubmit,
) -> None:
    """Run the tasks on a ``distributed`` cluster, a window at a time; at the first failure, cancel the rest
    and raise it (files already complete stay).
    """
    from distributed import as_completed

    # scatter([mapping]): one future holding the whole mapping (a bare mapping would be scattered per value)
    refs = [
        client.scatter([dict(o)], broadcast=True, hash=False)[0] if o else None for o in (image_options, out_options)
    ]
    threads = sum(client.nthreads().values()) or 1
    window = max(2, TASKS_PER_THREAD * threads)
    pending = iter(tasks)
    running = as_completed()

    def submit_next() -> None:
        item = next(pending, None)
        if item is not None:
            on_submit()
            running.add(client.submit(task_module.run_file, item, *refs, key=task_key(item), pure=False))

    for _ in range(window):
        submit_next()
    try:
        for future in running:
            if future.status != "finished":
                future.result()  # raises the task's error (a cancelled future raises CancelledError)
            on_done(future.result())
            future.release()
            submit_next()
    except BaseException:
        client.cancel(list(running.futures))
        raise
    finally:
        for ref in refs:
            if ref is not None:
                ref.release()
