"""What ``inat-fl extract`` keeps to resume safely: the record of the files it wrote, the member names it saw
and the output folders it listed (:mod:`inat_hf.realcopy.extract` uses them; nothing here reads the archive).

The record
    Every file an extraction writes is recorded with its size and md5 in its marker folder,
    ``{OUT}/.inat-fl-extract/{archive name}.files/{NNNNNN}.json`` (``{"archive": ..., "files": [[path, size,
    md5], ...]}``), a chunk every :data:`RECORD_EVERY` files or :data:`RECORD_SECONDS` seconds and when the run
    ends, also on an error; a later chunk overrides an earlier one. A hard kill loses at most the last chunk:
    those files are written again by the next run.
Memory
    Names are kept as 16-byte digests in sorted NumPy arrays (about 40 bytes per recorded file and 16 per
    member seen: about 150 MB for ``train.tar.gz``'s 2.7 million members), not as Python strings.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import NamedTuple

import numpy as np

from inat_hf import storage

MARKER_DIR = ".inat-fl-extract"
"""Folder under the output of the marker files: ``{archive}.json`` (a verified extraction) and
``{archive}.files/`` (the record of the files written)."""
RECORD_EVERY = 10_000
"""Files per record chunk."""
RECORD_SECONDS = 60.0
"""Seconds after which the files written since the last chunk are recorded, however few."""
MERGE_EVERY = 65_536
"""Names held in a Python set before they are merged into the sorted array of :class:`NameSet`."""
FOLDERS_KEPT = 256
"""Output folders whose listing :class:`Present` keeps (least recently used dropped first)."""
_CHUNK = re.compile(r"(\d{6})\.json")
_KEY = np.dtype("V16")


def key_of(relative: str) -> bytes:
    """The 16-byte digest that stands for a member's path."""
    return hashlib.md5(relative.encode("utf-8", "surrogateescape"), usedforsecurity=False).digest()


def _keys(digests: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(digests), dtype=_KEY) if digests else np.empty(0, _KEY)


def _find(sorted_keys: np.ndarray, digest: bytes) -> int:
    """The index of ``digest`` in ``sorted_keys``, or -1."""
    probe = np.frombuffer(digest, dtype=_KEY)
    index = int(np.searchsorted(sorted_keys, probe)[0])
    return index if index < len(sorted_keys) and sorted_keys[index] == probe[0] else -1


class NameSet:
    """The member paths an extraction has met, to refuse a second member of the same name."""

    def __init__(self) -> None:
        self._recent: set[bytes] = set()
        self._sorted = np.empty(0, _KEY)

    def add(self, relative: str) -> bool:
        """Add ``relative``; return ``False`` if it was there already."""
        digest = key_of(relative)
        if digest in self._recent or (len(self._sorted) and _find(self._sorted, digest) >= 0):
            return False
        self._recent.add(digest)
        if len(self._recent) >= MERGE_EVERY:
            self._sorted = np.sort(np.concatenate([self._sorted, _keys(list(self._recent))]))
            self._recent.clear()
        return True


class Recorded(NamedTuple):
    """A file's size and md5 (hex) as recorded when it was written."""

    size: int
    md5: str


class Record:
    """The record of the files that extractions of one archive into one folder wrote (see the module)."""

    def __init__(self, out: storage.Location, archive: str) -> None:
        self._out, self._archive = out, archive
        self.folder = f"{MARKER_DIR}/{archive}.files"
        chunks = sorted(
            (int(match[1]), name) for name in storage.list_folder(out, self.folder) if (match := _CHUNK.fullmatch(name))
        )
        self._next = chunks[-1][0] + 1 if chunks else 0
        keys, sizes, md5s = [], [], []
        for _, name in chunks:  # in order: a later chunk overrides an earlier one
            files = json.loads(storage.read_bytes(out, f"{self.folder}/{name}"))["files"]
            keys.append(_keys([key_of(path) for path, _, _ in files]))
            sizes.append(np.array([size for _, size, _ in files], dtype=np.int64))
            md5s.append(_keys([bytes.fromhex(md5) for _, _, md5 in files]))
        self._keys, self._sizes, self._md5s = _latest(keys, sizes, md5s)
        self._pending: list[tuple[str, int, str]] = []
        self._flushed = time.monotonic()

    def __len__(self) -> int:
        """Files recorded by earlier runs."""
        return len(self._keys)

    def get(self, relative: str) -> Recorded | None:
        """What an earlier run recorded for ``relative``, or ``None``."""
        index = _find(self._keys, key_of(relative)) if len(self._keys) else -1
        return None if index < 0 else Recorded(int(self._sizes[index]), self._md5s[index].tobytes().hex())

    def add(self, relative: str, size: int, md5: str) -> None:
        """Record a file just written; a chunk is written when enough are pending (see the module)."""
        self._pending.append((relative, size, md5))
        if len(self._pending) >= RECORD_EVERY or time.monotonic() - self._flushed >= RECORD_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the files recorded since the last chunk as a new chunk (nothing if there are none)."""
        self._flushed = time.monotonic()
        if not self._pending:
            return
        chunk = json.dumps({"archive": self._archive, "files": self._pending}, separators=(",", ":"))
        storage.write_bytes(self._out, f"{self.folder}/{self._next:06d}.json", chunk.encode())
        self._next, self._pending = self._next + 1, []


def _latest(keys: list[np.ndarray], sizes: list[np.ndarray], md5s: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The chunks' entries sorted by key, the last one of each key kept."""
    if not keys:
        return np.empty(0, _KEY), np.empty(0, np.int64), np.empty(0, _KEY)
    all_keys, all_sizes, all_md5s = np.concatenate(keys), np.concatenate(sizes), np.concatenate(md5s)
    order = np.argsort(all_keys, kind="stable")
    ordered = all_keys[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    keep = order[last]
    return all_keys[keep], all_sizes[keep], all_md5s[keep]


class _Folder(NamedTuple):
    files: dict[str, tuple[int, str | None]]
    staged: dict[str, list[str]]  # file name -> hidden ".part" files left for it (local disk)


class Present:
    """The files in the output, listed one folder at a time (:func:`inat_hf.storage.list_folder`), only when
    first needed, and kept for the :data:`FOLDERS_KEPT` folders used last; safe to use from many threads.
    """

    def __init__(self, out: storage.Location) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._folders: OrderedDict[str, Future[_Folder]] = OrderedDict()

    def _folder(self, folder: str) -> _Folder:
        with self._lock:
            entry = self._folders.get(folder)
            owner = entry is None
            if entry is None:
                entry = self._folders[folder] = Future()
                while len(self._folders) > FOLDERS_KEPT:
                    self._folders.popitem(last=False)
            else:
                self._folders.move_to_end(folder)
        if owner:
            try:
                files = storage.list_folder(self._out, folder)
            except BaseException as error:
                entry.set_exception(error)
                with self._lock:
                    if self._folders.get(folder) is entry:
                        del self._folders[folder]
                raise
            staged: dict[str, list[str]] = {}
            for name in files:
                if (target := storage.staged_for(name)) is not None:
                    staged.setdefault(target, []).append(name)
            entry.set_result(_Folder(files, staged))
        return entry.result()

    def get(self, relative: str) -> tuple[int, str | None] | None:
        """The size and stored md5 (``None`` if the store keeps none) of the file at ``relative``, or ``None``."""
        folder, name = posixpath.split(relative)
        return self._folder(folder).files.get(name)

    def staged(self, relative: str) -> list[str]:
        """The paths of the hidden ``.part`` files that an earlier, killed write of ``relative`` left."""
        folder, name = posixpath.split(relative)
        return [posixpath.join(folder, part) for part in self._folder(folder).staged.get(name, [])]
