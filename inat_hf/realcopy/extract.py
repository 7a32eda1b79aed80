"""Extract an official iNat 2021 ``.tar.gz`` from any fsspec URL into files at any fsspec URL, in one pass.

``inat-fl extract ARCHIVE_URL OUT_URL [--md5 HEX]`` (:func:`extract_archive`). The archive is read once, as
a stream (``gzip`` then ``tarfile`` mode ``r|`` over :func:`inat_hf.storage.open_binary`): no temporary copy,
the md5 of the compressed bytes computed as they are read, and the gzip CRC checked at the end. Members are
written concurrently by a bounded thread pool (at most :data:`PENDING_PER_WORKER` members per worker in
flight, each at most :data:`SMALL_MEMBER` bytes, written in one request by
:func:`inat_hf.storage.write_bytes`; a bigger member is streamed to its file in the reading thread through
:func:`inat_hf.storage.open_atomic`), so memory stays bounded by the archive's member count only (see
:mod:`inat_hf.realcopy.extract_record`). Every file is complete or not there: a hidden name renamed on local disk, an
upload committed on object stores only when complete and aborted on an error.

Safety and reruns: a member that would land outside ``OUT_URL`` (an absolute name, ``..``), a link, a
device or a FIFO is refused and counted, never written; an archive with two members of the same name is
refused (:class:`ExtractError` naming the archive and the member) when the second one comes. Every file
written is recorded with its size and md5 in the marker folder (:class:`inat_hf.realcopy.extract_record.Record`), so an
interrupted extraction is resumed by running it again: the archive is read again and a member is skipped
only if it was recorded, the archive's member still has the recorded size and md5, and the file in
``OUT_URL`` has them too (its size from a listing of its folder, made only for recorded members on an object
store; its md5 from the listing where the store keeps one, else read back). Any other member is written
(again), and hidden ``.part`` files left on local disk by a killed run are deleted when their member comes.
A truncated archive stops with an :class:`ExtractError` naming the member being read and the last complete
one; the member being read is not left behind. The expected md5 is ``md5=`` or, for an official archive
name (``train.tar.gz``, ...; a URL's query such as a SAS ``?sv=...&sig=...`` is not part of the name), the
published one (:data:`OFFICIAL_ARCHIVES`); a mismatch raises :class:`ExtractError` saying what was written.
Only a verified extraction writes the marker ``{OUT_URL}/.inat-fl-extract/{archive name}.json``. No URL's
secret reaches a report, a marker, a progress line or an error: they show the redacted URL.
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
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, BinaryIO

from inat_hf import storage
from inat_hf.realcopy.extract_members import (
    PENDING_PER_WORKER,
    READ_BUFFER,
    REFUSED_SHOWN,
    ExtractError,
    ExtractReport,
    Members,
    member_path,
)
from inat_hf.realcopy.extract_record import MARKER_DIR

__all__ = [
    "MARKER_DIR",
    "PENDING_PER_WORKER",
    "READ_BUFFER",
    "REFUSED_SHOWN",
    "SMALL_MEMBER",
    "TAR_BUFFER",
    "ExtractError",
    "ExtractReport",
    "OfficialArchive",
    "archive_name",
    "extract",
    "extract_archive",
    "member_path",
    "official_archives",
]

SMALL_MEMBER = 8 * 2**20
"""Members up to this size are read into memory and written by a worker; bigger ones are streamed inline."""
TAR_BUFFER = 2**16
"""Bytes ``tarfile`` takes at a time from the decompressed stream (its stream buffer is sliced on every read,
so a big one costs a copy per member)."""


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


def archive_name(archive: storage.Location) -> str:
    """The archive's file name: the last part of its path, without a URL's query or fragment (a SAS URL's
    ``?sv=...&sig=...``), so that ``https://.../train.tar.gz?sv=...`` is the official ``train.tar.gz``.
    """
    root = archive.root.rstrip("/")
    path = urllib.parse.urlsplit(root).path if "://" in root else root
    return urllib.parse.unquote(posixpath.basename(path.rstrip("/"))) or "archive"


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
        Any fsspec URLs (``az://``, ``abfs://``, ``s3://``, ``https://`` with a SAS query, local paths, ...).
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
        The archive is truncated or corrupt, has two members of the same name, or its md5 differs from the
        expected one.
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
    name = archive_name(archive)
    official = official_archives().get(name)
    expected = (md5 or (official.md5 if official else "")).strip().lower() or None
    if expected is not None and (len(expected) != 32 or any(c not in "0123456789abcdef" for c in expected)):
        raise ValueError(f"--md5 {md5!r} is not an md5: give 32 hexadecimal digits")
    report = ExtractReport(archive=archive.url, out=out.url, expected_md5=expected)
    members = Members(archive, out, name, report, workers=workers, small_member=SMALL_MEMBER)
    start = time.monotonic()
    try:
        reader = _read_all(archive, members, report, progress, start)
    finally:
        members.close()
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
        recorded = len(members.record) + members.added - report.redone  # a redone file was recorded before
        marker |= {"archive": name, "record": f"{name}.files", "files_recorded": recorded}
        storage.write_bytes(out, f"{MARKER_DIR}/{name}.json", json.dumps(marker).encode())
    return report


def _read_all(
    archive: storage.Location,
    members: Members,
    report: ExtractReport,
    progress: Callable[[ExtractReport], None] | None,
    start: float,
) -> _HashingReader:
    """Read the whole archive, handing every member to ``members``; return the reader (md5 and count)."""
    last_tick, last_complete = start, "(none)"
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
                    members.take(tar, member)
                    last_complete, current = member.name, None
                    now = time.monotonic()
                    if progress is not None and now - last_tick >= 1.0:
                        report.bytes_read, report.seconds, last_tick = reader.count, now - start, now
                        progress(report)
                while unpacked.read(READ_BUFFER):  # the tar padding, to the gzip end (its CRC is checked there)
                    pass
            while buffered.read(READ_BUFFER):  # anything after: the md5 covers the whole file
                pass
            members.finish()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            members.finish_quietly()
            raise ExtractError(
                f"{archive.url}: the archive is truncated or corrupt ({err}) while reading "
                f"{'the next member header' if current is None else f'member {current!r}'}; "
                f"the last complete member is {last_complete!r}. {report.written:,} complete members were written "
                f"to {members.out.url} (the member being read was not); fetch the archive again and rerun: members "
                "already written are recorded and skipped"
            ) from None
        except BaseException:
            members.finish_quietly()
            raise
    return reader
