"""Secrets never leak: not into logs, output, exceptions, cache paths, manifests, exports, cards or pickles.

Against Azurite, the main paths run with the emulator's real account key (the working case) and with
credentials that carry a known marker (a fake account key, a fake SAS signature: the failed-login case);
``extract`` runs from an https SAS URL, a real one and one with a marked signature.
Then everything they produced is scanned for the marker and the real key: every log record of every logger
at DEBUG, stdout and stderr, ``str()`` and the full formatted traceback (causes and contexts) of every
exception, the name and the bytes of every file written (Parquet and Arrow files also decoded), every blob
of the export, and the pickled config.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import logging
import os
import pickle
import tarfile
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import adlfs
import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability import record

from inat_hf import StorageAuthError, load_metadata
from inat_hf.cli import main as cli
from inat_hf.federated.stream import stream_client
from inat_hf.hub.card import card_from_data
from inat_hf.hub.folder import export_dataset
from inat_hf.realcopy.extract import MARKER_DIR, ExtractError, extract_archive, official_archives
from inat_hf.replica import write_sample
from inaturalist_fl import INaturalistFL

pytestmark = pytest.mark.azurite

MARKER = "SECRETMARKER"
FAKE_KEY = MARKER + "A" * 74 + "=="  # 88 base64 characters: 64 bytes, like a real account key
FAKE_SIGNATURE = MARKER + "q0Zc9%2Bk%2FsQ%3D"  # URL-encoded, as in a real SAS
FAKE_SAS = f"sv=2024-01-01&ss=b&srt=sco&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig={FAKE_SIGNATURE}"
CONFIG = {"min_client_size": 1}


def variants(secret: str) -> set[str]:
    """The secret as it may be written: raw, URL-quoted, URL-unquoted."""
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.unquote(secret)}


class Scanner:
    """Checks texts, bytes, exceptions and folders for any form of the secrets; counts what it checked."""

    def __init__(self, secrets: list[str]) -> None:
        self.texts = sorted(set().union(*(variants(s) for s in secrets)), key=len, reverse=True)
        self.blobs = [t.encode() for t in self.texts] + [base64.b64decode(s + "=" * (-len(s) % 4)) for s in secrets
                                                          if len(s) % 4 == 0 and s.endswith("=")]  # fmt: skip
        self.checked: Counter[str] = Counter()

    def text(self, kind: str, where: str, text: str) -> None:
        found = [s for s in self.texts if s in text]
        assert not found, f"{where} ({kind}) holds a secret: ...{text[max(0, text.find(found[0]) - 80) :][:200]}..."
        self.checked[kind] += 1

    def data(self, kind: str, where: str, data: bytes) -> None:
        assert not [s for s in self.blobs if s in data], f"{where} ({kind}) holds a secret"
        self.checked[kind] += 1

    def exception(self, where: str, error: BaseException) -> None:
        self.text("exception", where, str(error))
        self.text("exception", where, repr(error))
        self.text("exception", where, "".join(traceback.format_exception(error)))  # with causes and contexts
        chained, seen = error, set()
        while chained is not None and id(chained) not in seen:  # every argument of every chained exception
            seen.add(id(chained))
            self.text("exception", where, repr(chained.args))
            chained = chained.__cause__ or chained.__context__

    def folder(self, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            self.text("file name", str(path), str(path.relative_to(root)))
            if path.is_file():
                self.data("file bytes", str(path), path.read_bytes())
                self.table(str(path), path)

    def table(self, name: str, source: Path | bytes) -> None:
        """Decoded content of a Parquet or Arrow file (compressed pages hide raw bytes)."""
        if name.endswith(".parquet"):
            table = pq.read_table(pa.BufferReader(source) if isinstance(source, bytes) else source)
        elif name.endswith(".arrow"):
            with pa.memory_map(str(source)) as stream:
                table = pa.ipc.open_stream(stream).read_all()
        else:
            return
        rows = table.drop_columns([c for c in table.column_names if c == "image"]).to_pylist()
        self.text("decoded table", name, repr(table.schema.metadata) + repr(rows))

    def logs(self, caplog: pytest.LogCaptureFixture) -> None:
        for item in caplog.records:
            self.text("log record", item.name, item.getMessage())
            if item.exc_info and item.exc_info[1] is not None:
                self.exception(f"log record {item.name}", item.exc_info[1])
        self.text("log record", "caplog", caplog.text)

    def output(self, captured: Any) -> None:
        self.text("stdout/stderr", "stdout", captured.out)
        self.text("stdout/stderr", "stderr", captured.err)

    def summary(self) -> str:
        """What was checked: counts, except log records (their number depends on connection reuse)."""
        return ", ".join(
            f"{kind}s" if kind == "log record" else f"{kind} ({count})" for kind, count in sorted(self.checked.items())
        )


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG, captured (datasets' too: its own handler and level are set back after)."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity_debug()
    try:
        yield caplog
    finally:
        datasets.logging.set_verbosity(verbosity)


@pytest.fixture(scope="module")
def replica(azurite) -> Iterator[tuple[str, str]]:
    """The tiny replica in a container of its own: (url of the data, container name)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    name = "secrets-replica"  # Azurite starts empty each session; a fixed name keeps RELIABILITY.md stable
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
        try:
            url = f"az://{name}/inat/2021"
            write_sample(url, scale="tiny", seed=0, storage_options=azurite.storage_options())
            yield url, name
        finally:
            with suppress(ResourceNotFoundError):
                service.delete_container(name)


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The datasets cache, in this test's folder (so that it is scanned too)."""
    folder = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", folder)
    return folder


def bad_connection_string(azurite, kind: str) -> str:
    """Credentials that Azurite refuses, carrying the marker: a fake key, or a fake SAS."""
    if kind == "fake account key":
        return (
            f"DefaultEndpointsProtocol=http;AccountName={azurite.account_name};AccountKey={FAKE_KEY};"
            f"BlobEndpoint={azurite.blob_endpoint};"
        )
    return f"BlobEndpoint={azurite.blob_endpoint};SharedAccessSignature={FAKE_SAS}"


def _blobs(azurite, container: str, prefix: str) -> dict[str, bytes]:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_container_client(container)
        return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs(name_starts_with=prefix)}


# --- the working case: the real key ----------------------------------------------------------------------


def test_working_paths_leak_no_key(azurite, replica, tmp_path, hf_cache, debug_logs, capfd):
    url, container = replica
    options = azurite.storage_options()
    scan = Scanner([azurite.account_key, azurite.connection_string, FAKE_KEY, FAKE_SIGNATURE])
    cache = tmp_path / "cache"

    table = load_metadata(url, options)
    builder = INaturalistFL(
        config_name="family_user", data_dir=url, storage_options=options, cache_dir=str(cache), **CONFIG
    )
    builder.download_and_prepare(num_proc=2)
    prepared = builder.as_dataset("train")
    streamed = list(builder.as_streaming_dataset("train").take(5))
    client = list(stream_client(url, "family_user", 0, storage_options=options, cache_dir=str(cache), decode=False))
    export_url = f"az://{container}/export"
    written = export_dataset(
        export_url, url, ["family_user"], storage_options=options, out_storage_options=options, cache_dir=str(cache)
    )
    card = card_from_data(url, ["family_user"], out_dir=tmp_path / "card", storage_options=options, cache_dir=cache)
    (tmp_path / "card" / "README.md").write_text(card)
    validation = builder.info.splits["validation"].num_examples
    assert (
        table.num_rows == prepared.num_rows + validation
        and len(streamed) == 5
        and client
        and written["family_user"]
        and "family_user" in card
    )

    for text, where in ((builder.cache_dir, "builder.cache_dir"), (builder.config_id, "config_id"), (card, "card")):
        scan.text("path/id/card", where, text)
    scan.data("pickled config", "pickle.dumps(builder.config)", pickle.dumps(builder.config))
    scan.text("path/id/card", "repr(builder.config)", repr(builder.config))
    scan.folder(tmp_path)
    blobs = _blobs(azurite, container, "export/")
    assert "export/README.md" in blobs and any(name.endswith(".parquet") for name in blobs)
    for name, data in blobs.items():
        scan.text("export blob", name, name)
        scan.data("export blob", name, data)
        scan.table(name, data)
    scan.logs(debug_logs)
    scan.output(capfd.readouterr())
    record(
        "secrets",
        "working credentials (Azurite's real key): metadata load, builder prepare (num_proc=2), "
        "as_streaming_dataset, stream_client, export to az://, card",
        "the key and the connection string appear nowhere",
        f"absent from: {scan.summary()} (every logger at DEBUG)",
    )


# --- the failed login: a fake key, a fake SAS ---------------------------------------------------------------

FAILING_PATHS: dict[str, Callable[[str, dict, Path, str], Any]] = {
    "metadata load": lambda url, options, cache, container: load_metadata(url, options),
    "builder": lambda url, options, cache, container: INaturalistFL(
        config_name="family_user", data_dir=url, storage_options=options, cache_dir=str(cache), **CONFIG
    ).download_and_prepare(),
    "stream_client": lambda url, options, cache, container: list(
        stream_client(url, "family_user", 0, storage_options=options, cache_dir=str(cache))
    ),
    "export": lambda url, options, cache, container: export_dataset(
        f"az://{container}/export-bad",
        url,
        ["family_user"],
        storage_options=options,
        out_storage_options=options,
        cache_dir=str(cache),
    ),
    "card": lambda url, options, cache, container: card_from_data(
        url, ["family_user"], out_dir=cache / "card", storage_options=options, cache_dir=cache
    ),
}


@pytest.mark.parametrize("kind", ["fake account key", "fake SAS"])
def test_failed_login_leaks_no_secret(azurite, replica, tmp_path, hf_cache, debug_logs, capfd, kind):
    url, container = replica
    options = {"connection_string": bad_connection_string(azurite, kind)}
    scan = Scanner([FAKE_KEY, FAKE_SIGNATURE, options["connection_string"], azurite.account_key])
    raised = {}
    for name, run in FAILING_PATHS.items():
        with pytest.raises(StorageAuthError) as info:
            run(url, options, tmp_path / name, container)
        assert f"az://{container}/" in str(info.value) and "access denied" in str(info.value)
        scan.exception(name, info.value)
        raised[name] = info.value
    scan.folder(tmp_path)
    scan.logs(debug_logs)
    scan.output(capfd.readouterr())
    first = raised["metadata load"]
    record(
        "secrets",
        f"failed login with a {kind} carrying a marker: metadata load, builder, stream_client, export, card",
        "StorageAuthError naming the URL; the marker appears nowhere",
        f"StorageAuthError from all {len(raised)} paths, e.g. '{_cut(str(first))}'; absent from: {scan.summary()}",
    )


def _cut(text: str, limit: int = 100) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# --- the command line, credentials from the environment -----------------------------------------------------


@pytest.fixture
def fresh_filesystems() -> Iterator[None]:
    """adlfs caches filesystems by their arguments, not the environment: start and end with none cached."""
    adlfs.AzureBlobFileSystem.clear_instance_cache()
    yield
    adlfs.AzureBlobFileSystem.clear_instance_cache()


@pytest.mark.parametrize("kind", ["fake account key", "fake SAS"])
def test_cli_failed_login_from_the_environment(azurite, replica, tmp_path, debug_logs, capfd, monkeypatch, kind,
                                               fresh_filesystems):  # fmt: skip
    url, _ = replica
    bad = bad_connection_string(azurite, kind)
    for name in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", bad)
    scan = Scanner([FAKE_KEY, FAKE_SIGNATURE, bad])
    assert cli(["metadata", url]) == 2
    assert cli(["stats", "family_user", "--data-dir", url, "--out", str(tmp_path / "stats"),
                "--cache-dir", str(tmp_path / "cache")]) == 2  # fmt: skip
    captured = capfd.readouterr()
    assert captured.err.count("error: ") == 2 and "access denied" in captured.err, captured.err
    scan.output(captured)
    with pytest.raises(SystemExit) as info:  # a secret given on the command line is refused, not echoed
        cli(["metadata", url, "-o", f"sas_token={FAKE_SAS}"])
    scan.exception("--option sas_token=...", info.value)
    scan.folder(tmp_path)
    scan.logs(debug_logs)
    scan.output(capfd.readouterr())
    record(
        "secrets",
        f"CLI (metadata, stats) with AZURE_STORAGE_CONNECTION_STRING holding a {kind}; -o sas_token=...",
        "exit status 2 with one redacted error line; a secret option is refused without echoing it",
        f"exit 2: '{_cut(captured.err.splitlines()[0], 120)}'; -o sas_token refused; absent from: {scan.summary()}",
    )


def test_cli_working_credentials_from_the_environment(azurite, replica, tmp_path, debug_logs, capfd, monkeypatch,
                                                      fresh_filesystems):  # fmt: skip
    url, _ = replica
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    scan = Scanner([azurite.account_key, azurite.connection_string])
    assert cli(["metadata", url]) == 0
    out = tmp_path / "export"
    assert cli(["export", str(out), "--data-dir", url, "--cache-dir", str(tmp_path / "cache")]) == 0
    captured = capfd.readouterr()
    assert "loaded 171 rows" in captured.out and (out / "README.md").is_file()
    scan.output(captured)
    scan.folder(tmp_path)
    scan.logs(debug_logs)
    assert os.environ["AZURE_STORAGE_CONNECTION_STRING"] == azurite.connection_string
    record(
        "secrets",
        "CLI (metadata, export) with the real key in AZURE_STORAGE_CONNECTION_STRING",
        "works; the key appears nowhere",
        f"exit 0; absent from: {scan.summary()}",
    )


# --- extract from a SAS URL -----------------------------------------------------------------------------------


def _val_archive(root: Path) -> bytes:
    """The replica's ``val/`` folder as a ``.tar.gz`` (the same bytes in every session)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed, tarfile.open(fileobj=packed, mode="w") as tar:
        tar.add(root / "val", arcname="val", filter=_fixed_time)
    return buffer.getvalue()


def _fixed_time(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    return info


def test_extract_from_a_sas_url_leaks_no_signature(azurite, replica, tiny_replica, tmp_path, debug_logs, capfd):
    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

    _, container = replica
    data, blob = _val_archive(Path(tiny_replica.url)), "archives/val.tar.gz"  # an official archive's name
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.get_blob_client(container, blob).upload_blob(data, overwrite=True)
    sas = generate_blob_sas(azurite.account_name, container, blob, account_key=azurite.account_key,
                            permission=BlobSasPermissions(read=True),
                            expiry=datetime.now(timezone.utc) + timedelta(hours=1))  # fmt: skip
    sig = urllib.parse.parse_qs(sas)["sig"][0]
    url = f"{azurite.blob_endpoint}/{container}/{blob}?{sas}"  # a real SAS URL, as the portal gives
    signed = next(part for part in sas.split("&") if part.startswith("sig="))  # as the SDK quoted it
    marked = url.replace(signed, f"sig={FAKE_SIGNATURE}")  # a SAS Azurite refuses, marked
    assert FAKE_SIGNATURE in marked and sig not in marked
    scan = Scanner([sig, signed.removeprefix("sig="), FAKE_SIGNATURE])  # also as quoted in the URL
    md5 = hashlib.md5(data).hexdigest()

    out = tmp_path / "out"
    assert cli(["extract", url, str(out), "--md5", md5]) == 0  # with its progress line
    marker = json.loads((out / MARKER_DIR / "val.tar.gz.json").read_bytes())  # named without the query
    assert marker["archive"] == "val.tar.gz" and marker["verified"] and marker["written"] == 40
    assert cli(["extract", url, str(tmp_path / "official")]) == 2  # the name is val.tar.gz: its md5 is expected
    assert cli(["extract", marked, str(tmp_path / "refused")]) == 2
    captured = capfd.readouterr()
    assert "[inat-fl extract] 61 members (40 written" in captured.err  # 40 files, 21 folders
    official = official_archives()["val.tar.gz"]
    assert f"differs from the expected {official.md5} (official size {official.bytes:,} bytes" in captured.err
    assert "val.tar.gz?se=" in captured.out and "sig=REDACTED" in captured.out and "access denied" in captured.err
    scan.output(captured)
    for target, name in ((url, "wrong md5"), (marked, "refused SAS")):
        with pytest.raises((ExtractError, StorageAuthError)) as info:
            extract_archive(target, str(tmp_path / name), md5="0" * 32)
        scan.exception(name, info.value)
    scan.folder(tmp_path)
    scan.logs(debug_logs)
    assert "sig=REDACTED" in debug_logs.text  # fsspec's own DEBUG records of the URL, redacted
    record(
        "secrets",
        "extract from an https SAS URL (a real SAS of Azurite; then one with a marked signature, refused): CLI with "
        "progress, official name without --md5, the API",
        "the archive name is taken without the query (val.tar.gz: the published md5 expected, the marker named "
        "val.tar.gz.json); the signature and the marker appear nowhere",
        f"verified with --md5; without it 'differs from the expected {official.md5}'; refused SAS: access denied; "
        f"absent from: {scan.summary()}",
    )
