"""Files at a Location: read, write, list, stream; every error a redacted StorageError."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import os
import posixpath
import re
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO

import fsspec
from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem
from fsspec.spec import AbstractBufferedFile

from inat_hf.errors import StorageError, StorageNotFoundError
from inat_hf.storage import retry
from inat_hf.storage.azure import bound_azure_client
from inat_hf.storage.location import Location, where
from inat_hf.storage.redaction import describe_error
from inat_hf.storage.retry import logger, retrying, to_storage_error


def _needs_parent_dirs(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether files can only be written into existing folders (object stores and memory need none)."""
    return not isinstance(fs, AsyncFileSystem | MemoryFileSystem)


_STAGING = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}\.part")
HASH_BLOCK = 2**20
"""Bytes read at a time by :func:`md5_of`."""


def is_local(loc: Location) -> bool:
    """Whether ``loc`` is on local disk (where a file is written under a hidden name, then renamed)."""
    return isinstance(loc.fs, LocalFileSystem)


def _staging(path: str) -> str:
    """A hidden name next to ``path`` for a local file being written (renamed to ``path`` when complete)."""
    folder, name = posixpath.split(path)
    return posixpath.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.part")


def staged_for(name: str) -> str | None:
    """The file name that a hidden local file named ``name`` was being written for, or ``None``.

    A write to local disk that was killed (no ``finally`` ran) leaves its ``.{name}.{random}.part`` behind;
    whoever writes ``name`` again may delete it.
    """
    match = _STAGING.fullmatch(name)
    return match["name"] if match else None


def read_bytes(loc: Location, relative: str = "") -> bytes:
    """Return the whole content of a file, retrying transient errors."""
    path = loc.path(relative)
    return retrying(lambda: loc.fs.cat_file(path), loc, relative)


def exists(loc: Location, relative: str = "") -> bool:
    """Whether a file or folder exists; auth and network errors are raised, not answered with False."""
    path = loc.path(relative)
    loc.fs.invalidate_cache(path)
    return retrying(lambda: bool(loc.fs.exists(path)), loc, relative)


def size(loc: Location, relative: str = "") -> int:
    """Return the size of a file in bytes."""
    info = retrying(lambda: loc.fs.info(loc.path(relative)), loc, relative)
    if info.get("type") != "file":
        raise StorageError(loc.redact(f"{where(loc, relative)}: is a folder, not a file"))
    return int(info["size"])


def list_files(loc: Location, relative: str = "") -> list[str]:
    """Return the sorted paths, relative to ``loc.root``, of all files under ``relative`` (recursive).

    An empty folder gives ``[]``; raises StorageNotFoundError if nothing exists at ``relative``.
    """
    path = loc.path(relative)
    loc.fs.invalidate_cache(path)
    found = retrying(lambda: loc.fs.find(path, withdirs=False), loc, relative)
    if not found and not exists(loc, relative):
        raise to_storage_error(FileNotFoundError(path), loc, relative) from None
    prefix = loc.root if loc.root.endswith("/") or not loc.root else loc.root + "/"
    return sorted("" if p == loc.root else p.removeprefix(prefix) for p in found)


def list_sizes(loc: Location, relative: str = "") -> dict[str, int]:
    """Return every file under ``relative`` (recursive), relative to ``loc.root``, with its size in bytes.

    One paged listing (no request per file). A folder that does not exist gives ``{}``.
    """
    path = loc.path(relative)
    loc.fs.invalidate_cache(path)
    if not exists(loc, relative):
        return {}
    found = retrying(lambda: loc.fs.find(path, withdirs=False, detail=True), loc, relative)
    prefix = loc.root if loc.root.endswith("/") or not loc.root else loc.root + "/"
    return {name.removeprefix(prefix): int(info["size"]) for name, info in found.items()}


def list_folder(loc: Location, relative: str = "") -> dict[str, tuple[int, str | None]]:
    """Return the files directly in a folder (one listing, no request per file, sub-folders left out): base
    name -> (size in bytes, the md5 of the content as hex where the store keeps one, else ``None``).

    Azure keeps an md5 (``Content-MD5``) of a blob uploaded in one request (:func:`write_bytes`), not of one
    committed from blocks (:func:`open_output`); local files have none. Hidden files are listed too (a
    local ``.part`` file: :func:`staged_for`). A folder that does not exist gives ``{}``.
    """
    path = loc.path(relative)
    loc.fs.invalidate_cache(path)
    try:
        entries = retrying(lambda: loc.fs.ls(path, detail=True), loc, relative)
    except StorageNotFoundError:
        return {}
    return {
        str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]: (int(entry["size"]), _content_md5(entry))
        for entry in entries
        if entry.get("type") == "file"
    }


def _content_md5(info: dict) -> str | None:
    """The md5 (hex) a store keeps of a file's content, from its listing entry: Azure's ``Content-MD5``,
    Google Cloud Storage's ``md5Hash``; ``None`` where there is none (an S3 ETag is not always an md5).
    """
    settings = info.get("content_settings")  # azure-storage-blob's ContentSettings, or a dict
    digest = settings.get("content_md5") if isinstance(settings, dict) else getattr(settings, "content_md5", None)
    if digest:
        return bytes(digest).hex()
    encoded = info.get("md5Hash")
    return base64.b64decode(encoded).hex() if isinstance(encoded, str) and encoded else None


def md5_of(loc: Location, relative: str = "") -> str:
    """Return the md5 (hex) of a file's content, read as a stream."""
    digest = hashlib.md5(usedforsecurity=False)
    with open_binary(loc, relative) as stream:
        while block := stream.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def write_bytes(loc: Location, relative: str, data: bytes) -> None:
    """Write ``data`` to a file, replacing it; parent folders are made where the filesystem needs them.

    The file appears complete or not at all: on local disk it is written under a hidden name and renamed;
    object stores commit an upload when it ends.
    """
    path = loc.path(relative)

    def write() -> None:
        if _needs_parent_dirs(loc.fs):
            loc.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        if isinstance(loc.fs, LocalFileSystem):
            staging = _staging(path)
            try:
                with open(staging, "wb") as file:  # the builtin: a fifth of fsspec's cost per small file
                    file.write(data)
                os.replace(staging, path)
            finally:
                if os.path.lexists(staging):
                    os.remove(staging)
        else:
            loc.fs.pipe_file(path, data)

    retrying(write, loc, relative)


def write_many(loc: Location, items: Iterable[tuple[str, bytes]], *, max_workers: int = 16) -> int:
    """Write ``(relative, data)`` pairs concurrently and return how many were written.

    ``items`` is consumed lazily, ``4 * max_workers`` at a time; the first failure is raised.
    """
    workers, written, pending = max(1, max_workers), 0, iter(items)
    with ThreadPoolExecutor(workers, thread_name_prefix="inat-write") as pool:
        for batch in iter(lambda: list(itertools.islice(pending, 4 * workers)), []):
            written += len(list(pool.map(lambda item: write_bytes(loc, *item), batch)))
    return written


class _GuardedFile(io.BufferedIOBase):
    """A file whose errors are redacted StorageErrors; reads that fail transiently are retried."""

    def __init__(self, raw: Any, loc: Location, relative: str) -> None:
        super().__init__()
        self._raw, self._loc, self._relative = raw, loc, relative

    def read(self, size: int | None = -1) -> bytes:
        start = self._raw.tell() if self._raw.seekable() else None

        def attempt() -> bytes:
            if start is not None and self._raw.tell() != start:
                self._raw.seek(start)  # a failed read of an fsspec file does not move; a local one may
            return self._raw.read(-1 if size is None else size)

        return retrying(attempt, self._loc, self._relative, retry.DEFAULT_RETRIES if start is not None else 0)

    read1 = read

    def write(self, data: Any) -> int:
        return retrying(lambda: self._raw.write(data), self._loc, self._relative, 0)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return retrying(lambda: self._raw.seek(offset, whence), self._loc, self._relative, 0)

    def tell(self) -> int:
        return self._raw.tell()

    def readable(self) -> bool:
        return self._raw.readable()

    def writable(self) -> bool:
        return self._raw.writable()

    def seekable(self) -> bool:
        return self._raw.seekable()

    def close(self) -> None:
        if not self.closed:
            try:
                retrying(self._raw.close, self._loc, self._relative, 0)
            finally:
                super().close()


def _bounded_file(loc: Location, raw: Any) -> Any:
    """``raw``, an open file; an adlfs file has a client of its own, which gets the Location's Azure settings."""
    if loc.azure:
        bound_azure_client(getattr(raw, "container_client", None), loc.azure)
    return raw


@contextmanager
def open_binary(loc: Location, relative: str = "") -> Iterator[BinaryIO]:
    """Open a file for a streaming binary read (decompress ``.gz`` yourself); errors are StorageErrors."""
    path = loc.path(relative)
    raw = retrying(lambda: _bounded_file(loc, loc.fs.open(path, "rb")), loc, relative)
    with _GuardedFile(raw, loc, relative) as file:
        yield file  # type: ignore[misc]


@contextmanager
def open_output(loc: Location, relative: str) -> Iterator[BinaryIO]:
    """Open a file for a streaming binary write; parent folders are made where the filesystem needs them.

    The file is complete when the ``with`` block ends, and never visible half-written under its name: on
    local disk it is written under a hidden name (``.{name}.{random}.part``) and renamed when complete; on
    an object store the upload is committed when the block ends. If the block raises, the upload is aborted,
    never committed (:func:`_abort`: the blocks an Azure blob staged are never committed, so they are never
    visible, and a file that was there before stays as it was); a local hidden file is deleted; and the error
    goes on unchanged.
    """
    path = loc.path(relative)
    local = isinstance(loc.fs, LocalFileSystem)
    target = _staging(path) if local else path

    def open_raw() -> Any:
        if _needs_parent_dirs(loc.fs):
            loc.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        return _bounded_file(loc, loc.fs.open(target, "wb"))

    raw = retrying(open_raw, loc, relative, 0)
    file = _GuardedFile(raw, loc, relative)
    try:
        yield file  # type: ignore[misc]
        file.close()
        if local:
            os.replace(target, path)
    except BaseException:
        if _abort(raw):
            io.BufferedIOBase.close(file)  # the wrapper too, so that nothing is left for a finalizer to run
        else:  # a local file, or one that a store made visible as it was written (memory://)
            with suppress(Exception):
                file.close()
            try:
                if not local or os.path.lexists(target):
                    loc.fs.rm_file(target)
            except Exception as exc:
                message = f"{where(loc, relative)}: partial output not removed ({describe_error(exc)})"
                logger.warning("%s", loc.redact(message))
        raise


def _abort(raw: Any) -> bool:
    """Throw away the upload of an object-store file being written, without committing it; return whether
    ``raw`` was such a file (an fsspec buffered file: adlfs, s3fs, gcsfs ...).

    Closing a buffered file commits what it holds (adlfs: ``commit_block_list`` of the blocks staged so far,
    a partial blob), also when it is closed by the garbage collector. Here it is closed without that:
    ``discard()`` first (s3fs and gcsfs abort their multipart or resumable upload there; a no-op for adlfs,
    whose staged blocks are never visible and are dropped by Azure), then ``forced`` set, so that ``close()``
    sends no last block and commits nothing and only frees the file's client.
    ``tests/test_storage.py::test_an_aborted_upload_leaves_no_blob`` fails if fsspec or adlfs change this.
    """
    if not isinstance(raw, AbstractBufferedFile) or raw.mode == "rb":
        return False
    if not raw.closed:
        with suppress(Exception):
            raw.discard()
        raw.forced = True
        with suppress(Exception):
            raw.close()
    return True


def remove(loc: Location, relative: str) -> None:
    """Delete a file; one that is already gone is not an error."""
    path = loc.path(relative)

    def rm() -> None:
        with suppress(FileNotFoundError):
            loc.fs.rm_file(path)

    retrying(rm, loc, relative)


@contextmanager
def open_atomic(loc: Location, relative: str) -> Iterator[BinaryIO]:
    """:func:`open_output`, checked: the file appears at ``relative`` only complete, or not at all.

    The one primitive of streamed writes (``prepare``'s Parquet files, ``extract``'s big members). On a local
    disk :func:`open_output` already writes under a hidden name and renames (atomic). On other filesystems
    (object stores, where an upload becomes visible when it is committed) the stored size is then checked
    against the bytes written, and a short file is deleted. If the block raises, or a write fails, the upload
    is aborted, never committed: nothing appears, and a file that was there before is left as it was.

    Raises
    ------
    StorageError
        If the stored file does not have the size written (it is deleted first).
    """
    with open_output(loc, relative) as handle:
        yield handle
        written = handle.tell()
    if isinstance(loc.fs, LocalFileSystem):
        return
    stored = size(loc, relative)
    if stored != written:
        remove(loc, relative)
        raise StorageError(loc.redact(f"{where(loc, relative)}: stored {stored} bytes of {written} written"))


def is_per_process(loc: Location) -> bool:
    """Whether ``loc`` lives in this process only (``memory://``): other processes cannot write to it."""
    return isinstance(loc.fs, MemoryFileSystem)
