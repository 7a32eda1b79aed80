"""Shared fixtures.

Azurite
    ``azurite`` starts the Azure Blob emulator (npm package ``azurite``) once per session on a free
    loopback port; ``az_container`` gives each test a fresh container. Tests that use them are marked
    ``@pytest.mark.azurite``. Without the emulator these tests fail (they are never skipped): install it
    with ``npm install --prefix .tools azurite@3.35.0`` in the repository root, or set ``AZURITE_BLOB_BIN``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
AZURITE_INSTALL = "npm install --prefix .tools azurite@3.35.0"
AZURITE_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class AzuriteServer:
    """A running Azurite blob service and its well-known development account."""

    port: int
    account_name: str = "devstoreaccount1"
    account_key: str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )

    def storage_options(self) -> dict[str, str]:
        """Return the fsspec/adlfs ``storage_options`` for this server."""
        return {"connection_string": self.connection_string}


class AzContainer(NamedTuple):
    """A fresh container: unpack as ``url, storage_options = az_container``."""

    url: str
    storage_options: dict[str, str]

    @property
    def name(self) -> str:
        return self.url.removeprefix("az://")


def _azurite_binary() -> str:
    """Return the path of ``azurite-blob``, or fail the test run with the command that installs it."""
    candidates = [os.environ.get("AZURITE_BLOB_BIN"), REPO_ROOT / ".tools/node_modules/.bin/azurite-blob"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return str(candidate)
    found = shutil.which("azurite-blob")
    if found:
        return found
    pytest.fail(
        f"Azurite is not installed. Run `{AZURITE_INSTALL}` in {REPO_ROOT} "
        "(or set AZURITE_BLOB_BIN to the azurite-blob executable); these tests are never skipped.",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_answers(port: int) -> bool:
    with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """Start Azurite's blob service for the whole session and stop it afterwards."""
    binary = _azurite_binary()
    workdir = tmp_path_factory.mktemp("azurite")
    port = _free_port()
    command = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(workdir / "data"),
               "--silent", "--disableTelemetry", "--skipApiVersionCheck"]  # fmt: skip
    log_path = workdir / "azurite.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + AZURITE_START_TIMEOUT_S
        while not _port_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {process.returncode}" if process.poll() is not None else "timed out"
                pytest.fail(
                    f"Azurite did not start on 127.0.0.1:{port} ({state}).\ncommand: {' '.join(command)}\n"
                    f"output:\n{log_path.read_text(errors='replace')}",
                    pytrace=False,
                )
            time.sleep(0.1)
        yield AzuriteServer(port=port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def az_container(azurite: AzuriteServer) -> Iterator[AzContainer]:
    """Create a uniquely named container in Azurite for one test and delete it afterwards."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    name = f"test-{uuid.uuid4().hex[:20]}"
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
        try:
            yield AzContainer(f"az://{name}", azurite.storage_options())
        finally:
            with suppress(ResourceNotFoundError):
                service.delete_container(name)


# --- the synthetic replica ------------------------------------------------------------------------------


class Replica(NamedTuple):
    """A replica written to local disk and the counts a test must see."""

    url: str
    counts: object  # inat_hf.sample.SampleCounts


@pytest.fixture(scope="session")
def tiny_replica(tmp_path_factory: pytest.TempPathFactory) -> Replica:
    """The ``tiny`` replica (seed 0) with its JPEGs, written once per session; treat it as read-only."""
    from inat_hf.sample import write_sample

    folder = tmp_path_factory.mktemp("tiny-replica")
    return Replica(str(folder), write_sample(str(folder), scale="tiny", seed=0))


@pytest.fixture(scope="session")
def small_metadata(tmp_path_factory: pytest.TempPathFactory) -> Replica:
    """The ``small`` replica's metadata only (no JPEGs), written once per session; read-only."""
    from inat_hf.sample import write_sample

    folder = tmp_path_factory.mktemp("small-metadata")
    return Replica(str(folder), write_sample(str(folder), scale="small", seed=0, metadata_only=True))


# --- RELIABILITY.md --------------------------------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Rewrite ``RELIABILITY.md`` from the rows the reliability tests recorded (see ``tests/reliability.py``).

    Only after a session with no failure that ran every reliability test file, unfiltered (a partial run
    would drop rows), and recorded at least one row; the text has no timestamp, so a rerun gives the same file.
    """
    import reliability

    ran = {Path(str(item.fspath)).stem for item in session.items}
    options = session.config.option
    filtered = bool(
        getattr(options, "keyword", "") or getattr(options, "markexpr", "") or getattr(options, "lf", False)
    )
    complete = set(reliability.RELIABILITY_MODULES) <= ran and not filtered
    if exitstatus != 0 or session.testsfailed or not complete or not reliability.ROWS:
        return
    target = REPO_ROOT / "RELIABILITY.md"
    text = reliability.render(reliability.ROWS)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
