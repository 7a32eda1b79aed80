"""Version tokens of files: what changes when a file changes (its ETag, modification time or content hash).

They key the manifest cache (:mod:`inat_hf.manifest.cache`); a token never holds a secret.
"""

from __future__ import annotations

import hashlib

from inat_hf.errors import StorageError
from inat_hf.storage.files import open_binary
from inat_hf.storage.location import Location, where
from inat_hf.storage.retry import retrying

VERSION_KEYS = ("etag", "ETag", "mtime", "last_modified", "LastModified", "Last-Modified", "created", "Content-MD5")
"""Keys of an fsspec ``info`` entry that change when the file changes: ETags (object stores, HTTP), modification
times (local disk, S3, HTTP ``Last-Modified``), creation times (memory) and published checksums, first found wins."""
HASH_CHUNK = 8 * 2**20
"""Bytes read at a time to hash a file's content."""


def file_token(loc: Location, relative: str = "") -> str:
    """A short string that changes when the file changes: its size and its ETag or modification time.

    Cheap (one metadata request, no content read); used to key caches. Never holds a secret. A file whose
    storage gives neither (an HTTP server without ``ETag`` or ``Last-Modified``, some archive filesystems)
    is fingerprinted by its content: ``"{size}:sha256-{hex}"`` (:func:`content_token`, a full read), never by
    its size alone, which would not change when the content does.
    """
    info = retrying(lambda: loc.fs.info(loc.path(relative)), loc, relative)
    if info.get("type") != "file":
        raise StorageError(loc.redact(f"{where(loc, relative)}: is a folder, not a file"))
    token = token_of(info)
    return token if has_version(token) else content_token(loc, relative)


def token_of(info: dict) -> str:
    """The token of an fsspec ``info`` entry: ``"{size}:{etag or modification time}"``; ``"{size}:"`` when the
    entry has neither, ``":"`` when it has no size either (an HTTP folder's listing): see :func:`has_version`,
    :func:`file_token` then asks for the file alone and hashes its content if need be.
    """
    if info.get("size") is None:
        return ":"
    version = next((str(info[key]) for key in VERSION_KEYS if info.get(key)), "")
    return f"{int(info['size'])}:{version}"


def has_version(token: str) -> bool:
    """Whether a :func:`token_of` token holds a version (an ETag, a time, a hash), not only a size."""
    return not token.endswith(":")


def content_token(loc: Location, relative: str = "") -> str:
    """``"{size}:sha256-{hex}"`` of the file's content, read once as a stream (:data:`HASH_CHUNK` at a time)."""
    digest, total = hashlib.sha256(), 0
    with open_binary(loc, relative) as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
            total += len(chunk)
    return f"{total}:sha256-{digest.hexdigest()}"


def list_names(loc: Location, relative: str = "") -> dict[str, str]:
    """Return the files directly in a folder (one listing request): base name -> :func:`file_token`-style token.

    Sub-folders are left out. Raises StorageNotFoundError if the folder does not exist.
    """
    path = loc.path(relative)
    loc.fs.invalidate_cache(path)
    entries = retrying(lambda: loc.fs.ls(path, detail=True), loc, relative)
    # a symbolic link is listed as "other" with the link's own size and time: take its target's (a file or not)
    entries = [_followed(loc, entry) if entry.get("islink") else entry for entry in entries]
    return {
        str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]: token_of(entry)
        for entry in entries
        if entry.get("type") == "file"
    }


def _followed(loc: Location, entry: dict) -> dict:
    """The info of a symbolic link's target (a broken link: the entry as listed, type "other")."""
    try:
        return dict(loc.fs.info(entry["name"]))
    except FileNotFoundError:
        return entry
