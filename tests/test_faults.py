"""Storage faults, for real: Azurite stopped and restarted in the middle of ``download_and_prepare``, and a
fault-injecting TCP proxy (``tests/faultproxy.py``) in front of Azurite that resets connections, cuts an upload
mid-file (``extract`` and ``prepare``: no partial blob), delays answers or never answers. Real adlfs, real
Azurite, no mocks; every wait is bounded so that a hang fails the test instead of blocking the run. Each test
records its row of ``RELIABILITY.md`` once its checks hold."""

from __future__ import annotations

import functools
import gc
import io
import logging
import random
import re
import tarfile
import threading
import traceback
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import datasets
import pytest
from faultproxy import FaultProxy
from reliability import record

from inat_hf import storage
from inat_hf.errors import StorageError
from inat_hf.metadata import load_metadata
from inat_hf.prepare import prepare as prepare_files
from inat_hf.realcopy import extract as extract_module
from inat_hf.realcopy.extract import extract_archive
from inat_hf.replica import write_sample
from inat_hf.testing.azurite import AzuriteServer
from inaturalist_fl import INaturalistFL

pytestmark = pytest.mark.azurite
T = TypeVar("T")

HANG_S = 90.0
"""A call that has not returned after this long is a hang: the test fails (no timing is asserted below it)."""
CHUNK = 8
"""Files per ``fetch_many`` call once the test wraps it to stop storage after a number of images."""


# --- helpers -----------------------------------------------------------------------------------------------


def bounded(call: Callable[[], T], limit_s: float = HANG_S) -> T:
    """Return ``call()`` run in a thread, or raise what it raised; fail the test if it hangs past ``limit_s``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="bounded-call")
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        pytest.fail(f"still running after {limit_s:.0f} s: a hang, not a bounded failure", pytrace=False)
    if "error" in box:
        raise box["error"]
    return box["value"]


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes and contexts, outermost first."""
    found: list[BaseException] = []
    while exc is not None and exc not in found:
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def storage_error_in(exc: BaseException) -> StorageError:
    """The StorageError in the cause chain of ``exc`` (fails the test if there is none)."""
    errors = [e for e in chain(exc) if isinstance(e, StorageError)]
    assert errors, f"no StorageError in the cause chain: {[type(e).__name__ for e in chain(exc)]}"
    return errors[0]


def assert_no_secret(exc: BaseException, caplog: pytest.LogCaptureFixture, server: AzuriteServer) -> None:
    """No account key or connection string in the error chain, its traceback or the logs."""
    formatted = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    texts = [formatted, caplog.text, *(str(e) for e in chain(exc))]
    for secret in (server.account_key, server.connection_string):
        assert not any(secret in text for text in texts)


def stable(text: str) -> str:
    """``text`` without what changes from run to run (container names, ports, file names, counts, seconds)."""
    text = re.sub(r"az://[\w-]+", "az://CONTAINER", text)
    text = re.sub(r"127\.0\.0\.1(:|', )\d+", r"127.0.0.1\1PORT", text)
    text = re.sub(r"'?(train|val)/[\w/.-]+\.jpg'?", r"\1/FILE.jpg", text)
    text = re.sub(r"\d+ of \d+ files", "N of M files", text)
    return re.sub(r"\(\d+ s without progress\)", "(S s without progress)", text)


def first_line(exc: BaseException) -> str:
    """The class and first line of ``exc``, made :func:`stable`, the wrapped error's message left out (a
    reset connection reads "Connection reset by peer" or "Connect call failed", as the race goes)."""
    text = re.sub(r": (\w+Error): [^;]*", r": \1: ...", str(exc).splitlines()[0], count=1)
    return stable(f"{type(exc).__name__}: {text}")


def outcome(exc: BaseException, url: str) -> str:
    """:func:`first_line` of a StorageError about ``url``, shorter: the path under it, the error and the end."""
    text = first_line(exc).removeprefix(f"{type(exc).__name__}: ").replace(stable(url) + "/", "")
    return text.replace(": ...", "").replace(" (S s without progress)", " (no progress)")


def proxied(server: AzuriteServer, proxy: FaultProxy) -> dict[str, str]:
    """``storage_options`` whose blob endpoint is the proxy in front of ``server``."""
    return {"connection_string": server.connection_string.replace(f":{server.port}/", f":{proxy.port}/")}


def prepare(url: str, options: dict[str, str], cache: Path) -> INaturalistFL:
    builder = INaturalistFL(config_name="family_user", data_dir=url, storage_options=options, cache_dir=str(cache))
    builder.download_and_prepare()
    return builder


def check_counts(builder: INaturalistFL, counts: Any) -> str:
    """Split sizes equal the replica's and no image id is there twice; return what was seen."""
    sizes = {split: builder.info.splits[split].num_examples for split in ("train", "validation")}
    assert sizes == {"train": counts.train_images, "validation": counts.val_images}
    ids = [i for split in sizes for i in builder.as_dataset(split).select_columns(["image_id"])["image_id"]]
    assert len(ids) == len(set(ids)) == counts.train_images + counts.val_images
    return f"train {sizes['train']}, validation {sizes['validation']}, no duplicate id"


class StopAfter:
    """Wraps ``storage.fetch_many`` (with monkeypatch) so that images are fetched ``CHUNK`` at a time through
    the real function, and ``action`` runs once, in a thread, when ``after`` images have been fetched. The
    chunk fetched next races with it; the chunks after that wait until it is done."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, after: int, action: Callable[[], None]) -> None:
        self.after, self.action, self.fetched = after, action, 0
        self.thread: threading.Thread | None = None
        self._real, self._lock = storage.fetch_many, threading.Lock()
        monkeypatch.setattr(storage, "fetch_many", self)

    @property
    def fired(self) -> bool:
        return self.thread is not None

    def __call__(self, loc: storage.Location, relatives: list[str], **kwargs: Any) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(relatives), CHUNK):
            with self._lock:
                racing = self.thread is None and self.fetched >= self.after
                if racing:
                    self.thread = threading.Thread(target=self.action, daemon=True, name="stop-storage")
                    self.thread.start()
                waiting = self.thread if self.thread is not None and not racing else None
            if waiting is not None:
                waiting.join(HANG_S)
            results += self._real(loc, relatives[start : start + CHUNK], **kwargs)
            with self._lock:
                self.fetched += len(relatives[start : start + CHUNK])
        return results


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short backoffs and Azure timeouts, so that giving up takes seconds; counters at zero."""
    monkeypatch.setattr(storage.retry, "RETRY_BASE_DELAY", 0.05)
    monkeypatch.setattr(storage.retry, "RETRY_MAX_DELAY", 0.2)
    monkeypatch.setattr(storage.azure, "AZURE_CONNECTION_TIMEOUT", 2.0)
    monkeypatch.setattr(storage.azure, "AZURE_READ_TIMEOUT", 2.0)
    monkeypatch.setattr(storage.retry, "RETRY_DEADLINE", 6.0)  # a silent endpoint: 3 read timeouts, then no retry
    storage.STATS.reset()


# --- an Azurite of our own, stopped and started again ------------------------------------------------------


@dataclass
class OwnAzurite(AzuriteServer):
    """Azurite on a port of its own, its data in ``workdir`` so that it survives a restart; counts its
    starts and stops."""

    starts: int = 0
    stops: int = 0

    @property
    def server(self) -> AzuriteServer:
        return self

    def start(self) -> None:
        super().start()
        self.starts += 1

    def stop(self) -> None:
        if self.running:
            super().stop()
            self.stops += 1


@pytest.fixture(scope="module")
def own_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnAzurite]:
    azurite = OwnAzurite(tmp_path_factory.mktemp("own-azurite"))
    azurite.start()
    try:
        yield azurite
    finally:
        azurite.stop()


@pytest.fixture(scope="module")
def own_replica(own_azurite: OwnAzurite, tiny_replica: Any) -> tuple[str, Any]:
    """The tiny replica (with its JPEGs) in a container of the module's own Azurite."""
    from azure.storage.blob import BlobServiceClient

    name = f"faults-{uuid.uuid4().hex[:12]}"
    with BlobServiceClient.from_connection_string(own_azurite.server.connection_string) as service:
        service.create_container(name)
    url = f"az://{name}/inat"
    counts = write_sample(url, scale="tiny", seed=0, storage_options=own_azurite.server.storage_options())
    assert counts == tiny_replica.counts
    return url, counts


@pytest.fixture
def azurite_back(own_azurite: OwnAzurite) -> Iterator[OwnAzurite]:
    """The module's Azurite, started again after the test if the test left it stopped."""
    yield own_azurite
    if not own_azurite.running:
        own_azurite.start()


def test_azurite_stopped_mid_prepare_fails_with_a_storage_error_and_a_rerun_completes(
    azurite_back, own_replica, quick, monkeypatch, caplog, tmp_path
):
    url, counts = own_replica
    options = azurite_back.server.storage_options()
    monkeypatch.setattr(storage.retry, "DEFAULT_RETRIES", 2)
    stopper, stops = StopAfter(monkeypatch, after=3 * CHUNK, action=azurite_back.stop), azurite_back.stops

    with (
        caplog.at_level(logging.WARNING, logger="inat_hf.storage"),
        pytest.raises(datasets.exceptions.DatasetGenerationError) as raised,
    ):
        bounded(lambda: prepare(url, options, tmp_path))

    assert stopper.fired and azurite_back.stops == stops + 1 and not azurite_back.running
    error = storage_error_in(raised.value)
    assert str(error).startswith(f"{url}/") and "not fetched; gave up after 2 retries" in str(error)
    assert re.search(r"ServiceRequestError|ServiceResponseError|Connection", str(error))
    assert storage.STATS.retries > 0 and "retry 1 of 2" in caplog.text
    assert_no_secret(raised.value, caplog, azurite_back.server)

    monkeypatch.setattr(storage, "fetch_many", stopper._real)
    azurite_back.start()
    rerun = check_counts(bounded(lambda: prepare(url, options, tmp_path)), counts)
    record(
        "storage fault",
        "Azurite stopped after 24 images of download_and_prepare, not restarted (2 retries)",
        "a StorageError (through DatasetGenerationError) naming the URL, what failed and the retries; no hang, "
        "no secret; a rerun after a restart gives exact counts",
        f"{first_line(error)}; rerun: {rerun}",
    )


def test_azurite_restarted_within_the_retry_budget_lets_prepare_complete(
    azurite_back, own_replica, quick, monkeypatch, caplog, tmp_path
):
    url, counts = own_replica
    monkeypatch.setattr(storage.retry, "DEFAULT_RETRIES", 8)
    monkeypatch.setattr(storage.retry, "RETRY_BASE_DELAY", 0.5)
    monkeypatch.setattr(storage.retry, "RETRY_MAX_DELAY", 4.0)  # 8 retries wait 11 to 23 s in all: Azurite needs ~2
    monkeypatch.setattr(storage.retry, "RETRY_DEADLINE", 60.0)
    restarts: list[threading.Timer] = []

    def stop_then_restart() -> None:
        azurite_back.stop()
        restarts.append(threading.Timer(0.5, azurite_back.start))
        restarts[0].start()

    stopper, stops = StopAfter(monkeypatch, after=3 * CHUNK, action=stop_then_restart), azurite_back.stops
    with caplog.at_level(logging.WARNING, logger="inat_hf.storage"):
        builder = bounded(lambda: prepare(url, azurite_back.server.storage_options(), tmp_path))
    assert stopper.fired and len(restarts) == 1
    restarts[0].join(HANG_S)

    assert azurite_back.stops == stops + 1 and azurite_back.running
    assert storage.STATS.retries > 0 and storage.STATS.failures == 0
    assert "retry 1 of 8" in caplog.text and f"{url}: " in caplog.text
    assert azurite_back.server.account_key not in caplog.text
    seen = check_counts(builder, counts)
    record(
        "storage fault",
        "Azurite stopped after 24 images of download_and_prepare and restarted 0.5 s later (8 retries)",
        "prepare completes through bounded retries, each logged (redacted) and counted; exact counts",
        f"completed, retries logged (WARNING '{stable(url)}: N of M files (first train/FILE.jpg): "
        f"ServiceRequestError: Cannot connect to host ...; retry 1 of 8'), 0 failures; {seen}",
    )


# --- a fault proxy in front of the session's Azurite --------------------------------------------------------


@pytest.fixture(scope="module")
def replica(azurite: AzuriteServer, tiny_replica: Any) -> Iterator[tuple[str, Any]]:
    """The tiny replica (with its JPEGs) in a container of the session's Azurite, written without the proxy."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    name = f"faults-{uuid.uuid4().hex[:12]}"
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
        try:
            url = f"az://{name}/inat"
            counts = write_sample(url, scale="tiny", seed=0, storage_options=azurite.storage_options())
            yield url, counts
        finally:
            with suppress(ResourceNotFoundError):
                service.delete_container(name)


@pytest.fixture
def proxy(azurite: AzuriteServer) -> Iterator[FaultProxy]:
    with FaultProxy(azurite.port, lifetime_s=240, hold_s=30) as running:
        yield running


def val_files(url: str, azurite: AzuriteServer) -> list[str]:
    """The validation JPEGs of the replica, relative to its root, read without the proxy."""
    loc = storage.resolve(url, azurite.storage_options())
    return storage.list_files(loc, "val")


def test_transient_resets_are_retried_for_metadata_and_prepare(azurite, replica, proxy, quick, caplog, tmp_path):
    url, counts = replica
    options = proxied(azurite, proxy)
    proxy.reset(after_bytes=0, connections=2)  # aiohttp tries once more by itself: the 2nd reset reaches us
    with caplog.at_level(logging.WARNING, logger="inat_hf.storage"):
        table = bounded(lambda: load_metadata(url, options))
    assert table.num_rows == counts.train_images + counts.val_images
    assert proxy.counters.resets == 2 and storage.STATS.retries >= 1 and storage.STATS.failures == 0
    assert f"{url}: " in caplog.text and "retry 1 of 3" in caplog.text  # the first request lists the folder
    assert azurite.account_key not in caplog.text
    metadata_retries = storage.STATS.retries

    proxy.reset(after_bytes=0, connections=3)
    seen = check_counts(bounded(lambda: prepare(url, options, tmp_path)), counts)
    # prepare fetches in parallel: when the 3 resets fall on first connections opened at once, aiohttp's own
    # second try on a new connection absorbs each (our retry count need not grow); in sequence, one reaches us
    assert proxy.counters.resets == 5 and storage.STATS.retries >= metadata_retries and storage.STATS.failures == 0
    record(
        "storage fault",
        "connection reset at connect, first 2 connections (metadata), then first 3 (prepare)",
        "metadata load and prepare succeed through retries (ours, or aiohttp's own second try); no failure; "
        "WARNING names the URL, redacted",
        f"metadata {table.num_rows} rows; prepare {seen}; every reset survived, WARNING 'retry 1 of 3', no failure",
    )


def test_a_reset_in_the_middle_of_the_answer_headers_is_retried(azurite, replica, proxy, quick, caplog):
    url, _ = replica
    files = val_files(url, azurite)
    expected = storage.fetch_many(storage.resolve(url, azurite.storage_options()), files)
    storage.STATS.reset()
    # inside the status line: aiohttp sends an idempotent request again once on a new connection by itself,
    # so the first wave of 32 requests and 16 of their second tries are cut, and those 16 reach storage.py
    proxy.reset(after_bytes=20, connections=48)

    with caplog.at_level(logging.WARNING, logger="inat_hf.storage"):
        fetched = bounded(lambda: storage.fetch_many(storage.resolve(url, proxied(azurite, proxy)), files))

    assert fetched == expected
    assert proxy.counters.resets == 48 and storage.STATS.retries >= 1 and storage.STATS.failures == 0
    assert re.search(rf"{re.escape(url)}: \d+ of {len(files)} files \(first 'val/", caplog.text)
    record(
        "storage fault",
        f"connection reset after 20 bytes of the answer (headers), first 48 connections, fetch_many of "
        f"{len(files)} JPEGs (32 workers)",
        "the cut answers are fetched again; same bytes as without faults; WARNING names the URL and the files",
        f"{len(files)} files byte-identical; WARNING '{stable(url)}: N of M files (first val/FILE.jpg): ...'",
    )


def test_a_reset_in_the_middle_of_the_answer_body_is_retried(azurite, replica, proxy, quick):
    url, counts = replica
    expected = storage.read_bytes(storage.resolve(url, azurite.storage_options()), "train.json")
    assert len(expected) > 8192
    proxy.reset(after_bytes=4096, connections=2)  # past the headers, inside train.json

    table = bounded(lambda: load_metadata(url, proxied(azurite, proxy)))

    assert table.num_rows == counts.train_images + counts.val_images
    assert proxy.counters.resets == 2 and storage.STATS.failures == 0
    record(
        "storage fault",
        "connection reset after 4096 bytes of the answer (body of train.json), first 2 connections",
        "the metadata loads completely (azure-storage-blob's download asks again for a cut body, 1 s later, "
        "up to 3 times; beyond that this module retries it)",
        f"metadata {table.num_rows} rows, {storage.STATS.failures} failures",
    )


def test_persistent_resets_fail_with_a_storage_error_that_says_what_failed(azurite, replica, proxy, quick, caplog):
    url, _ = replica
    files = val_files(url, azurite)
    loc = storage.resolve(url, proxied(azurite, proxy))
    proxy.reset(after_bytes=0)

    with caplog.at_level(logging.WARNING, logger="inat_hf.storage"):
        with pytest.raises(StorageError) as read:
            bounded(lambda: storage.read_bytes(loc, "train.json"))
        with pytest.raises(StorageError) as fetch:
            bounded(lambda: storage.fetch_many(loc, files, on_error="return"))

    assert str(read.value).startswith(f"{url}/train.json: ") and str(read.value).endswith("gave up after 3 retries")
    assert str(fetch.value).startswith(f"{url}/val/")
    assert f"{len(files)} of {len(files)} files not fetched; gave up after 3 retries" in str(fetch.value)
    assert storage.STATS.failures == 1 + len(files)
    for raised in (read.value, fetch.value):
        assert raised.__cause__ is None and raised.__suppress_context__
        assert_no_secret(raised, caplog, azurite)
    record(
        "storage fault",
        "every connection reset at connect: read_bytes, and fetch_many with on_error='return'",
        "StorageError naming the URL/path, the error and 'gave up after N retries'; a transient failure is "
        "raised, never returned as a bad file",
        f"{first_line(read.value)} | {first_line(fetch.value)}",
    )


def test_slow_answers_within_the_timeouts_succeed(azurite, replica, proxy, quick, tmp_path):
    url, counts = replica
    files = val_files(url, azurite)
    expected = storage.fetch_many(storage.resolve(url, azurite.storage_options()), files)
    proxy.delay(0.5)  # the read timeout is 2 s

    options = proxied(azurite, proxy)
    table = bounded(lambda: load_metadata(url, options))
    fetched = bounded(lambda: storage.fetch_many(storage.resolve(url, options), files, max_workers=8))

    assert table.num_rows == counts.train_images + counts.val_images and fetched == expected
    assert proxy.counters.delayed > 0 and storage.STATS.retries == 0 and storage.STATS.failures == 0
    record(
        "storage fault",
        "every answer delayed 0.5 s (read timeout 2 s): metadata load and fetch_many",
        "success without a retry",
        f"metadata {table.num_rows} rows, {len(files)} files identical; 0 retries",
    )


def test_a_blackholed_endpoint_fails_in_bounded_time(azurite, replica, proxy, quick, caplog, tmp_path):
    url, _ = replica
    files = val_files(url, azurite)
    options = proxied(azurite, proxy)
    loc = storage.resolve(url, options)
    proxy.blackhole()

    with caplog.at_level(logging.WARNING, logger="inat_hf.storage"):
        with pytest.raises(StorageError) as read:
            bounded(lambda: storage.read_bytes(loc, "train.json"), 30)
        with pytest.raises(StorageError) as fetch:
            bounded(lambda: storage.fetch_many(loc, files, max_workers=4), 30)
        with pytest.raises(StorageError) as build:
            bounded(lambda: prepare(url, options, tmp_path), 30)

    assert re.match(rf"{re.escape(url)}/train\.json: ServiceResponse(Timeout)?Error", str(read.value))
    assert "gave up after" in str(read.value) and "without progress" in str(read.value)
    assert str(fetch.value).startswith(f"{url}/val/") and "files not fetched; gave up after" in str(fetch.value)
    assert str(build.value).startswith(url)
    assert proxy.counters.silenced > 0
    errors = (read.value, fetch.value, build.value)
    for raised in errors:
        assert_no_secret(raised, caplog, azurite)
    record(
        "storage fault",
        "blackhole (accepts, never answers): read_bytes, fetch_many of 40 files (4 workers), building the "
        "builder; read timeout 2 s, no retry after 6 s without progress",
        "StorageError naming the URL within a bounded time (timeouts; fetch_many stops starting requests once "
        "storage is silent), never a hang",
        " | ".join(f"{what}: {outcome(e, url)}" for what, e in zip(("read", "fetch", "builder"), errors, strict=True)),
    )


def test_an_endpoint_that_goes_silent_mid_prepare_fails_in_bounded_time(
    azurite, replica, proxy, quick, monkeypatch, caplog, tmp_path
):
    url, counts = replica
    options = proxied(azurite, proxy)
    stopper = StopAfter(monkeypatch, after=3 * CHUNK, action=proxy.blackhole)

    with (
        caplog.at_level(logging.WARNING, logger="inat_hf.storage"),
        pytest.raises(datasets.exceptions.DatasetGenerationError) as raised,
    ):
        bounded(lambda: prepare(url, options, tmp_path), 60)

    assert stopper.fired
    error = storage_error_in(raised.value)
    assert str(error).startswith(f"{url}/") and "files not fetched; gave up after" in str(error)
    assert_no_secret(raised.value, caplog, azurite)

    monkeypatch.setattr(storage, "fetch_many", stopper._real)
    proxy.pass_through()
    seen = check_counts(bounded(lambda: prepare(url, options, tmp_path)), counts)
    record(
        "storage fault",
        "endpoint goes silent (blackhole) after 24 images of download_and_prepare",
        "a StorageError through DatasetGenerationError within a bounded time; a rerun once it answers gives "
        "exact counts",
        f"{first_line(error)}; rerun: {seen}",
    )


def test_storage_options_override_the_azure_client_bounds(azurite, replica, proxy, monkeypatch):
    url, _ = replica
    monkeypatch.setattr(storage.retry, "RETRY_BASE_DELAY", 0.05)
    monkeypatch.setattr(storage.retry, "DEFAULT_RETRIES", 1)
    monkeypatch.setattr(storage.retry, "RETRY_DEADLINE", 60.0)
    storage.STATS.reset()
    options = {**proxied(azurite, proxy), "read_timeout": 1, "retry_total": 0}
    loc = storage.resolve(url, options)
    proxy.blackhole()

    # the module's default read timeout (20 s) would take 40 s here, past the bound
    with pytest.raises(StorageError, match=r"train\.json: ServiceResponse(Timeout)?Error") as raised:
        bounded(lambda: storage.read_bytes(loc, "train.json"), 15)
    for bad in ({"read_timeout": "soon"}, {"retry_total": -1}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}="):
            storage.resolve(url, {**proxied(azurite, proxy), **bad})

    assert storage.STATS.retries == 1
    record(
        "storage fault",
        "blackhole with storage_options read_timeout=1, retry_total=0 (module default 20 s)",
        "the options override the module's Azure timeouts and SDK retries; a bad value is a ValueError naming it",
        f"{first_line(raised.value)}; read_timeout='soon' and retry_total=-1 refused",
    )


# --- a write cut in the middle of a file: nothing partial is ever visible ------------------------------------

BLOCK = 4096
"""Upload block size of the output in the tests below: a file of tens of KiB is staged in many blocks as it is
written, so a cut lands inside a file (at ``close()``, only the last block and the commit remain)."""


@pytest.fixture
def write_only(azurite: AzuriteServer, proxy: FaultProxy) -> Iterator[tuple[str, dict[str, Any], str]]:
    """A fresh container and ``storage_options`` through the proxy with a SAS that may read, list and write but
    not delete (such upload credentials are common): a partial blob committed by mistake could not be deleted
    after, it would stay. Yields (container, options, the SAS signature)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

    name = f"writes-{uuid.uuid4().hex[:12]}"
    permission = ContainerSasPermissions(read=True, write=True, create=True, add=True, list=True, delete=False)
    sas = generate_container_sas(azurite.account_name, name, azurite.account_key, permission=permission,
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=1))  # fmt: skip
    endpoint = azurite.blob_endpoint.replace(f":{azurite.port}/", f":{proxy.port}/")
    options = {"connection_string": f"BlobEndpoint={endpoint};SharedAccessSignature={sas}", "blocksize": BLOCK}
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
        try:
            yield name, options, urllib.parse.parse_qs(sas)["sig"][0]
        finally:
            with suppress(ResourceNotFoundError):
                service.delete_container(name)


def blobs(azurite: AzuriteServer, container: str, prefix: str) -> dict[str, bytes]:
    """Every committed blob under ``prefix``, read with the account key, without the proxy."""
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_container_client(container)
        return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs(name_starts_with=prefix)}


def test_an_upload_cut_mid_file_leaves_no_partial_blob_for_extract(
    azurite, proxy, write_only, quick, tiny_replica, monkeypatch, caplog, tmp_path
):
    container, options, sig = write_only
    big = random.Random(2).randbytes(64 * BLOCK)  # streamed to its blob in the reading thread, 64 blocks
    files = {"val/big.bin": big, **{p.relative_to(tiny_replica.url).as_posix(): p.read_bytes()
                                    for p in sorted(Path(tiny_replica.url, "val").rglob("*.jpg"))}}  # fmt: skip
    archive = tmp_path / "replica.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(extract_module, "SMALL_MEMBER", 16 * BLOCK)  # the JPEGs: one request each, in threads
    out = f"az://{container}/extracted"
    proxy.cut_block(after_bytes=24 * BLOCK)  # a block inside big.bin, and every retry of it

    with caplog.at_level(logging.WARNING), pytest.raises(StorageError) as raised:
        bounded(lambda: extract_archive(str(archive), out, out_storage_options=options))

    assert proxy.counters.cuts >= 1 and "val/big.bin" in str(raised.value)
    seen = {k.removeprefix("extracted/"): v for k, v in blobs(azurite, container, "extracted/").items()}
    assert "val/big.bin" not in seen  # neither partial nor committed
    assert {k: v for k, v in seen.items() if not k.startswith(".inat-fl-extract/")} == {
        k: v for k, v in files.items() if k in seen
    }  # what is there is complete
    assert_no_secret(raised.value, caplog, azurite)
    assert sig not in str(raised.value) and sig not in caplog.text

    proxy.pass_through()
    rerun = bounded(lambda: extract_archive(str(archive), out, out_storage_options=options))
    again = {k.removeprefix("extracted/"): v for k, v in blobs(azurite, container, "extracted/").items()}
    assert {k: v for k, v in again.items() if not k.startswith(".inat-fl-extract/")} == files  # byte-identical
    record(
        "storage fault",
        f"extract to Azurite (a SAS that may not delete, {BLOCK} B blocks): the upload cut after {24 * BLOCK} bytes, "
        "inside a 256 KiB member streamed to its blob",
        "the upload is aborted, never committed: no partial blob (the member absent, every blob there complete); "
        "the rerun completes byte-identical",
        f"{first_line(raised.value)}; {len(seen)} complete blobs, val/big.bin absent; rerun: {rerun.written} written, "
        f"{rerun.skipped} recorded and unchanged, {len(files)} files identical",
    )


def test_an_upload_cut_mid_file_leaves_no_partial_blob_for_prepare(azurite, proxy, write_only, quick, tiny_replica,
                                                                   caplog, tmp_path):  # fmt: skip
    container, options, signature = write_only
    run = functools.partial(prepare_files, data_dir=tiny_replica.url, configs=["family_user"], scheduler="synchronous",
                            file_rows=40, progress=None)  # fmt: skip
    clean_options = {**azurite.storage_options(), "blocksize": BLOCK}
    run(f"az://{container}/clean", cache_dir=str(tmp_path / "c1"), out_storage_options=clean_options)
    clean = {k.removeprefix("clean/"): v for k, v in blobs(azurite, container, "clean/data/").items()}
    sizes = [len(clean[name]) for name in sorted(clean)]
    assert len(sizes) == 5 and min(sizes) > 8 * BLOCK
    proxy.cut_block(after_bytes=sizes[0] + sizes[1] // 2)  # a block inside the first files, and its every retry

    with caplog.at_level(logging.WARNING), pytest.raises(Exception) as raised:
        bounded(lambda: run(f"az://{container}/faulted", cache_dir=str(tmp_path / "c2"), out_storage_options=options))

    error = storage_error_in(raised.value)
    cut = re.search(r"data/family_user/[\w-]+\.parquet", str(error))
    assert proxy.counters.cuts >= 1 and cut is not None, str(error)
    seen = {k.removeprefix("faulted/"): v for k, v in blobs(azurite, container, "faulted/data/").items()}
    assert cut[0] not in seen and all(seen[name] == clean[name] for name in seen)  # nothing partial
    assert_no_secret(raised.value, caplog, azurite)

    proxy.pass_through()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        report = bounded(lambda: run(f"az://{container}/faulted", cache_dir=str(tmp_path / "c2"),
                                     out_storage_options=options))  # fmt: skip
    assert report["complete"]
    # the SAS may not delete: the hidden rows copy stays, named in a warning, and the run is still complete
    left = [r.getMessage() for r in caplog.records if "left the rows copy" in r.getMessage()]
    assert len(left) == 1 and ".inat-fl-prepare-family_user-" in left[0] and "access denied" in left[0], left
    assert signature not in caplog.text and azurite.account_key not in caplog.text
    rerun = {k.removeprefix("faulted/"): v for k, v in blobs(azurite, container, "faulted/data/").items()}
    assert rerun == clean  # byte-identical to a run without faults
    record(
        "storage fault",
        f"prepare (synchronous) to Azurite (a SAS that may not delete, {BLOCK} B blocks): the upload cut inside "
        "the second Parquet file",
        "the upload is aborted, never committed: no partial blob; the rerun completes byte-identical to a run "
        "without faults",
        f"{first_line(error)}; {len(seen)} complete files before the cut, the cut one absent; rerun: "
        f"{report['totals']['files_written']} written, {report['totals']['files_reused']} reused, all 5 identical",
    )
    # pyarrow's writer of the cut file, kept alive by the error's traceback, formats that error with the
    # traceback module when it is freed; on Python 3.11 that parses source (ast.parse), which breaks an
    # ast.parse under way (a module imported later, while the garbage collector runs: "SystemError: AST
    # constructor recursion depth mismatch"). Free it here, where nothing else is being parsed.
    raised = error = None
    gc.collect()
