"""Processes the full run starts: started, watched (peak RSS of each one and of its descendants), stopped.

The peak RSS of a process is the kernel's high-water mark (``VmHWM`` in ``/proc/PID/status``, Linux), read
every :data:`POLL_SECONDS` for each started process and every process below it (Dask's nannies and workers,
a process pool's workers), so the value kept is the peak up to the last read before the process ended.
Where there is no ``/proc``, the largest resident size seen (``psutil``) is kept instead. A process is only
ever signalled by its pid, and only if this run started it (or it descends from one that this run started).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import psutil

POLL_SECONDS = 0.2
"""How often the process trees are read."""


def peak_rss_of(pid: int) -> int | None:
    """The peak resident set size of a running process in bytes (``VmHWM``), else its current RSS; None if
    it is gone (or a zombie).
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(psutil.Process(pid).memory_info().rss) or None  # 0: a zombie, nothing to read
    except (psutil.Error, OSError):
        return None


@dataclass
class Watched:
    """One process seen: its role (``driver``, ``worker``, ``worker/child``...), pid, command and peak RSS."""

    role: str
    pid: int
    command: str
    peak_rss: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {"role": self.role, "pid": self.pid, "command": self.command, "peak_rss": self.peak_rss}


def _command_of(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:200]
    except (psutil.Error, OSError):
        return "?"


class Monitor:
    """Watches the process trees of the processes started through it (a background thread)."""

    def __init__(self) -> None:
        self.roots: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
        self.seen: dict[int, Watched] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inat-fullrun-monitor", daemon=True)
        self._thread.start()

    def start(
        self, role: str, argv: Sequence[str], log: IO[bytes], stdout: IO[bytes] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (output to ``log``; stdout to ``stdout`` when given) and watch it as ``role``."""
        process = subprocess.Popen(list(argv), stdout=stdout or log, stderr=log, stdin=subprocess.DEVNULL)
        with self._lock:
            self.roots[process.pid] = (role, process)
            self.seen[process.pid] = Watched(role, process.pid, " ".join(argv)[:200])
        self.poll()
        return process

    def tree(self, pid: int) -> list[int]:
        """``pid`` and every live process below it."""
        try:
            return [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
        except (psutil.Error, OSError):
            return []

    def poll(self) -> None:
        """Read the peak RSS of every process of every watched tree once."""
        with self._lock:
            roots = list(self.roots.items())
        for pid, (role, _) in roots:
            for member in self.tree(pid):
                peak = peak_rss_of(member)
                if peak is None:
                    continue
                with self._lock:
                    if member not in self.seen:
                        with contextlib.suppress(psutil.Error, OSError):
                            self.seen[member] = Watched(f"{role}/child", member, _command_of(psutil.Process(member)))
                    if member in self.seen:
                        self.seen[member].peak_rss = max(self.seen[member].peak_rss, peak)

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.poll()

    def _members(self, process: subprocess.Popen[bytes]) -> list[psutil.Process]:
        self.poll()
        try:
            root = psutil.Process(process.pid)
            return [root, *root.children(recursive=True)]
        except (psutil.Error, OSError):
            return []

    def kill(self, process: subprocess.Popen[bytes]) -> list[int]:
        """SIGKILL ``process`` and every process below it, each by its pid (psutil checks that a pid still
        names the same process); return the pids signalled.
        """
        members = self._members(process)
        for member in members:
            with contextlib.suppress(psutil.Error):
                member.kill()
        process.wait()
        return [m.pid for m in members]

    def terminate(self, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        """SIGTERM ``process`` and the processes below it; after ``timeout`` seconds, SIGKILL what is left."""
        members = self._members(process)
        for member in members:
            with contextlib.suppress(psutil.Error):
                member.terminate()
        _, alive = psutil.wait_procs(members, timeout=timeout)
        for member in alive:
            with contextlib.suppress(psutil.Error):
                member.kill()
        process.wait()

    def report(self) -> list[dict[str, Any]]:
        """Every process seen, in the order seen: role, pid, command, peak RSS."""
        self.poll()
        with self._lock:
            return [w.to_dict() for w in self.seen.values()]

    def close(self) -> None:
        """Stop watching (the processes are left as they are)."""
        self._stop.set()
        self._thread.join()
