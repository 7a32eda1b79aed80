"""A local HTTP blob server that answers each GET after a fixed latency, as a cloud object store does.

Every file of a folder (``pattern``, default ``*.jpg``) is read into memory, then ``procs`` processes serve them on
one port of 127.0.0.1 (``SO_REUSEPORT``) with asyncio: each request waits ``latency_s`` in ``asyncio.sleep`` (no CPU
held, any number waiting at once) and is answered from memory over HTTP/1.1 keep-alive. fsspec's HTTP filesystem
reads it like any store (``storage.resolve(server.url)``)::

    with LatencyBlobServer(folder, latency_s=0.02) as server:
        blobs = storage.fetch_many(storage.resolve(server.url), names, max_workers=32)

``pad_to`` grows every JPEG to at least that many bytes with comment (``COM``) segments of random bytes after
its start marker: still a valid JPEG with the same pixels, but the size of a real photo (iNat 2021's train images
average 83 KB) for the costs that grow with bytes (reading, Parquet). Used by ``scripts/bench_latency.py``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from inat_hf.testing.azurite import free_port

START_TIMEOUT_S = 60.0


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, files: dict[str, bytes], delay: float):
    """Answer the requests of one connection (GET or HEAD; 404 for a name not served) until it closes."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target = head.split(b" ", 2)[:2]
            if delay:
                await asyncio.sleep(delay)
            body = files.get(unquote(target.decode("latin-1")).split("?", 1)[0])
            status = b"200 OK" if body is not None else b"404 Not Found"
            body = b"" if body is None else body
            writer.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n" % (status, len(body)))
            if method != b"HEAD":
                writer.write(body)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


def pad_jpeg(data: bytes, size: int, seed: int = 0) -> bytes:
    """``data`` grown to at least ``size`` bytes by comment segments of random bytes after the JPEG start marker
    (the pixels are unchanged); anything that is not a JPEG, or already that large, is returned as it is.
    """
    if not data.startswith(b"\xff\xd8") or len(data) >= size:
        return data
    rng, segments, missing = random.Random(seed), [], size - len(data)
    while missing > 0:
        payload = min(65_533, max(1, missing - 4))
        segments.append(b"\xff\xfe" + (payload + 2).to_bytes(2, "big") + rng.randbytes(payload))
        missing -= payload + 4
    return data[:2] + b"".join(segments) + data[2:]


def _serve(folder: str, pattern: str, pad_to: int, port: int, delay: float, ready: Any) -> None:
    root = Path(folder)
    files = {"/" + p.relative_to(root).as_posix(): pad_jpeg(p.read_bytes(), pad_to, i)
             for i, p in enumerate(sorted(root.rglob(pattern))) if p.is_file()}  # fmt: skip

    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _answer(r, w, files, delay), "127.0.0.1", port, reuse_port=True, backlog=4096
        )
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class LatencyBlobServer:
    """The files of ``folder`` served at :attr:`url`, each answer ``latency_s`` after its request.

    Parameters
    ----------
    folder : str or Path
        The root: ``{url}/a/b.jpg`` is ``folder/a/b.jpg``.
    latency_s : float
        Seconds between a request and its answer (0: at once).
    procs : int
        Server processes sharing the port (each holds its own copy of the files).
    pattern : str
        The files served (``Path.rglob`` pattern).
    pad_to : int
        Grow each JPEG to at least this many bytes (:func:`pad_jpeg`; 0: as they are).

    Raises
    ------
    RuntimeError
        If a process does not start within :data:`START_TIMEOUT_S`.
    """

    def __init__(
        self, folder: str | Path, latency_s: float = 0.0, procs: int = 1, pattern: str = "*.jpg", pad_to: int = 0
    ) -> None:
        self.port, context = free_port(), multiprocessing.get_context("spawn")
        events = [context.Event() for _ in range(max(1, procs))]
        self.procs = [
            context.Process(target=_serve, args=(str(folder), pattern, pad_to, self.port, latency_s, e), daemon=True)
            for e in events
        ]
        for process in self.procs:
            process.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(e.is_set() for e in events):
            dead = [p.exitcode for p in self.procs if p.exitcode is not None]
            if dead or time.monotonic() > deadline:
                self.close()
                why = f"a process exited with {dead[0]}" if dead else f"not ready in {START_TIMEOUT_S:.0f} s"
                raise RuntimeError(f"the blob server did not start on 127.0.0.1:{self.port}: {why}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the root of the files."""
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User plus system CPU time that the server's processes used so far (Linux ``/proc``)."""
        total = 0.0
        for process in self.procs:
            with open(f"/proc/{process.pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def close(self) -> None:
        """Stop the server's processes."""
        for process in self.procs:
            process.terminate()
            process.join(10)

    def __enter__(self) -> LatencyBlobServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
