"""Many small files fetched concurrently: async filesystems on their event loop, others on a thread pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import fsspec
from fsspec.asyn import AsyncFileSystem, sync

from inat_hf.errors import StorageError
from inat_hf.storage import retry
from inat_hf.storage.location import Location
from inat_hf.storage.retry import STATS, classify, gave_up, note_retry, to_storage_error

_NOT_TRIED = object()  # a fetch_many round did not start this request (storage silent too long)


class _Clock:
    """When storage last answered (content, or an error that is not transient), shared by a fetch's rounds,
    and whether a request failed transiently since (a slow answer still on its way is not a stall).
    """

    def __init__(self) -> None:
        self.answered, self.failed = time.monotonic(), False

    def note(self, outcome: bytes | BaseException) -> bytes | BaseException:
        if not isinstance(outcome, BaseException) or classify(outcome) != "transient":
            self.answered, self.failed = time.monotonic(), False
        else:
            self.failed = True
        return outcome

    def stalled(self) -> bool:
        """Whether requests failed and :data:`RETRY_DEADLINE` seconds went by without an answer."""
        return self.failed and time.monotonic() - self.answered >= retry.RETRY_DEADLINE


async def _gather_cat(fs: AsyncFileSystem, paths: list[str], limit: int, clock: _Clock) -> list[Any]:
    """Fetch ``paths`` on the filesystem's event loop, at most ``limit`` at a time, in order."""
    semaphore = asyncio.Semaphore(limit)

    async def one(path: str) -> Any:
        async with semaphore:
            if clock.stalled():
                return _NOT_TRIED
            try:
                return clock.note(await fs._cat_file(path))
            except Exception as exc:
                return clock.note(exc)

    return await asyncio.gather(*(one(p) for p in paths), return_exceptions=True)


def _fetch_round(fs: fsspec.AbstractFileSystem, paths: list[str], workers: int, clock: _Clock) -> list[Any]:
    """Fetch every path at most once, concurrently: its content, the exception raised while reading it, or
    ``_NOT_TRIED`` for the requests not started because storage had not answered for too long.
    """
    if isinstance(fs, AsyncFileSystem) and fs.async_impl and not fs.asynchronous:
        return sync(fs.loop, _gather_cat, fs, paths, workers, clock)

    def one(path: str) -> Any:
        if clock.stalled():
            return _NOT_TRIED
        try:
            return clock.note(fs.cat_file(path))
        except Exception as exc:
            return clock.note(exc)

    if len(paths) <= 1 or workers == 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(min(workers, len(paths)), thread_name_prefix="inat-fetch") as pool:
        return list(pool.map(one, paths))


def fetch_many(
    loc: Location,
    relatives: Sequence[str],
    *,
    max_workers: int = 32,
    retries: int | None = None,
    on_error: Literal["raise", "return"] = "raise",
) -> list[bytes | StorageError]:
    """Fetch many small files concurrently, in the order of ``relatives``.

    Async filesystems (adlfs, s3fs, gcsfs) run their ``_cat_file`` coroutines on their event loop;
    the others use a thread pool over ``cat_file``. Files that fail with a transient error are fetched
    again together after an exponential backoff. Once storage has not answered for :data:`RETRY_DEADLINE`
    seconds (only timeouts and lost connections), no request and no round is started any more, so a dead
    or silent endpoint fails in about that plus one timeout, not one timeout per ``max_workers`` files.

    Parameters
    ----------
    max_workers : int
        Most requests in flight at once.
    retries : int, optional
        Most retries of a file after transient errors (default :data:`DEFAULT_RETRIES`); not-found and
        auth errors are never retried.
    on_error : {"raise", "return"}
        Raise the first failure (in input order), or put it in the list in place of the content. Errors
        that are still transient after the retries are always raised: they say that storage is
        unavailable, not that the file is bad, and must not be taken for a property of the file.

    Returns
    -------
    list of bytes or StorageError
        One entry per path of ``relatives``.
    """
    if on_error not in ("raise", "return"):
        raise ValueError(f"on_error must be 'raise' or 'return', not {on_error!r}")
    retries = retry.DEFAULT_RETRIES if retries is None else max(0, retries)
    paths = [loc.path(r) for r in relatives]
    results: list[bytes | StorageError] = [b""] * len(paths)
    failures = [0] * len(paths)  # transient failures of each file so far
    pending, clock = list(range(len(paths))), _Clock()
    last: tuple[int, BaseException] = (0, TimeoutError("no answer"))
    while pending:
        outcomes = _fetch_round(loc.fs, [paths[i] for i in pending], max(1, max_workers), clock)
        again, errors = [], {}
        for index, outcome in zip(pending, outcomes, strict=True):
            if outcome is _NOT_TRIED:
                again.append(index)
            elif not isinstance(outcome, BaseException):
                results[index] = outcome
            elif classify(outcome) == "transient":
                failures[index] += 1
                again.append(index)
                errors[index] = outcome
            else:
                STATS.record(failures=1)
                failed = to_storage_error(outcome, loc, relatives[index])
                if on_error == "raise":
                    raise failed from None
                results[index] = failed
        if not again:
            break
        first, error = next(iter(errors.items()), last)  # none: a round that started stalled tried nothing
        last, attempt = (first, error), max(0, max(failures[i] for i in again) - 1)
        if attempt >= retries or clock.stalled():
            STATS.record(failures=len(again))
            note = f"; {len(again)} of {len(paths)} files not fetched{gave_up(attempt, retries, clock.answered)}"
            raise to_storage_error(error, loc, relatives[first], note) from None
        what = f"{loc.url}: {len(again)} of {len(paths)} files (first {relatives[first]!r})"
        note_retry(loc, what, error, attempt, retries, count=len(errors))
        pending = again
    return results
