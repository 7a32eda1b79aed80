"""Extract an official iNat 2021 ``.tar.gz`` from any fsspec URL into files at any fsspec URL, in one pass.

``inat-fl extract ARCHIVE_URL OUT_URL [--md5 HEX]`` (:func:`extract_archive`). The archive is read once, as
a stream (``gzip`` then ``tarfile`` mode ``r|`` over :func:`inat_hf.storage.open_binary`): no temporary copy,
the md5 of the compressed bytes computed as they are read, and the gzip CRC checked at the end. Members are
written concurrently by a bounded thread pool (at most :data:`PENDING_PER_WORKER` members per worker in
flight, each at most :data:`SMALL_MEMBER` bytes; a bigger member is streamed to its file in the reading
thread), so memory stays bounded whatever the archive's size. Every file is written through
:mod:`inat_hf.storage`, complete or not at all (a hidden name renamed on local disk, a committed upload on
object stores).

Safety and reruns: a member that would land outside ``OUT_URL`` (an absolute name, ``..``), a link, a
device or a FIFO is refused and counted, never written. A member already present with the same size is
skipped, so an interrupted extraction is resumed by running it again (the archive is read again; only the
missing files are written). A truncated archive stops with an :class:`ExtractError` naming the member being
read and the last complete one; the member being read is not left behind. The expected md5 is ``md5=`` or,
for an official archive name (``train.tar.gz``, ...), the published one (:data:`OFFICIAL_ARCHIVES`); a
mismatch raises :class:`ExtractError` saying what was written. Only a verified extraction writes the marker
``{OUT_URL}/.inat-fl-extract/{archive name}.json``.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import json
import posixpath
import tarfile
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, BinaryIO

from inat_hf import storage
from inat_hf.errors import InatError

SMALL_MEMBER = 8 * 2**20
"""Members up to this size are read into memory and written by a worker; bigger ones are streamed inline."""
PENDING_PER_WORKER = 4
"""Members in flight per writer thread (so at most ``workers * PENDING_PER_WORKER * SMALL_MEMBER`` bytes held)."""
READ_BUFFER = 2**20
"""Bytes read from the archive per request."""
TAR_BUFFER = 2**16
"""Bytes ``tarfile`` takes at a time from the decompressed stream (its stream buffer is sliced on every read,
so a big one costs a copy per member)."""
MARKER_DIR = ".inat-fl-extract"
"""Folder under the output of the marker files that a verified extraction writes."""
REFUSED_SHOWN = 20
"""How many refused member names a report keeps (all are counted)."""


class ExtractError(InatError, ValueError):
    """An archive is truncated, corrupt, or does not have the expected md5."""


@dataclass(frozen=True)
class OfficialArchive:
    """One official iNat 2021 archive (``inat_hf/data/inat2021_archives.csv``)."""

    file: str
    bytes: int
    sha256: str
    md5: str
    contents: str


@functools.cache
def official_archives() -> dict[str, OfficialArchive]:
    """The official archives by file name (``train.tar.gz``, ``val.json.tar.gz``, ...), with published md5s."""
    text = resources.files("inat_hf").joinpath("data/inat2021_archives.csv").read_text(encoding="utf-8")
    return {
        row["file"]: OfficialArchive(row["file"], int(row["bytes"]), row["sha256"], row["md5"], row["contents"])
        for row in csv.DictReader(io.StringIO(text))
    }


@dataclass
class ExtractReport:
    """What an extraction did: rows in = written + skipped + refused + folders."""

    archive: str
    out: str
    members: int = 0
    written: int = 0
    skipped: int = 0
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
            f"{self.archive} -> {self.out}: {self.members:,} members: {self.written:,} written, {self.skipped:,} "
            f"already present, {self.refused:,} refused, {self.folders:,} folders; {self.bytes_read / 1e6:,.1f} MB "
            f"read in {self.seconds:.1f} s ({self.read_rate / 1e6:,.1f} MB/s), {self.bytes_written / 1e6:,.1f} MB "
            f"written; md5 {self.md5} ({check})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {**asdict(self), "read_rate": self.read_rate}


class _HashingReader(io.RawIOBase):
    """Reads from ``raw``, updating an md5 and a byte count with every byte handed out."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        data = self._raw.read(-1 if size is None else size)
        self.md5.update(data)
        self.count += len(data)
        return data


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


class _Writers:
    """A bounded pool of member writes; the first failure is raised on the next call."""

    def __init__(self, out: storage.Location, workers: int) -> None:
        self._out, self._limit = out, max(1, workers) * PENDING_PER_WORKER
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="inat-extract")
        self._pending: deque[Future[None]] = deque()

    def submit(self, relative: str, data: bytes) -> None:
        while len(self._pending) >= self._limit:
            done, _ = wait(list(self._pending), return_when="FIRST_COMPLETED")
            self._collect(done)
        self._pending.append(self._pool.submit(storage.write_bytes, self._out, relative, data))

    def _collect(self, done: set[Future[None]]) -> None:
        for future in done:
            self._pending.remove(future)
            future.result()

    def finish(self) -> None:
        """Wait for every write; raise the first failure."""
        try:
            self._collect(wait(list(self._pending)).done)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def extract_archive(
    archive_url: str,
    out_url: str,
    *,
    md5: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    out_storage_options: Mapping[str, Any] | None = None,
    workers: int = 16,
    progress: Callable[[ExtractReport], None] | None = None,
) -> ExtractReport:
    """Extract a ``.tar.gz`` at ``archive_url`` into ``out_url``, verifying its md5 (see the module docstring).

    Parameters
    ----------
    archive_url, out_url : str
        Any fsspec URLs (``az://``, ``abfs://``, ``s3://``, local paths, ...).
    md5 : str, optional
        The expected md5 (hex). Default: the published one when the file name is an official archive.
    storage_options, out_storage_options : mapping, optional
        fsspec options (credentials) of the archive and of the output; ``out_storage_options`` defaults to
        ``storage_options``.
    workers : int
        Concurrent member writes.
    progress : callable, optional
        Called with the report about once a second while extracting, and once at the end.

    Returns
    -------
    ExtractReport

    Raises
    ------
    ExtractError
        The archive is truncated or corrupt, or its md5 differs from the expected one.
    StorageError
        Reading the archive or writing a member failed (redacted, naming the URL).
    """
    archive = storage.resolve(archive_url, storage_options)
    out = storage.resolve(out_url, storage_options if out_storage_options is None else out_storage_options)
    return extract(archive, out, md5=md5, workers=workers, progress=progress)


def extract(
    archive: storage.Location,
    out: storage.Location,
    *,
    md5: str | None = None,
    workers: int = 16,
    progress: Callable[[ExtractReport], None] | None = None,
) -> ExtractReport:
    """:func:`extract_archive` on resolved Locations."""
    name = archive.root.rstrip("/").rsplit("/", 1)[-1]
    official = official_archives().get(name)
    expected = (md5 or (official.md5 if official else "")).strip().lower() or None
    if expected is not None and (len(expected) != 32 or any(c not in "0123456789abcdef" for c in expected)):
        raise ValueError(f"--md5 {md5!r} is not an md5: give 32 hexadecimal digits")
    report = ExtractReport(archive=archive.url, out=out.url, expected_md5=expected)
    present = storage.list_sizes(out)
    writers = _Writers(out, workers)
    start = last_tick = time.monotonic()
    last_complete = "(none)"
    with storage.open_binary(archive) as raw:
        reader = _HashingReader(raw)
        buffered = io.BufferedReader(reader, READ_BUFFER)
        current: str | None = None  # the member whose data is being read; None: between members
        try:
            # gzip outside tarfile: its EOFError on a cut stream and its CRC check catch what tarfile's own "r|gz"
            # would take for a normal end of the archive (a cut that falls between two members)
            with (
                gzip.GzipFile(fileobj=buffered, mode="rb") as unpacked,
                tarfile.open(fileobj=unpacked, mode="r|", bufsize=TAR_BUFFER) as tar,
            ):
                for member in tar:
                    current = member.name
                    _extract_member(tar, member, out, present, writers, report)
                    last_complete, current = member.name, None
                    now = time.monotonic()
                    if progress is not None and now - last_tick >= 1.0:
                        report.bytes_read, report.seconds, last_tick = reader.count, now - start, now
                        progress(report)
                while unpacked.read(READ_BUFFER):  # the tar padding, to the gzip end (its CRC is checked there)
                    pass
            while buffered.read(READ_BUFFER):  # anything after: the md5 covers the whole file
                pass
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            _finish_quietly(writers)
            raise ExtractError(
                f"{archive.url}: the archive is truncated or corrupt ({err}) while reading "
                f"{'the next member header' if current is None else f'member {current!r}'}; "
                f"the last complete member is {last_complete!r}. {report.written:,} complete members were written "
                f"to {out.url} (the member being read was not); fetch the archive again and rerun: members already "
                "present with the same size are skipped"
            ) from None
        except BaseException:
            _finish_quietly(writers)
            raise
    writers.finish()
    report.bytes_read, report.seconds = reader.count, time.monotonic() - start
    report.md5 = reader.md5.hexdigest()
    report.verified = expected is not None and report.md5 == expected
    if progress is not None:
        progress(report)
    if expected is not None and not report.verified:
        size_note = f" (official size {official.bytes:,} bytes, read {report.bytes_read:,})" if official else ""
        raise ExtractError(
            f"{archive.url}: md5 {report.md5} differs from the expected {expected}{size_note}: the archive is damaged "
            f"or not the one you meant. {report.written:,} members were written to {out.url} and "
            f"{report.skipped:,} were already there; they may be damaged: delete them, fetch the archive again and "
            "rerun (no completion marker was written)"
        )
    if report.verified:
        marker = {k: v for k, v in report.to_dict().items() if k not in ("archive", "out")}
        storage.write_bytes(out, f"{MARKER_DIR}/{name}.json", json.dumps({"archive": name, **marker}).encode())
    return report


def _finish_quietly(writers: _Writers) -> None:
    """Let the writes in flight end (complete members stay complete); their errors give way to the first one."""
    try:
        writers.finish()
    except Exception:  # the error being raised already says what failed
        return


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    out: storage.Location,
    present: Mapping[str, int],
    writers: _Writers,
    report: ExtractReport,
) -> None:
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
    if present.get(relative) == member.size:
        report.skipped += 1
        return
    source = tar.extractfile(member)
    if source is None:  # not reached: member is a regular file
        raise ExtractError(f"{member.name}: cannot be read from the archive")
    if member.size <= SMALL_MEMBER:
        data = source.read()
        if len(data) != member.size:
            raise tarfile.ReadError(f"unexpected end of data: {len(data):,} of {member.size:,} bytes")
        writers.submit(relative, data)
    else:
        with storage.open_output(out, relative) as target:
            while chunk := source.read(READ_BUFFER):
                target.write(chunk)
    report.written += 1
    report.bytes_written += member.size
