"""Bounded retries of transient storage errors, their counters, and redacted errors.

Every exception leaving :mod:`inat_hf.storage` is a redacted StorageError raised ``from None`` (or a
ValueError for a bad relative path). Transient errors (lost connections, timeouts, 408/429/5xx) are retried
with bounded exponential backoff, logged at WARNING on ``inat_hf.storage`` and counted in :data:`STATS`;
when they persist the StorageError names the URL, what failed and "gave up after N retries".
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import azure.core.exceptions as azure_errors

from inat_hf.errors import StorageAuthError, StorageError, StorageNotFoundError
from inat_hf.storage.azure import AZURE_HINT, AZURE_PROTOCOLS
from inat_hf.storage.location import Location, where
from inat_hf.storage.redaction import describe_error

try:
    import aiohttp
except ImportError:  # pragma: no cover - aiohttp comes with adlfs
    aiohttp = None  # type: ignore[assignment]

logger = logging.getLogger("inat_hf.storage")
T = TypeVar("T")

DEFAULT_RETRIES = 3
"""Most retries of an operation (of each file, for :func:`fetch_many`) after transient errors."""
RETRY_BASE_DELAY = 0.25  # seconds before the first retry; doubled for each next one, with jitter
RETRY_MAX_DELAY = 8.0
RETRY_DEADLINE = 30.0
"""Seconds without progress (since an operation began, or since ``fetch_many`` last got an answer) after
which no retry is started: a dead endpoint fails in about this plus one attempt, whatever the retry count."""
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_ERRORS = (TimeoutError, ConnectionError, azure_errors.ServiceRequestError,
                     azure_errors.ServiceResponseError, azure_errors.IncompleteReadError,
                     *((aiohttp.ClientError,) if aiohttp else ()))  # fmt: skip
_GENERIC_HINT = "check the credentials given in storage_options or in the environment"


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


def classify(exc: BaseException) -> Literal["not_found", "auth", "transient", "other"]:
    """Classify an error; only "transient" ones (timeouts, lost connections, 408/429/5xx) are retried."""
    if isinstance(exc, azure_errors.IncompleteReadError):  # an HttpResponseError that may carry a 200
        return "transient"
    status = getattr(exc, "status_code", None) if isinstance(exc, azure_errors.HttpResponseError) else None
    if aiohttp is not None and isinstance(exc, aiohttp.ClientResponseError):
        status = exc.status
    cause = exc.__cause__
    if isinstance(exc, FileNotFoundError) and aiohttp is not None and isinstance(cause, aiohttp.ClientResponseError):
        return classify(cause)  # fsspec's HTTP filesystem says "not found" for any failed status (a refused SAS: 403)
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


def to_storage_error(exc: BaseException, loc: Location, relative: str, note: str = "") -> StorageError:
    """Return the redacted StorageError (or subclass) that stands for ``exc``; ``note`` ends a generic one."""
    if isinstance(exc, StorageError):
        return exc
    kind, place = classify(exc), where(loc, relative)
    protocols = {loc.fs.protocol} if isinstance(loc.fs.protocol, str) else set(loc.fs.protocol)
    azure = bool(protocols & AZURE_PROTOCOLS)
    if kind == "not_found":
        codes = {getattr(e, "error_code", None) for e in (exc, exc.__cause__, exc.__context__)}
        detail = " (the container does not exist)" if "ContainerNotFound" in codes else ""
        check = "the URL and that the container and the path exist" if azure else "the URL and the path"
        return StorageNotFoundError(loc.redact(f"{place}: not found{detail}. Check {check}"))
    if kind == "auth":
        hint = AZURE_HINT if azure else _GENERIC_HINT
        return StorageAuthError(loc.redact(f"{place}: access denied ({describe_error(exc)}); {hint}"))
    return StorageError(loc.redact(f"{place}: {describe_error(exc)}{note}"))


def _backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (from 0): exponential, capped, with jitter."""
    return min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2**attempt) * random.uniform(0.5, 1.0)


def retrying(call: Callable[[], T], loc: Location, relative: str, retries: int | None = None) -> T:
    """Return ``call()``, retrying transient errors (at most ``retries`` times, default :data:`DEFAULT_RETRIES`,
    none started after :data:`RETRY_DEADLINE` seconds); raise any error as a redacted StorageError.
    """
    retries = DEFAULT_RETRIES if retries is None else retries
    started = time.monotonic()
    for attempt in itertools.count():
        try:
            return call()
        except Exception as exc:
            transient = classify(exc) == "transient"
            if not transient or attempt >= retries or time.monotonic() - started >= RETRY_DEADLINE:
                STATS.record(failures=1)
                failure = to_storage_error(exc, loc, relative, gave_up(attempt, retries, started) if transient else "")
                break
            note_retry(loc, where(loc, relative), exc, attempt, retries, count=1)
    # raised out of the handler: the error does not keep the original as its context either (its arguments
    # may hold a URL with a signature, e.g. an aiohttp error of a SAS URL)
    raise failure from None


def gave_up(attempt: int, retries: int, since: float) -> str:
    """The end of the message of a transient error that is not retried any more."""
    if retries == 0:
        return " (not retried here)"
    stalled = time.monotonic() - since >= RETRY_DEADLINE and attempt < retries
    return f"; gave up after {attempt} {'retry' if attempt == 1 else 'retries'}" + (
        f" ({time.monotonic() - since:.0f} s without progress)" if stalled else ""
    )


def note_retry(loc: Location, what: str, exc: BaseException, attempt: int, retries: int, count: int) -> None:
    """Count, log (redacted, at WARNING) and wait before a retry."""
    STATS.record(retries=count)
    message = f"{what}: {describe_error(exc)}; retry {attempt + 1} of {retries}"
    logger.warning("%s", loc.redact(message))
    time.sleep(_backoff(attempt))
