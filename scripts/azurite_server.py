"""Start Azurite (the Azure Blob emulator) for the scripts: ``with azurite(folder) as server``.

The binary is ``$AZURITE_BLOB_BIN``, else ``.tools/node_modules/.bin/azurite-blob`` (``npm install --prefix
.tools azurite@3.35.0``), else ``azurite-blob`` on the PATH. It listens on a free loopback port and keeps its
data under the given folder; the account is Azurite's public development account.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""Azurite's well-known development account key (public, in Microsoft's documentation)."""
START_TIMEOUT_S = 30.0


class Azurite(NamedTuple):
    """A running Azurite: its connection string and the process id (to read its CPU time)."""

    connection_string: str
    pid: int

    def cpu_seconds(self) -> float:
        """User plus system CPU time the Azurite process has used so far (Linux ``/proc``)."""
        with open(f"/proc/{self.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def azurite_binary() -> str | None:
    """The ``azurite-blob`` executable, or ``None`` if it is not installed."""
    candidates = [os.environ.get("AZURITE_BLOB_BIN"), str(ROOT / ".tools/node_modules/.bin/azurite-blob")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("azurite-blob")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def azurite(workdir: Path) -> Iterator[Azurite]:
    """Run Azurite's blob service with its data under ``workdir``; yield its connection string and pid."""
    binary = azurite_binary()
    if binary is None:
        raise SystemExit(
            "Azurite is not installed: run `npm install --prefix .tools azurite@3.35.0` or set AZURITE_BLOB_BIN"
        )
    port = _free_port()
    command = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(workdir / "azurite"),
               "--silent", "--disableTelemetry", "--skipApiVersionCheck"]  # fmt: skip
    with (workdir / "azurite.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"Azurite did not start; see {workdir / 'azurite.log'}")
            time.sleep(0.1)
        connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
        )
        yield Azurite(connection_string, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
