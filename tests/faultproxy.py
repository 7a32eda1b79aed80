"""A small fault-injecting TCP proxy on 127.0.0.1, for the storage fault tests (``tests/test_faults.py``).

``FaultProxy(target_port)`` listens on a free loopback port and forwards every connection it accepts to
``127.0.0.1:target_port``, in the mode set last (change it at any time):

``pass_through()``
    Forward both ways.
``reset(after_bytes=0, connections=None)``
    The next ``connections`` connections accepted (all of them while the mode lasts, if ``None``) are closed
    abruptly, with a TCP reset, once ``after_bytes`` bytes of the server's answer have reached the client
    (``0``: at once, before the request is read). Later connections pass.
``cut_block(after_bytes)``
    Once the clients have sent ``after_bytes`` bytes (counted from the call, over all connections), the next
    Azure Put Block request (``?comp=block&blockid=...``: a block of an upload being written) is cut, its
    connection reset before the request reaches the server, and so is every later request for the same block
    id: every retry of it (the SDK's, aiohttp's). That block can never be staged, so the file being written
    fails in the middle; every other request passes (a later upload of the same file, the commit of another).
``delay(seconds)``
    Every answer is held ``seconds`` before it is forwarded (the first server bytes after client bytes).
``blackhole()``
    Accept, read and drop whatever the client sends, never answer. Connections that were open go silent too
    (and stay silent: their stream is broken).

Everything is bounded: at most ``max_connections`` connections are accepted (later ones are closed at
once), a silent connection is held at most ``hold_s`` seconds, and every thread ends by itself when the
proxy is closed or ``lifetime_s`` seconds after it started, whichever comes first. Use it as a context
manager (``with FaultProxy(port) as proxy``) so that it is always closed.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Literal

Mode = Literal["pass", "reset", "cut", "delay", "blackhole"]
BLOCK_ID = re.compile(rb"[?&]blockid=([^&\s]+)")
"""The block id in the request line of an Azure Put Block request."""
POLL_S = 0.05
"""How often every thread looks at the clock, the mode and the stop flag."""


@dataclass
class Counters:
    """What the proxy did so far."""

    accepted: int = 0
    refused: int = 0  # over max_connections
    resets: int = 0
    cuts: int = 0  # requests cut (cut_block); each is a reset too
    delayed: int = 0  # answers held back
    silenced: int = 0  # connections that went silent (blackhole)


class FaultProxy:
    """A threaded TCP proxy from a free port of 127.0.0.1 to ``127.0.0.1:target_port`` that injects faults."""

    def __init__(
        self,
        target_port: int,
        *,
        max_connections: int = 1000,
        lifetime_s: float = 300.0,
        hold_s: float = 60.0,
    ) -> None:
        self.target_port = target_port
        self.max_connections, self.hold_s = max_connections, hold_s
        self.counters = Counters()
        self._mode: Mode = "pass"
        self._after_bytes, self._resets_left, self._delay_s = 0, None, 0.0
        self._sent, self._cut_block = 0, b""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._end = time.monotonic() + lifetime_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._start(self._accept_loop)

    # --- modes ----------------------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    def pass_through(self) -> None:
        """Forward everything."""
        with self._lock:
            self._mode = "pass"

    def reset(self, after_bytes: int = 0, connections: int | None = None) -> None:
        """Reset the next ``connections`` connections (all if ``None``) after ``after_bytes`` bytes of answer."""
        if after_bytes < 0 or (connections is not None and connections < 0):
            raise ValueError("after_bytes and connections must be >= 0")
        with self._lock:
            self._mode, self._after_bytes, self._resets_left = "reset", after_bytes, connections

    def cut_block(self, after_bytes: int) -> None:
        """Cut the first Put Block request after ``after_bytes`` more client bytes, and its every retry."""
        if after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        with self._lock:
            self._mode, self._after_bytes, self._sent, self._cut_block = "cut", after_bytes, 0, b""

    @property
    def cut_block_id(self) -> str:
        """The id of the block being cut (``""`` before the first cut)."""
        return self._cut_block.decode()

    def _cuts(self, data: bytes) -> bool:
        """Count client bytes; whether the connection that sent ``data`` is to be cut now."""
        with self._lock:
            if self._mode != "cut":
                return False
            self._sent += len(data)
            found = BLOCK_ID.search(data)
            if found is None or self._sent <= self._after_bytes:
                return False
            if not self._cut_block:
                self._cut_block = found[1]
            if found[1] != self._cut_block:
                return False
            self.counters.cuts += 1
            return True

    def delay(self, seconds: float) -> None:
        """Hold every answer ``seconds`` before forwarding it."""
        if not 0 <= seconds <= self.hold_s:
            raise ValueError(f"seconds must be in [0, {self.hold_s}]")
        with self._lock:
            self._mode, self._delay_s = "delay", seconds

    def blackhole(self) -> None:
        """Accept, never answer."""
        with self._lock:
            self._mode = "blackhole"

    # --- life -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting, end every connection and wait (bounded) for the threads."""
        self._stop.set()
        self._listener.close()
        deadline = time.monotonic() + 10
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._end

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"faultproxy-{self.port}")
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while self._running():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            with self._lock:
                if self.counters.accepted >= self.max_connections:
                    self.counters.refused += 1
                    client.close()
                    continue
                self.counters.accepted += 1
                reset_after = None
                if self._mode == "reset" and (self._resets_left is None or self._resets_left > 0):
                    reset_after = self._after_bytes
                    if self._resets_left is not None:
                        self._resets_left -= 1
            self._start(self._serve, client, reset_after)

    # --- one connection -------------------------------------------------------------------------------

    def _abort(self, sock: socket.socket) -> None:
        """Close ``sock`` with a TCP reset (SO_LINGER 0) instead of a graceful FIN."""
        with self._lock:
            self.counters.resets += 1
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            sock.close()

    def _serve(self, client: socket.socket, reset_after: int | None) -> None:
        upstream = None
        try:
            if reset_after == 0:
                self._abort(client)
                return
            client.settimeout(10)  # a client that stops reading cannot block this thread for ever
            silent_since = time.monotonic() if self._mode == "blackhole" else None
            if silent_since is None:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            self._pump(client, upstream, reset_after, silent_since)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()

    def _pump(
        self, client: socket.socket, upstream: socket.socket | None, reset_after: int | None, silent_since: float | None
    ) -> None:
        """Move bytes between the two sockets until one side closes, the proxy stops or a fault ends it."""
        answered, answer_pending = 0, False
        if silent_since is not None:
            with self._lock:
                self.counters.silenced += 1
        while self._running():
            if silent_since is None and self._mode == "blackhole":
                silent_since = time.monotonic()
                with self._lock:
                    self.counters.silenced += 1
            if silent_since is not None and time.monotonic() - silent_since > self.hold_s:
                return
            sockets = [client] if upstream is None else [client, upstream]
            readable, _, _ = select.select(sockets, [], [], POLL_S)
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                if silent_since is not None:
                    continue  # dropped both ways
                if sock is client:
                    if self._cuts(data):
                        self._abort(client)  # the request is not forwarded whole: the server drops it
                        return
                    upstream.sendall(data)
                    answer_pending = True
                    continue
                if answer_pending and self._mode == "delay":
                    with self._lock:
                        self.counters.delayed += 1
                    if self._stop.wait(self._delay_s):
                        return
                answer_pending = False
                if reset_after is not None and answered + len(data) >= reset_after:
                    client.sendall(data[: reset_after - answered])
                    self._abort(client)
                    return
                client.sendall(data)
                answered += len(data)
