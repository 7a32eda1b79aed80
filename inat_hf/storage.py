"""The only module that talks to storage: URLs, credentials, concurrent fetches, retries, redaction.

Credentials come from ``storage_options`` or from the environment variables that adlfs and azure-identity
read by themselves. Every exception leaving this module is a redacted StorageError raised ``from None``
(or a ValueError for a bad relative path). Transient errors (lost connections, timeouts, 408/429/5xx) are
retried with bounded exponential backoff, logged at WARNING on ``inat_hf.storage`` and counted in
:data:`STATS`; when they persist the StorageError names the URL, what failed and "gave up after N retries".

How long a dead endpoint can take to fail
    Azure (``az://``, ``abfs://``) clients get bounded socket timeouts (:data:`AZURE_CONNECTION_TIMEOUT`,
    :data:`AZURE_READ_TIMEOUT`) and the SDK's own retries of lost connections and timeouts are off
    (:data:`AZURE_SDK_RETRY`): this module retries them, at most :data:`DEFAULT_RETRIES` times, and starts
    no retry (and, in ``fetch_many``, no new request) after :data:`RETRY_DEADLINE` seconds without an
    answer. With the defaults, measured on loopback (a closed port, a full accept queue, a silent
    listener): a refused connection fails in about 1.5 s (``fetch_many`` of 256 files: 5 s), a host that
    drops the connection requests in 33 s, an endpoint that accepts connections but never answers in 40 s
    (two 20 s read timeouts), also for ``fetch_many`` of 256 files. The SDK's defaults (3 retries after
    15-42 s waits, 60 s read timeouts) made that 5.6 minutes for a refused connection and about 22 minutes
    for a silent endpoint (4 attempts of 5.5 minutes). ``tests/test_faults.py`` checks these bounds with
    shorter settings.
    Override per call in ``storage_options``: ``connection_timeout`` and ``read_timeout`` (seconds, also
    understood by adlfs) and the SDK's retry keywords ``retry_total``, ``retry_connect``, ``retry_read``,
    ``retry_status``, ``initial_backoff``, ``increment_base``, ``random_jitter_range``.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import os
import posixpath
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, BinaryIO, Literal, TypeVar

import azure.core.exceptions as azure_errors
import fsspec
from fsspec.asyn import AsyncFileSystem, sync
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from inat_hf.errors import StorageAuthError, StorageError, StorageNotFoundError
from inat_hf.redaction import redact, secrets_of

try:
    import aiohttp
except ImportError:  # pragma: no cover - aiohttp comes with adlfs
    aiohttp = None

logger = logging.getLogger("inat_hf.storage")
T = TypeVar("T")

DEFAULT_RETRIES = 3
"""Most retries of an operation (of each file, for :func:`fetch_many`) after transient errors."""
RETRY_BASE_DELAY = 0.25  # seconds before the first retry; doubled for each next one, with jitter
RETRY_MAX_DELAY = 8.0
RETRY_DEADLINE = 30.0
"""Seconds without progress (since an operation began, or since ``fetch_many`` last got an answer) after
which no retry is started: a dead endpoint fails in about this plus one attempt, whatever the retry count."""
AZURE_CONNECTION_TIMEOUT = 10.0
"""Seconds an Azure client waits to open a connection (azure-storage-blob's default: 20)."""
AZURE_READ_TIMEOUT = 20.0
"""Seconds an Azure client waits between two reads of a response (azure-storage-blob's default: 60)."""
AZURE_SDK_RETRY: Mapping[str, float] = MappingProxyType(
    {"retry_total": 2, "retry_connect": 0, "retry_read": 0, "retry_status": 2,
     "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 0.5}
)  # fmt: skip
"""The Azure SDK's own retry policy (``azure.storage.blob.ExponentialRetry`` keywords): lost connections and
timeouts are not retried there but here (bounded, counted, logged); a 408/429/5xx answer is retried at most
twice after 1 and 3 s (also inside streamed writes, which this module cannot retry). The SDK's default, 3
retries after 15, 18 and 24 s of any error, made a refused connection take 85 s per attempt."""
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_ERRORS = (TimeoutError, ConnectionError, azure_errors.ServiceRequestError,
                     azure_errors.ServiceResponseError, azure_errors.IncompleteReadError,
                     *((aiohttp.ClientError,) if aiohttp else ()))  # fmt: skip
_AZURE_PROTOCOLS = frozenset({"az", "abfs", "abfss"})
_AZURE_HINT = (
    "give credentials in storage_options (connection_string; or account_name with account_key, sas_token "
    "or credential) or in the environment (AZURE_STORAGE_CONNECTION_STRING; or AZURE_STORAGE_ACCOUNT_NAME "
    "with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN; or AZURE_STORAGE_ACCOUNT_NAME alone to use "
    "DefaultAzureCredential, e.g. after `az login`)"
)
_GENERIC_HINT = "check the credentials given in storage_options or in the environment"
_NOT_TRIED = object()  # a fetch_many round did not start this request (storage silent too long)


@dataclass
class StorageStats:
    """Process-wide counters of retries and of operations that failed for good; read :data:`STATS`."""

    retries: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, *, retries: int = 0, failures: int = 0) -> None:
        """Add to the counters (thread-safe)."""
        with self._lock:
            self.retries += retries
            self.failures += failures

    def reset(self) -> None:
        """Set both counters back to zero."""
        with self._lock:
            self.retries = self.failures = 0


STATS = StorageStats()


@dataclass(frozen=True)
class Location:
    """A root path (``root``: protocol stripped, no trailing slash) in a filesystem ``fs``; ``url`` is the
    redacted URL for messages. Make one with :func:`resolve`."""

    fs: fsspec.AbstractFileSystem = field(repr=False)
    root: str
    url: str
    _secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)
    _azure: tuple[tuple[str, float], ...] = field(default=(), repr=False, compare=False)  # client settings

    def path(self, relative: str = "") -> str:
        """Return the path of ``relative`` (posix) under the root; raise ValueError if it leaves the root."""
        clean = _clean_relative(relative, self.url)
        if not clean:
            return self.root
        return f"{self.root}{clean}" if self.root.endswith("/") or not self.root else f"{self.root}/{clean}"

    def child(self, relative: str) -> Location:
        """Return the Location rooted at ``self.path(relative)``."""
        clean = _clean_relative(relative, self.url)
        return Location(self.fs, self.path(clean), _where(self, clean), self._secrets, self._azure)


def _clean_relative(relative: str, url: str) -> str:
    """Return ``relative`` normalised ("" for the root), or raise ValueError if it is absolute or escapes."""
    if not relative:
        return ""
    if relative.startswith(("/", "\\")) or "://" in relative or re.match(r"[A-Za-z]:[\\/]", relative):
        raise ValueError(f"path {relative!r} is absolute; give a path relative to {url}")
    clean = posixpath.normpath(relative)
    if clean == ".." or clean.startswith("../"):
        raise ValueError(f"path {relative!r} leads out of {url}: '..' may not escape the root")
    return "" if clean == "." else clean


def _where(loc: Location, relative: str) -> str:
    """Return the URL of ``relative`` under ``loc``, for messages."""
    return f"{loc.url}/{relative}" if relative else loc.url


def resolve(url: str, storage_options: Mapping[str, Any] | None = None) -> Location:
    """Open the filesystem of ``url`` and return a :class:`Location` rooted at its path.

    Parameters
    ----------
    url : str
        Any fsspec URL, or a local path (a relative one is made absolute).
    storage_options : mapping, optional
        Passed to the filesystem unchanged (adlfs: ``connection_string``; or ``account_name`` with
        ``account_key``, ``sas_token`` or ``credential``); without them adlfs reads the ``AZURE_STORAGE_*``
        environment variables or uses ``DefaultAzureCredential``. Secret values are remembered on the
        Location (never shown) so that its messages are redacted with them.

    Raises
    ------
    StorageAuthError
        If adlfs cannot make a client from the credentials (missing or malformed).
    StorageError
        If the protocol is unknown or its fsspec implementation is not installed.
    """
    url = os.fspath(url)
    options = dict(storage_options or {})
    secrets = secrets_of(options)
    shown = redact(url, secrets).rstrip("/") or url[:1]
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    azure = _azure_settings(options, shown) if protocol in _AZURE_PROTOCOLS else ()
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except Exception as exc:
        if isinstance(exc, ImportError):
            message = f"{shown}: cannot open {protocol}:// ({_summary(exc)}); install its fsspec package"
        elif protocol in _AZURE_PROTOCOLS and isinstance(exc, ValueError | azure_errors.AzureError):
            message = f"{shown}: cannot connect to Azure ({_summary(exc)}); {_AZURE_HINT}"
            raise StorageAuthError(redact(message, secrets)) from None
        else:
            message = f"{shown}: cannot open ({_summary(exc)})"
        raise StorageError(redact(message, secrets)) from None
    root = path.rstrip("/") or path
    if azure:
        _bound_azure_client(getattr(fs, "service_client", None), azure)
    return Location(fs, root, root if isinstance(fs, LocalFileSystem) else shown, secrets, azure)


def _azure_settings(options: dict[str, Any], shown: str) -> tuple[tuple[str, float], ...]:
    """Take the Azure client settings out of ``options`` (the timeouts stay: adlfs reads them too).

    Defaults are :data:`AZURE_SDK_RETRY`, :data:`AZURE_CONNECTION_TIMEOUT` and :data:`AZURE_READ_TIMEOUT`.
    """
    settings: dict[str, float] = {
        **AZURE_SDK_RETRY,
        **{key: options.pop(key) for key in AZURE_SDK_RETRY if key in options},
        "connection_timeout": options.setdefault("connection_timeout", AZURE_CONNECTION_TIMEOUT),
        "read_timeout": options.setdefault("read_timeout", AZURE_READ_TIMEOUT),
    }
    for key, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{shown}: storage option {key}={value!r} must be a number >= 0")
    return tuple(sorted(settings.items()))


def _bound_azure_client(client: Any, settings: tuple[tuple[str, float], ...]) -> None:
    """Give an azure-storage-blob client (and every client made from it: they share its policy and transport)
    the retry policy and socket timeouts of ``settings``; warn if this SDK version does not let us."""
    if client is None:
        return
    config = getattr(client, "_config", None)  # the SDK offers no public way to change them after creation
    policy, transport = getattr(config, "retry_policy", None), getattr(config, "transport", None)
    connection = getattr(transport, "connection_config", None)
    names = {"retry_total": "total_retries", "retry_connect": "connect_retries", "retry_read": "read_retries",
             "retry_status": "status_retries"}  # fmt: skip
    wanted = dict(settings)
    if connection is None or not all(hasattr(policy, names.get(key, key)) for key in AZURE_SDK_RETRY):
        logger.warning(
            "cannot bound the Azure SDK's retries and timeouts (azure-storage-blob changed): a dead endpoint "
            "may take minutes to fail"
        )
        return
    for key in AZURE_SDK_RETRY:
        setattr(policy, names.get(key, key), wanted[key])
    connection.timeout, connection.read_timeout = wanted["connection_timeout"], wanted["read_timeout"]


def _summary(exc: BaseException) -> str:
    """Return the exception's type and the first line of its message, shortened."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _kind(exc: BaseException) -> Literal["not_found", "auth", "transient", "other"]:
    """Classify an error; only "transient" ones (timeouts, lost connections, 408/429/5xx) are retried."""
    if isinstance(exc, azure_errors.IncompleteReadError):  # an HttpResponseError that may carry a 200
        return "transient"
    status = getattr(exc, "status_code", None) if isinstance(exc, azure_errors.HttpResponseError) else None
    if aiohttp is not None and isinstance(exc, aiohttp.ClientResponseError):
        status = exc.status
    if isinstance(exc, FileNotFoundError | azure_errors.ResourceNotFoundError) or status == 404:
        return "not_found"
    if isinstance(exc, PermissionError | azure_errors.ClientAuthenticationError) or status in (401, 403):
        return "auth"
    if status is not None:
        return "transient" if status in _TRANSIENT_STATUS else "other"
    if isinstance(exc, _TRANSIENT_ERRORS):
        return "transient"
    # azure-storage-blob's download gives up on a cut answer with a status-less HttpResponseError around it
    inner = getattr(exc, "inner_exception", None) if isinstance(exc, azure_errors.HttpResponseError) else None
    return "transient" if isinstance(inner, _TRANSIENT_ERRORS) else "other"


def _to_storage_error(exc: BaseException, loc: Location, relative: str, note: str = "") -> StorageError:
    """Return the redacted StorageError (or subclass) that stands for ``exc``; ``note`` ends a generic one."""
    if isinstance(exc, StorageError):
        return exc
    kind, where = _kind(exc), _where(loc, relative)
    protocols = {loc.fs.protocol} if isinstance(loc.fs.protocol, str) else set(loc.fs.protocol)
    azure = bool(protocols & _AZURE_PROTOCOLS)
    if kind == "not_found":
        codes = {getattr(e, "error_code", None) for e in (exc, exc.__cause__, exc.__context__)}
        detail = " (the container does not exist)" if "ContainerNotFound" in codes else ""
        check = "the URL and that the container and the path exist" if azure else "the URL and the path"
        return StorageNotFoundError(redact(f"{where}: not found{detail}. Check {check}", loc._secrets))
    if kind == "auth":
        hint = _AZURE_HINT if azure else _GENERIC_HINT
        return StorageAuthError(redact(f"{where}: access denied ({_summary(exc)}); {hint}", loc._secrets))
    return StorageError(redact(f"{where}: {_summary(exc)}{note}", loc._secrets))


def _backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (from 0): exponential, capped, with jitter."""
    return min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2**attempt) * random.uniform(0.5, 1.0)


def _retrying(call: Callable[[], T], loc: Location, relative: str, retries: int | None = None) -> T:
    """Return ``call()``, retrying transient errors (at most ``retries`` times, default :data:`DEFAULT_RETRIES`,
    none started after :data:`RETRY_DEADLINE` seconds); raise any error as a redacted StorageError."""
    retries = DEFAULT_RETRIES if retries is None else retries
    started = time.monotonic()
    for attempt in itertools.count():
        try:
            return call()
        except Exception as exc:
            transient = _kind(exc) == "transient"
            if not transient or attempt >= retries or time.monotonic() - started >= RETRY_DEADLINE:
                STATS.record(failures=1)
                note = _gave_up(attempt, retries, started) if transient else ""
                raise _to_storage_error(exc, loc, relative, note) from None
            _note_retry(loc, _where(loc, relative), exc, attempt, retries, count=1)
    raise AssertionError("unreachable")  # pragma: no cover


def _gave_up(attempt: int, retries: int, since: float) -> str:
    """The end of the message of a transient error that is not retried any more."""
    if retries == 0:
        return " (not retried here)"
    stalled = time.monotonic() - since >= RETRY_DEADLINE and attempt < retries
    return f"; gave up after {attempt} {'retry' if attempt == 1 else 'retries'}" + (
        f" ({time.monotonic() - since:.0f} s without progress)" if stalled else ""
    )


def _note_retry(loc: Location, what: str, exc: BaseException, attempt: int, retries: int, count: int) -> None:
    """Count, log (redacted, at WARNING) and wait before a retry."""
    STATS.record(retries=count)
    message = f"{what}: {_summary(exc)}; retry {attempt + 1} of {retries}"
    logger.warning("%s", redact(message, loc._secrets))
    time.sleep(_backoff(attempt))


def _needs_parent_dirs(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether files can only be written into existing folders (object stores and memory need none)."""
    return not isinstance(fs, AsyncFileSystem | MemoryFileSystem)


def read_bytes(loc: Location, relative: str = "") -> bytes:
    """Return the whole content of a file, retrying transient errors."""
    path = loc.path(relative)
    return _retrying(lambda: loc.fs.cat_file(path), loc, relative)


def exists(loc: Location, relative: str = "") -> bool:
    """Whether a file or folder exists; auth and network errors are raised, not answered with False."""
    path = loc.path(relative)
    loc.fs.invalidate_cache(path)
    return _retrying(lambda: bool(loc.fs.exists(path)), loc, relative)


def size(loc: Location, relative: str = "") -> int:
    """Return the size of a file in bytes."""
    info = _retrying(lambda: loc.fs.info(loc.path(relative)), loc, relative)
    if info.get("type") != "file":
        raise StorageError(redact(f"{_where(loc, relative)}: is a folder, not a file", loc._secrets))
    return int(info["size"])


def file_token(loc: Location, relative: str = "") -> str:
    """A short string that changes when the file changes: its size and its ETag or modification time.

    Cheap (one metadata request, no content read); used to key caches. Never holds a secret.
    """
    info = _retrying(lambda: loc.fs.info(loc.path(relative)), loc, relative)
    if info.get("type") != "file":
        raise StorageError(redact(f"{_where(loc, relative)}: is a folder, not a file", loc._secrets))
    version = next(
        (
            str(info[key])
            for key in ("etag", "ETag", "mtime", "last_modified", "LastModified", "created")
            if info.get(key)
        ),
        "",
    )
    return f"{int(info['size'])}:{version}"


def list_files(loc: Location, relative: str = "") -> list[str]:
    """Return the sorted paths, relative to ``loc.root``, of all files under ``relative`` (recursive).

    An empty folder gives ``[]``; raises StorageNotFoundError if nothing exists at ``relative``.
    """
    path = loc.path(relative)
    loc.fs.invalidate_cache(path)
    found = _retrying(lambda: loc.fs.find(path, withdirs=False), loc, relative)
    if not found and not exists(loc, relative):
        raise _to_storage_error(FileNotFoundError(path), loc, relative) from None
    prefix = loc.root if loc.root.endswith("/") or not loc.root else loc.root + "/"
    return sorted("" if p == loc.root else p.removeprefix(prefix) for p in found)


def write_bytes(loc: Location, relative: str, data: bytes) -> None:
    """Write ``data`` to a file, replacing it; parent folders are made where the filesystem needs them."""
    path = loc.path(relative)

    def write() -> None:
        if _needs_parent_dirs(loc.fs):
            loc.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        loc.fs.pipe_file(path, data)

    _retrying(write, loc, relative)


def write_many(loc: Location, items: Iterable[tuple[str, bytes]], *, max_workers: int = 16) -> int:
    """Write ``(relative, data)`` pairs concurrently and return how many were written.

    ``items`` is consumed lazily, ``4 * max_workers`` at a time; the first failure is raised.
    """
    workers, written, pending = max(1, max_workers), 0, iter(items)
    with ThreadPoolExecutor(workers, thread_name_prefix="inat-write") as pool:
        for batch in iter(lambda: list(itertools.islice(pending, 4 * workers)), []):
            written += len(list(pool.map(lambda item: write_bytes(loc, *item), batch)))
    return written


class _Clock:
    """When storage last answered (content, or an error that is not transient), shared by a fetch's rounds,
    and whether a request failed transiently since (a slow answer still on its way is not a stall)."""

    def __init__(self) -> None:
        self.answered, self.failed = time.monotonic(), False

    def note(self, outcome: bytes | BaseException) -> bytes | BaseException:
        if not isinstance(outcome, BaseException) or _kind(outcome) != "transient":
            self.answered, self.failed = time.monotonic(), False
        else:
            self.failed = True
        return outcome

    def stalled(self) -> bool:
        """Whether requests failed and :data:`RETRY_DEADLINE` seconds went by without an answer."""
        return self.failed and time.monotonic() - self.answered >= RETRY_DEADLINE


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
    ``_NOT_TRIED`` for the requests not started because storage had not answered for too long."""
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
    retries = DEFAULT_RETRIES if retries is None else max(0, retries)
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
            elif _kind(outcome) == "transient":
                failures[index] += 1
                again.append(index)
                errors[index] = outcome
            else:
                STATS.record(failures=1)
                results[index] = _to_storage_error(outcome, loc, relatives[index])
                if on_error == "raise":
                    raise results[index] from None
        if not again:
            break
        first, error = next(iter(errors.items()), last)  # none: a round that started stalled tried nothing
        last, attempt = (first, error), max(0, max(failures[i] for i in again) - 1)
        if attempt >= retries or clock.stalled():
            STATS.record(failures=len(again))
            note = f"; {len(again)} of {len(paths)} files not fetched{_gave_up(attempt, retries, clock.answered)}"
            raise _to_storage_error(error, loc, relatives[first], note) from None
        what = f"{loc.url}: {len(again)} of {len(paths)} files (first {relatives[first]!r})"
        _note_retry(loc, what, error, attempt, retries, count=len(errors))
        pending = again
    return results


class _GuardedFile(io.BufferedIOBase):
    """A file whose errors are redacted StorageErrors; reads that fail transiently are retried."""

    def __init__(self, raw: Any, loc: Location, relative: str) -> None:
        super().__init__()
        self._raw, self._loc, self._relative = raw, loc, relative

    def read(self, size: int | None = -1) -> bytes:
        start = self._raw.tell() if self._raw.seekable() else None

        def attempt() -> bytes:
            if start is not None and self._raw.tell() != start:
                self._raw.seek(start)  # a failed read of an fsspec file does not move; a local one may
            return self._raw.read(-1 if size is None else size)

        return _retrying(attempt, self._loc, self._relative, DEFAULT_RETRIES if start is not None else 0)

    read1 = read

    def write(self, data: Any) -> int:
        return _retrying(lambda: self._raw.write(data), self._loc, self._relative, 0)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return _retrying(lambda: self._raw.seek(offset, whence), self._loc, self._relative, 0)

    def tell(self) -> int:
        return self._raw.tell()

    def readable(self) -> bool:
        return self._raw.readable()

    def writable(self) -> bool:
        return self._raw.writable()

    def seekable(self) -> bool:
        return self._raw.seekable()

    def close(self) -> None:
        if not self.closed:
            try:
                _retrying(self._raw.close, self._loc, self._relative, 0)
            finally:
                super().close()


def _bounded_file(loc: Location, raw: Any) -> Any:
    """``raw``, an open file; an adlfs file has a client of its own, which gets the Location's Azure settings."""
    if loc._azure:
        _bound_azure_client(getattr(raw, "container_client", None), loc._azure)
    return raw


@contextmanager
def open_binary(loc: Location, relative: str = "") -> Iterator[BinaryIO]:
    """Open a file for a streaming binary read (decompress ``.gz`` yourself); errors are StorageErrors."""
    path = loc.path(relative)
    raw = _retrying(lambda: _bounded_file(loc, loc.fs.open(path, "rb")), loc, relative)
    with _GuardedFile(raw, loc, relative) as file:
        yield file  # type: ignore[misc]


@contextmanager
def open_output(loc: Location, relative: str) -> Iterator[BinaryIO]:
    """Open a file for a streaming binary write; parent folders are made where the filesystem needs them.

    The file is complete when the ``with`` block ends. If the block raises, the partial file is deleted
    (best effort) and the error goes on unchanged.
    """
    path = loc.path(relative)

    def open_raw() -> Any:
        if _needs_parent_dirs(loc.fs):
            loc.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        return _bounded_file(loc, loc.fs.open(path, "wb"))

    file = _GuardedFile(_retrying(open_raw, loc, relative, 0), loc, relative)
    try:
        yield file  # type: ignore[misc]
    except BaseException:
        with suppress(Exception):
            file.close()
        try:
            loc.fs.rm_file(path)
        except Exception as exc:
            message = f"{_where(loc, relative)}: partial output not removed ({_summary(exc)})"
            logger.warning("%s", redact(message, loc._secrets))
        raise
    file.close()
