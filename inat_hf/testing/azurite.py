"""Azurite, the Azure Blob Storage emulator, started and stopped for tests, benchmarks and scripts.

The binary is ``$AZURITE_BLOB_BIN``, else ``.tools/node_modules/.bin/azurite-blob`` under the current folder
(installed with npm by ``scripts/test.sh``, which pins its version), else ``azurite-blob`` on the
PATH. A server listens on 127.0.0.1 on a free port, keeps its data in a folder of the caller's (so it survives
a restart on the same port) and serves Azurite's public development account. ``--skipApiVersionCheck`` lets the
current azure SDK in (Azurite may know older API versions only)::

    with running_azurite(tmp_path) as server:
        load_metadata("az://container/data", server.storage_options())
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_COMMAND = "npm install --prefix .tools azurite@3.35.0"
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""Azurite's well-known development account key (public, in Microsoft's documentation)."""
START_TIMEOUT_S = 30.0


class AzuriteNotInstalled(RuntimeError):
    """No ``azurite-blob`` executable was found; the message gives the command that installs it."""


def azurite_binary(root: Path | None = None) -> str:
    """The ``azurite-blob`` executable (see the module docstring for where it is looked for).

    Raises
    ------
    AzuriteNotInstalled
        With the install command, if there is none.
    """
    local = (root or Path.cwd()) / ".tools/node_modules/.bin/azurite-blob"
    for candidate in (os.environ.get("AZURITE_BLOB_BIN"), str(local)):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("azurite-blob")
    if found:
        return found
    raise AzuriteNotInstalled(
        f"Azurite is not installed: run `{INSTALL_COMMAND}` in the repository root, or set AZURITE_BLOB_BIN "
        "to the azurite-blob executable"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@dataclass
class AzuriteServer:
    """One Azurite blob service: where it listens, where it keeps its data, and its process once started."""

    workdir: Path
    port: int = field(default_factory=free_port)
    binary: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    account_name: str = ACCOUNT_NAME
    account_key: str = field(default=ACCOUNT_KEY, repr=False)

    @property
    def blob_endpoint(self) -> str:
        """``http://127.0.0.1:PORT/devstoreaccount1``."""
        return f"http://127.0.0.1:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        """The development account's connection string for this server."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )

    def storage_options(self) -> dict[str, str]:
        """The fsspec/adlfs ``storage_options`` for this server."""
        return {"connection_string": self.connection_string}

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the process (data under ``workdir/data``, log in ``workdir/azurite.log``) and wait until
        it accepts connections.

        Raises
        ------
        AzuriteNotInstalled
            If there is no binary.
        RuntimeError
            If it exits or does not answer within :data:`START_TIMEOUT_S`; the message holds its log.
        """
        binary = self.binary or azurite_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location",
                   str(self.workdir / "data"), "--silent", "--disableTelemetry", "--skipApiVersionCheck"]  # fmt: skip
        log_path = self.workdir / "azurite.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {self.process.returncode}" if self.process.poll() is not None else "timed out"
                self.stop()
                raise RuntimeError(
                    f"Azurite did not start on 127.0.0.1:{self.port} ({state}).\ncommand: {' '.join(command)}\n"
                    f"output:\n{log_path.read_text(errors='replace')}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop it the way a service stops (SIGTERM: it saves its data), killing it after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far (Linux ``/proc``)."""
        if self.process is None:
            return 0.0
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def running_azurite(workdir: Path) -> Iterator[AzuriteServer]:
    """Run Azurite's blob service with its data under ``workdir`` for the ``with`` block."""
    server = AzuriteServer(Path(workdir))
    server.start()
    try:
        yield server
    finally:
        server.stop()
