"""What becomes of each member of an archive that ``inat-fl extract`` reads (:mod:`inat_hf.realcopy.extract`):
refused, a folder, skipped (unchanged since an earlier run: :mod:`inat_hf.realcopy.extract_record`) or written, by a
bounded pool of writer threads (a member held in memory) or in the reading thread (a big member, streamed).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from typing import IO, Any, NamedTuple

from inat_hf import storage
from inat_hf.errors import InatError
from inat_hf.realcopy.extract_record import NameSet, Present, Record

logger = logging.getLogger("inat_hf.realcopy.extract")

PENDING_PER_WORKER = 4
"""Members in flight per writer thread (so at most ``workers * PENDING_PER_WORKER * SMALL_MEMBER`` bytes held)."""
READ_BUFFER = 2**20
"""Bytes read from the archive per request."""
REFUSED_SHOWN = 20
"""How many refused member names a report keeps (all are counted)."""


class ExtractError(InatError, ValueError):
    """An archive is truncated, corrupt, has two members of the same name, or does not have the expected md5."""


@dataclass
class ExtractReport:
    """What an extraction did: members = written + skipped + refused + folders (``redone``: written again,
    though recorded by an earlier run, because the file there or the archive's member differed).
    """

    archive: str
    out: str
    members: int = 0
    written: int = 0
    skipped: int = 0
    redone: int = 0
    folders: int = 0
    refused: int = 0
    refused_members: list[str] = field(default_factory=list)
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    md5: str = ""
    expected_md5: str | None = None
    verified: bool = False

    @property
    def read_rate(self) -> float:
        """Compressed bytes read per second."""
        return self.bytes_read / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        """One line for people."""
        check = (
            "md5 verified"
            if self.verified
            else "not verified: no expected md5, pass --md5"
            if self.expected_md5 is None
            else "md5 MISMATCH"
        )
        return (
            f"{self.archive} -> {self.out}: {self.members:,} members: {self.written:,} written ({self.redone:,} "
            f"redone), {self.skipped:,} already present, {self.refused:,} refused, {self.folders:,} folders; "
            f"{self.bytes_read / 1e6:,.1f} MB "
            f"read in {self.seconds:.1f} s ({self.read_rate / 1e6:,.1f} MB/s), {self.bytes_written / 1e6:,.1f} MB "
            f"written; md5 {self.md5} ({check})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {**asdict(self), "read_rate": self.read_rate}


def member_path(member: tarfile.TarInfo) -> str | None:
    r"""The member's path relative to the output folder, or ``None`` if it must be refused.

    Refused: links, devices and FIFOs; absolute names (``/x``, ``C:\\x``); names that leave the folder
    (``..``); names with a backslash or a NUL.
    """
    if not (member.isfile() or member.isdir()):
        return None
    name = member.name
    if not name or "\\" in name or "\x00" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    clean = posixpath.normpath(name)
    if clean == ".." or clean.startswith("../"):
        return None
    return "" if clean == "." else clean


class _Outcome(NamedTuple):
    """What became of one file member: written or not, and the size and md5 of its content."""

    relative: str
    size: int
    md5: str
    written: bool
    redone: bool


class _Writers:
    """A bounded pool of member writes; their outcomes go to ``done`` in the calling thread, and the first
    failure is raised on the next call (after every finished write is counted).
    """

    def __init__(self, workers: int, done: Callable[[_Outcome], None]) -> None:
        self._limit, self._done = max(1, workers) * PENDING_PER_WORKER, done
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="inat-extract")
        self._pending: deque[Future[_Outcome]] = deque()

    def submit(self, call: Callable[..., _Outcome], *args: Any) -> None:
        while len(self._pending) >= self._limit:
            finished, _ = wait(list(self._pending), return_when="FIRST_COMPLETED")
            self._collect(finished)
        self._pending.append(self._pool.submit(call, *args))

    def _collect(self, finished: set[Future[_Outcome]]) -> None:
        failure: BaseException | None = None
        for future in finished:
            self._pending.remove(future)
            error = future.exception()
            if error is None:
                self._done(future.result())
            elif failure is None:
                failure = error
        if failure is not None:
            raise failure

    def finish(self) -> None:
        """Wait for every write; raise the first failure."""
        try:
            self._collect(wait(list(self._pending)).done)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


class Members:
    """Where each member goes: refused, a folder, skipped (unchanged since an earlier run) or written."""

    def __init__(self, archive: storage.Location, out: storage.Location, name: str, report: ExtractReport, *,
                 workers: int, small_member: int) -> None:  # fmt: skip
        self.archive, self.out, self.report, self.small_member = archive, out, report, small_member
        self.record = Record(out, name)
        self.present = Present(out)
        self.seen = NameSet()
        self.added = 0
        self._local = storage.is_local(out)
        self._writers = _Writers(workers, self._done)

    def take(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """Handle the member ``tar`` has just read the header of (its data is read here)."""
        report = self.report
        report.members += 1
        relative = member_path(member)
        if relative is None or (relative == "" and not member.isdir()):
            report.refused += 1
            if len(report.refused_members) < REFUSED_SHOWN:
                report.refused_members.append(member.name)
            return
        if member.isdir():
            report.folders += 1
            return
        if not self.seen.add(relative):
            self.finish_quietly()  # the writes in flight end first: the count below is then exact
            raise ExtractError(
                f"{self.archive.url}: member {member.name!r} (member {report.members:,}) has the name of an earlier "
                f"member ({relative!r}): an archive with two members of the same name is refused, as which one is "
                f"meant is ambiguous. {report.written:,} members were written to {self.out.url} (the first "
                f"{relative!r} among them if it was written); no completion marker was written"
            )
        source = tar.extractfile(member)
        if source is None:  # not reached: member is a regular file
            raise ExtractError(f"{member.name}: cannot be read from the archive")
        if member.size <= self.small_member:
            data = source.read()
            if len(data) != member.size:
                raise tarfile.ReadError(f"unexpected end of data: {len(data):,} of {member.size:,} bytes")
            self._writers.submit(self._store, relative, data)
        else:
            self._done(self._store_stream(relative, source, member.size))

    def _store(self, relative: str, data: bytes) -> _Outcome:
        """Write a member held in memory, unless it is unchanged (in a writer thread)."""
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        self._clear_staged(relative)
        recorded = self.record.get(relative) is not None
        if recorded and self._unchanged(relative, len(data), digest):
            return _Outcome(relative, len(data), digest, written=False, redone=False)
        storage.write_bytes(self.out, relative, data)
        return _Outcome(relative, len(data), digest, written=True, redone=recorded)

    def _store_stream(self, relative: str, source: IO[bytes], size: int) -> _Outcome:
        """Stream a big member to its file; a recorded one goes through a spool first, to be compared."""
        self._clear_staged(relative)
        recorded = self.record.get(relative)
        there = self.present.get(relative) if recorded is not None and recorded.size == size else None
        if recorded is None or there is None or there[0] != size:
            digest = _copy(source, self.out, relative)
            return _Outcome(relative, size, digest, written=True, redone=recorded is not None)
        with tempfile.SpooledTemporaryFile(max_size=self.small_member) as spool:
            hashed = hashlib.md5(usedforsecurity=False)
            while chunk := source.read(READ_BUFFER):
                hashed.update(chunk)
                spool.write(chunk)
            if self._unchanged(relative, size, hashed.hexdigest()):
                return _Outcome(relative, size, hashed.hexdigest(), written=False, redone=False)
            spool.seek(0)
            return _Outcome(relative, size, _copy(spool, self.out, relative), written=True, redone=True)

    def _unchanged(self, relative: str, size: int, digest: str) -> bool:
        """Whether the archive's member (``size``, md5 ``digest``) is what an earlier run recorded and the file
        there still has that size and md5.
        """
        recorded = self.record.get(relative)
        if recorded is None or recorded != (size, digest):
            return False
        there = self.present.get(relative)
        if there is None or there[0] != size:
            return False
        return (there[1] or storage.md5_of(self.out, relative)) == digest

    def _clear_staged(self, relative: str) -> None:
        """Delete the hidden ``.part`` files that a killed earlier write of ``relative`` left (local disk)."""
        if self._local:
            for part in self.present.staged(relative):
                storage.remove(self.out, part)

    def _done(self, outcome: _Outcome) -> None:
        """Count an outcome and record a written file (in the reading thread)."""
        if outcome.written:
            self.report.written += 1
            self.report.redone += outcome.redone
            self.report.bytes_written += outcome.size
            self.record.add(outcome.relative, outcome.size, outcome.md5)
            self.added += 1
        else:
            self.report.skipped += 1

    def finish(self) -> None:
        """Wait for every write (raise the first failure) and record what was written."""
        self._writers.finish()
        self.record.flush()

    def finish_quietly(self) -> None:
        """Let the writes in flight end (complete members stay complete and are recorded); their errors give way
        to the one being raised.
        """
        with suppress(Exception):  # the error being raised already says what failed
            self._writers.finish()

    def close(self) -> None:
        """Record what was written, also after an error (a failure to do so is logged: the error goes on)."""
        try:
            self.record.flush()
        except Exception as exc:  # the extraction's own error, if any, is the one to raise
            message = f"{self.out.url}: the record of the files written was not updated ({exc}); a rerun writes them"
            logger.warning("%s", self.out.redact(message))


def _copy(source: IO[bytes], out: storage.Location, relative: str) -> str:
    """Stream ``source`` to ``relative`` through :func:`inat_hf.storage.open_atomic`; return the md5 (hex)."""
    hashed = hashlib.md5(usedforsecurity=False)
    with storage.open_atomic(out, relative) as target:
        while chunk := source.read(READ_BUFFER):
            hashed.update(chunk)
            target.write(chunk)
    return hashed.hexdigest()
