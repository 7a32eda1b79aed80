"""Tests of ``inat_hf.storage``: real round trips on local files, ``memory://`` and Azurite (adlfs)."""

from __future__ import annotations

import base64
import collections
import gzip
import hashlib
import logging
import random
import threading
import traceback
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import ClassVar

import fsspec
import pytest
from adlfs import AzureBlobFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from inat_hf import storage
from inat_hf.errors import StorageAuthError, StorageError, StorageNotFoundError
from inat_hf.testing.azurite import ACCOUNT_KEY, ACCOUNT_NAME

TOKEN_MARKER = "tok-3f9a-SECRET-MARKER"
SIG_MARKER = "SIGMARKER%2Bc2VjcmV0%3D"
WRONG_KEY = base64.b64encode(b"this is the wrong account key of the tests, 64 bytes long......").decode()
AZURE_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY",
             "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CLIENT_ID", "AZURE_STORAGE_CLIENT_SECRET",
             "AZURE_STORAGE_TENANT_ID", "AZURE_STORAGE_ANON")  # fmt: skip

CLOSED_PORT_CONNECTION_STRING = (
    f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
    f"BlobEndpoint=http://127.0.0.1:9/{ACCOUNT_NAME};"
)


def assert_no_secret(exc: BaseException, caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """Check that no secret is in the exception, its formatted traceback or the captured logs."""
    formatted = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert exc.__cause__ is None and exc.__suppress_context__
    for secret in secrets:
        for variant in {secret, urllib.parse.unquote(secret)}:
            assert variant not in str(exc)
            assert variant not in formatted
            assert variant not in caplog.text


# --- one Location per backend ---------------------------------------------------------------------


@pytest.fixture(params=["local", "memory", pytest.param("azurite", marks=pytest.mark.azurite)])
def location(request: pytest.FixtureRequest, tmp_path) -> Iterator[storage.Location]:
    """An empty Location (its root does not exist yet) on a local folder, memory:// or Azurite."""
    if request.param == "local":
        yield storage.resolve(str(tmp_path / "root"))
    elif request.param == "memory":
        loc = storage.resolve(f"memory://test-{uuid.uuid4().hex}/root")
        yield loc
        if loc.fs.exists(loc.root):
            loc.fs.rm(loc.root, recursive=True)
    else:
        url, options = request.getfixturevalue("az_container")
        yield storage.resolve(f"{url}/root/", options)


def test_round_trip(location: storage.Location) -> None:
    storage.write_bytes(location, "b/two.bin", b"\x00two")
    storage.write_bytes(location, "a.txt", b"one")
    storage.write_bytes(location, "b/c/three.json", b"{}")

    assert storage.read_bytes(location, "a.txt") == b"one"
    assert storage.read_bytes(location, "b/two.bin") == b"\x00two"
    assert storage.exists(location, "b/c/three.json")
    assert not storage.exists(location, "b/c/four.json")
    assert storage.size(location, "b/two.bin") == 4
    assert storage.list_files(location) == ["a.txt", "b/c/three.json", "b/two.bin"]
    assert storage.list_files(location, "b") == ["b/c/three.json", "b/two.bin"]
    assert storage.list_files(location.child("b")) == ["c/three.json", "two.bin"]
    storage.write_bytes(location, "a.txt", b"replaced")
    assert storage.read_bytes(location, "b/../a.txt") == b"replaced"


def test_write_many_and_fetch_many_keep_order(location: storage.Location) -> None:
    rng = random.Random(7)
    blobs = {f"img/{i % 7}/{i:04d}.jpg": rng.randbytes(rng.randrange(1, 3000)) for i in range(300)}
    written = storage.write_many(location, iter(blobs.items()), max_workers=8)
    wanted = [*rng.sample(sorted(blobs), k=len(blobs)), "img/0/0000.jpg"]  # shuffled, with a repeat

    fetched = storage.fetch_many(location, wanted, max_workers=16)

    assert written == 300
    assert fetched == [blobs[name] for name in wanted]
    assert storage.list_files(location, "img") == sorted(blobs)


def test_fetch_many_on_error(location: storage.Location) -> None:
    storage.write_many(location, [("x/1", b"1"), ("x/3", b"3")])

    results = storage.fetch_many(location, ["x/1", "x/2", "x/3"], on_error="return")
    with pytest.raises(StorageNotFoundError, match="x/2: not found") as raised:
        storage.fetch_many(location, ["x/1", "x/2", "x/3"])

    assert results[0] == b"1" and results[2] == b"3"
    assert isinstance(results[1], StorageNotFoundError)
    assert str(raised.value).startswith(f"{location.url}/x/2: not found")
    assert storage.fetch_many(location, []) == []
    with pytest.raises(ValueError, match="on_error"):
        storage.fetch_many(location, ["x/1"], on_error="skip")  # type: ignore[arg-type]


def test_streaming_write_and_read(location: storage.Location) -> None:
    chunks = [bytes([i]) * (1 << 20) + b"\n" for i in range(6)]  # 6 MiB, more than one upload block
    with storage.open_output(location, "big/train.json") as out:
        for chunk in chunks:
            out.write(chunk)
    with storage.open_output(location, "big/train.json.gz") as out, gzip.GzipFile(fileobj=out, mode="wb") as gz:
        gz.write(b"".join(chunks))

    digest = hashlib.sha256()
    with storage.open_binary(location, "big/train.json") as stream:
        while block := stream.read(1 << 18):
            digest.update(block)
    with storage.open_binary(location, "big/train.json.gz") as stream, gzip.GzipFile(fileobj=stream) as gz:
        unzipped = gz.read()

    assert digest.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert unzipped == b"".join(chunks)
    assert storage.size(location, "big/train.json") == sum(map(len, chunks))


def test_open_output_removes_partial_file_on_error(location: storage.Location) -> None:
    with pytest.raises(RuntimeError, match="caller failed"), storage.open_output(location, "part.bin") as out:
        out.write(b"half of it")
        raise RuntimeError("caller failed")

    assert not storage.exists(location, "part.bin")


@pytest.mark.azurite
def test_an_aborted_upload_leaves_no_blob(az_container) -> None:
    """An error mid-file aborts the upload: the blocks staged so far are never committed, so no partial
    blob appears and a blob already there keeps its content (closing would commit them; deleting after
    would lose the old blob, or fail with a credential that may not delete)."""
    url, options = az_container
    loc = storage.resolve(f"{url}/root", {**options, "blocksize": 1024})  # 1 KiB blocks: staged as written
    storage.write_bytes(loc, "kept.bin", b"the complete old content")
    for name in ("new.bin", "kept.bin"):
        with pytest.raises(RuntimeError, match="caller failed"), storage.open_atomic(loc, name) as out:
            out.write(random.Random(0).randbytes(10_000))  # 9 blocks staged, 784 bytes buffered
            assert out.tell() == 10_000
            raise RuntimeError("caller failed")
    assert storage.list_files(loc) == ["kept.bin"]
    assert storage.read_bytes(loc, "kept.bin") == b"the complete old content"
    with storage.open_atomic(loc, "new.bin") as out:  # the same name written again, completely
        out.write(b"x" * 5000)
    assert storage.read_bytes(loc, "new.bin") == b"x" * 5000


def test_list_folder_md5_and_staged_names(location: storage.Location) -> None:
    storage.write_bytes(location, "f/a.bin", b"a" * 100)
    with storage.open_output(location, "f/b.bin") as out:
        out.write(b"b" * 300)
    storage.write_bytes(location, "f/sub/c.bin", b"c")
    listed = storage.list_folder(location, "f")
    assert {name: size for name, (size, _) in listed.items()} == {"a.bin": 100, "b.bin": 300}
    kept = listed["a.bin"][1]  # Azure keeps the md5 of a blob put in one request; local disk keeps none
    assert kept in (None, hashlib.md5(b"a" * 100).hexdigest())
    assert (kept is not None) == location.url.startswith("az://")
    assert storage.md5_of(location, "f/b.bin") == hashlib.md5(b"b" * 300).hexdigest()
    assert storage.list_folder(location, "missing") == {}
    assert storage.staged_for(".b.bin.0123456789ab.part") == "b.bin"
    assert storage.staged_for(".b.bin.part") is None and storage.staged_for("b.bin") is None


def test_missing_files_are_not_found(location: storage.Location) -> None:
    storage.write_bytes(location, "present.txt", b"x")
    calls = [
        lambda: storage.read_bytes(location, "missing.txt"),
        lambda: storage.size(location, "missing.txt"),
        lambda: storage.list_files(location, "missing-folder"),
        lambda: storage.fetch_many(location, ["present.txt", "missing.txt"]),
        lambda: storage.open_binary(location, "missing.txt").__enter__(),
    ]
    for call in calls:
        with pytest.raises(StorageNotFoundError, match=r"missing[-.]\w+: not found") as raised:
            call()
        assert str(raised.value).startswith(f"{location.url}/missing")
        assert raised.value.__cause__ is None and raised.value.__suppress_context__
    with pytest.raises(FileNotFoundError):  # StorageNotFoundError is a FileNotFoundError too
        storage.read_bytes(location, "missing.txt")


# --- Location and resolve ------------------------------------------------------------------------


@pytest.mark.parametrize("relative", ["../x", "..", "a/../../x", "/etc/passwd", "\\x", "C:/x", "az://c/x"])
def test_path_rejects_absolute_and_escaping_paths(relative: str, tmp_path) -> None:
    loc = storage.resolve(str(tmp_path))

    with pytest.raises(ValueError, match=rf"path {relative!r}".replace("\\", "\\\\")):
        loc.path(relative)
    with pytest.raises(ValueError, match="path"):
        loc.child(relative)


def test_path_joins_under_root(tmp_path) -> None:
    loc = storage.resolve(f"{tmp_path}/data/")
    mem = storage.resolve("memory://bucket/prefix/")

    assert loc.root == f"{tmp_path}/data" and loc.path() == loc.root
    assert loc.path("a/./b//c") == f"{tmp_path}/data/a/b/c"
    assert loc.path("a/../b") == f"{tmp_path}/data/b"
    assert loc.child("a").path("b") == f"{tmp_path}/data/a/b"
    assert loc.child("a").url == f"{tmp_path}/data/a"
    assert (mem.root, mem.url) == ("/bucket/prefix", "memory://bucket/prefix")
    assert mem.path("x.jpg") == "/bucket/prefix/x.jpg"


def test_relative_local_path_is_made_absolute(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loc = storage.resolve("data")
    storage.write_bytes(loc, "f.txt", b"1")

    assert loc.root == f"{tmp_path}/data"
    assert (tmp_path / "data" / "f.txt").read_bytes() == b"1"


def test_location_remembers_secrets_without_showing_them() -> None:
    loc = storage.resolve(f"memory://secrets-{uuid.uuid4().hex}", {"token": TOKEN_MARKER})
    same = storage.resolve(loc.url, {"token": TOKEN_MARKER})

    assert loc.redact(f"token {TOKEN_MARKER}") == "token REDACTED"
    assert TOKEN_MARKER not in repr(loc)
    assert loc == same and hash(loc) == hash(same)


def test_unknown_protocol_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match=r"nosuchproto://x: cannot open") as raised:
        storage.resolve("nosuchproto://x")
    assert raised.value.__suppress_context__


def test_malformed_connection_string_is_an_auth_error(caplog: pytest.LogCaptureFixture) -> None:
    connection_string = f"this is not one;AccountKey={WRONG_KEY};Junk"

    with pytest.raises(StorageAuthError, match="az://container/x: cannot connect to Azure") as raised:
        storage.resolve("az://container/x", {"connection_string": connection_string})

    assert "AZURE_STORAGE_CONNECTION_STRING" in str(raised.value)
    assert_no_secret(raised.value, caplog, connection_string, WRONG_KEY)


def test_azure_client_limits_reach_the_sdk(caplog: pytest.LogCaptureFixture) -> None:
    """The one private use of the Azure SDK (``storage.azure.bound_azure_client``): if azure-storage-blob moves
    the retry policy or the transport settings, this fails (no request is made: the port is closed)."""
    options = {"connection_string": CLOSED_PORT_CONNECTION_STRING, "retry_status": 1, "read_timeout": 7}
    with caplog.at_level(logging.WARNING, logger="inat_hf.storage"):
        loc = storage.resolve("az://container/prefix", options)
    config = loc.fs.service_client._config
    policy, connection = config.retry_policy, config.transport.connection_config
    assert (policy.total_retries, policy.connect_retries, policy.read_retries, policy.status_retries) == (2, 0, 0, 1)
    assert (connection.timeout, connection.read_timeout) == (storage.AZURE_CONNECTION_TIMEOUT, 7)
    assert "cannot bound" not in caplog.text


def test_no_azure_credentials_says_how_to_give_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AZURE_ENV:
        monkeypatch.delenv(name, raising=False)
    AzureBlobFileSystem.clear_instance_cache()

    with pytest.raises(StorageAuthError, match=r"storage_options.*AZURE_STORAGE_CONNECTION_STRING"):
        storage.resolve("az://container/prefix")


# --- redact --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=abc+/d==;EndpointSuffix=core.windows.net",
         "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=REDACTED;EndpointSuffix=core.windows.net"),
        ("BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=2022-11-02&ss=b&sig=x%2By%3D",
         "BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=REDACTED"),
        ("GET https://a.blob.core.windows.net/c/b.jpg?sv=2022-11-02&sp=r&sig=AbC%2Bd%3D&se=2030 failed",
         "GET https://a.blob.core.windows.net/c/b.jpg?sv=2022-11-02&sp=r&sig=REDACTED&se=2030 failed"),
        ("sas_token='sv=2022&sig=AbC+d/e='", "sas_token='sv=2022&sig=REDACTED'"),
        ("u=http%3A%2F%2Fh%3Fsv%3D1%26sig%3DAbC%252Bd%26se%3D2", "u=http%3A%2F%2Fh%3Fsv%3D1%26sig%3DREDACTED%26se%3D2"),
        ("Authorization: Bearer eyJhbGciOi.J9-abc_def.x", "Authorization: Bearer REDACTED"),
        ("Authorization: SharedKey devstoreaccount1:AbC+d/e=", "Authorization: SharedKey devstoreaccount1:REDACTED"),
        ("a design=signature and signal=1 are kept", "a design=signature and signal=1 are kept"),
    ],
)  # fmt: skip
def test_redact_patterns(text: str, expected: str) -> None:
    assert storage.redact(text) == expected


def test_redact_exact_secrets_in_every_encoding() -> None:
    secret = "s3cr3t+/=value"
    text = f"raw {secret}, quoted {urllib.parse.quote(secret, safe='')}, in a key=s3cr3t+/=value;"

    redacted = storage.redact(text, [secret, ""])

    assert "s3cr3t" not in redacted
    assert redacted == "raw REDACTED, quoted REDACTED, in a key=REDACTED;"
    assert storage.redact("nothing to hide", []) == "nothing to hide"


# --- retries, with faults injected at the fsspec level -------------------------------------------


class FlakyMemoryFileSystem(MemoryFileSystem):
    """A memory filesystem whose ``cat_file`` fails the next ``faults[path]`` times with a reset."""

    protocol = "flakymem"
    store: ClassVar[dict] = {}  # its own store, not memory://'s
    pseudo_dirs: ClassVar[list[str]] = [""]
    faults: ClassVar[collections.Counter] = collections.Counter()
    calls: ClassVar[collections.Counter] = collections.Counter()
    lock = threading.Lock()

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("flakymem://"))

    def cat_file(self, path, start=None, end=None, **kwargs):
        path = self._strip_protocol(path)
        with self.lock:
            self.calls[path] += 1
            fail = self.faults[path] > 0
            self.faults[path] -= fail
        if fail:
            url = f"https://acct.blob.core.windows.net/c{path}?sv=2024-05-04&sig={SIG_MARKER}"
            raise ConnectionResetError(f"connection reset by peer reading {url} with {self.storage_options}")
        return super().cat_file(path, start, end, **kwargs)


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Iterator[storage.Location]:
    """A Location on FlakyMemoryFileSystem holding files f00..f49, with near-zero retry delays."""
    fsspec.register_implementation("flakymem", FlakyMemoryFileSystem, clobber=True)
    monkeypatch.setattr(storage.retry, "RETRY_BASE_DELAY", 0.001)
    FlakyMemoryFileSystem.faults.clear()
    FlakyMemoryFileSystem.calls.clear()
    loc = storage.resolve("flakymem://bucket/data", {"token": TOKEN_MARKER})
    storage.write_many(loc, ((f"f{i:02d}", b"%d" % i) for i in range(50)))
    storage.STATS.reset()
    yield loc
    FlakyMemoryFileSystem.store.clear()


def test_fetch_many_retries_transient_errors(flaky: storage.Location, caplog: pytest.LogCaptureFixture) -> None:
    names = [f"f{i:02d}" for i in range(50)]
    for name in names[::5]:
        FlakyMemoryFileSystem.faults[f"/bucket/data/{name}"] = 2

    with caplog.at_level(logging.WARNING, logger="inat_hf.storage"):
        fetched = storage.fetch_many(flaky, names, max_workers=4, retries=3)

    assert fetched == [b"%d" % i for i in range(50)]
    assert storage.STATS.retries == 20 and storage.STATS.failures == 0
    assert FlakyMemoryFileSystem.calls["/bucket/data/f00"] == 3
    assert FlakyMemoryFileSystem.calls["/bucket/data/f01"] == 1
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert "sig=REDACTED" in caplog.text and "10 of 50 files" in caplog.text
    assert TOKEN_MARKER not in caplog.text and "SIGMARKER" not in caplog.text


def test_fetch_many_gives_up_after_bounded_retries(flaky: storage.Location, caplog: pytest.LogCaptureFixture) -> None:
    FlakyMemoryFileSystem.faults["/bucket/data/f07"] = 100

    with caplog.at_level(logging.WARNING), pytest.raises(StorageError, match="f07: ConnectionResetError") as raised:
        storage.fetch_many(flaky, ["f01", "f07", "f09"], retries=2)
    # A failure still transient after every retry is an outage, not a bad file: raised even with "return".
    with pytest.raises(StorageError, match=r"f07: ConnectionResetError.*gave up after 1 retry"):
        storage.fetch_many(flaky, ["f01", "f07"], retries=1, on_error="return")

    assert type(raised.value) is StorageError and "gave up after 2 retries" in str(raised.value)
    assert FlakyMemoryFileSystem.calls["/bucket/data/f07"] == 3 + 2
    assert storage.STATS.retries == 3 and storage.STATS.failures == 2
    assert_no_secret(raised.value, caplog, TOKEN_MARKER, SIG_MARKER)


def test_not_found_is_not_retried(flaky: storage.Location) -> None:
    with pytest.raises(StorageNotFoundError, match="flakymem://bucket/data/nope: not found"):
        storage.fetch_many(flaky, ["f01", "nope"], retries=3)
    with pytest.raises(StorageNotFoundError):
        storage.read_bytes(flaky, "nope")

    assert FlakyMemoryFileSystem.calls["/bucket/data/nope"] == 2
    assert storage.STATS.retries == 0


def test_read_bytes_retries_then_gives_up(flaky: storage.Location, caplog: pytest.LogCaptureFixture) -> None:
    FlakyMemoryFileSystem.faults["/bucket/data/f03"] = 3
    FlakyMemoryFileSystem.faults["/bucket/data/f04"] = 4

    assert storage.read_bytes(flaky, "f03") == b"3"
    with pytest.raises(StorageError, match="f04: ConnectionResetError") as raised:
        storage.read_bytes(flaky, "f04")

    assert storage.STATS.retries == 6 and storage.STATS.failures == 1
    assert_no_secret(raised.value, caplog, TOKEN_MARKER, SIG_MARKER)


# --- Azurite only: containers, credentials and the environment ----------------------------------


@pytest.mark.azurite
def test_missing_container_is_not_found(azurite) -> None:
    loc = storage.resolve("az://no-such-container/prefix", azurite.storage_options())

    with pytest.raises(StorageNotFoundError, match=r"az://no-such-container/prefix/a\.jpg: not found") as raised:
        storage.read_bytes(loc, "a.jpg")
    with pytest.raises(StorageNotFoundError, match="container does not exist"):
        storage.fetch_many(loc, ["a.jpg", "b.jpg"])
    with pytest.raises(StorageNotFoundError, match="az://no-such-container/prefix: not found"):
        storage.list_files(loc)

    assert "the container does not exist" in str(raised.value)
    assert not storage.exists(loc, "a.jpg")


@pytest.mark.azurite
def test_wrong_account_key_is_an_auth_error(azurite, az_container, caplog: pytest.LogCaptureFixture) -> None:
    storage.write_bytes(storage.resolve(*az_container), "a.jpg", b"jpeg")
    wrong = azurite.connection_string.replace(azurite.account_key, WRONG_KEY)
    loc = storage.resolve(az_container.url, {"connection_string": wrong})

    calls = [
        lambda: storage.read_bytes(loc, "a.jpg"),
        lambda: storage.fetch_many(loc, ["a.jpg"]),
        lambda: storage.list_files(loc),
        lambda: storage.exists(loc, "a.jpg"),
        lambda: storage.write_bytes(loc, "b.jpg", b"x"),
    ]
    for call in calls:
        with pytest.raises(StorageAuthError, match=f"{az_container.url}.*access denied") as raised:
            call()
        assert "AZURE_STORAGE_ACCOUNT_KEY" in str(raised.value)
        assert_no_secret(raised.value, caplog, WRONG_KEY, wrong)


@pytest.mark.azurite
def test_sas_connection_string_reads_and_never_shows_the_signature(
    azurite, az_container, caplog: pytest.LogCaptureFixture
) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    storage.write_bytes(storage.resolve(*az_container), "a.jpg", b"jpeg")
    now = datetime.now(timezone.utc)

    def sas_options(expiry: datetime) -> tuple[dict[str, str], str]:
        permission = ContainerSasPermissions(read=True, list=True)
        sas = generate_container_sas(
            azurite.account_name, az_container.name, azurite.account_key, permission=permission, expiry=expiry
        )
        options = {"connection_string": f"BlobEndpoint={azurite.blob_endpoint};SharedAccessSignature={sas}"}
        return options, urllib.parse.parse_qs(sas)["sig"][0]

    options, sig = sas_options(now + timedelta(hours=1))
    loc = storage.resolve(az_container.url, options)
    assert storage.read_bytes(loc, "a.jpg") == b"jpeg"
    assert storage.list_files(loc) == ["a.jpg"]
    with pytest.raises(StorageAuthError, match=r"b\.jpg: access denied") as read_only:
        storage.write_bytes(loc, "b.jpg", b"not allowed")
    expired, old_sig = sas_options(now - timedelta(hours=1))
    with pytest.raises(StorageAuthError, match=r"a\.jpg: access denied") as too_late:
        storage.read_bytes(storage.resolve(az_container.url, expired), "a.jpg")

    assert_no_secret(read_only.value, caplog, sig, options["connection_string"])
    assert_no_secret(too_late.value, caplog, old_sig, expired["connection_string"])


@pytest.mark.azurite
def test_malformed_account_key_is_an_auth_error(azurite, az_container, caplog) -> None:
    bad = azurite.connection_string.replace(azurite.account_key, "not-base64-KEYMARKER!")

    with pytest.raises(StorageAuthError, match="access denied") as raised:
        storage.read_bytes(storage.resolve(az_container.url, {"connection_string": bad}), "a.jpg")

    assert_no_secret(raised.value, caplog, "KEYMARKER", bad)


@pytest.fixture
def fresh_adlfs_instances() -> Iterator[None]:
    """Forget cached adlfs instances, which were made with other credentials or environment."""
    AzureBlobFileSystem.clear_instance_cache()
    yield
    AzureBlobFileSystem.clear_instance_cache()


@pytest.mark.azurite
@pytest.mark.usefixtures("fresh_adlfs_instances")
def test_credentials_from_the_environment(azurite, az_container, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AZURE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)

    loc = storage.resolve(f"{az_container.url}/from-env")
    storage.write_bytes(loc, "x.txt", b"env")

    assert storage.read_bytes(loc, "x.txt") == b"env"
    key = azurite.account_key
    assert loc.redact(key) == key  # nothing of the environment is read or kept by inat_hf
    assert storage.read_bytes(storage.resolve(*az_container), "from-env/x.txt") == b"env"


def test_a_pickled_location_keeps_its_azure_limits_and_secrets() -> None:
    """A Location travels to num_proc and Dask workers by pickle: its copy must still be bounded and redacted."""
    import pickle
    import subprocess
    import sys

    options = {"connection_string": CLOSED_PORT_CONNECTION_STRING, "read_timeout": 7, "retry_status": 1}
    loc = storage.resolve("az://container/prefix", options)
    code = (
        "import pickle, sys\n"
        "loc = pickle.loads(sys.stdin.buffer.read())\n"
        "config = loc.fs.service_client._config\n"
        "print(config.transport.connection_config.read_timeout, config.retry_policy.status_retries,"
        " loc.redact(sys.argv[1]))\n"
    )
    key = ACCOUNT_KEY
    done = subprocess.run(
        [sys.executable, "-c", code, f"key {key}"], input=pickle.dumps(loc), capture_output=True, check=True
    )
    assert done.stdout.decode().split() == ["7", "1", "key", "REDACTED"]
