"""A storage Location: a URL plus its ``storage_options``, resolved once, at the edge.

Credentials come from ``storage_options`` or from the environment variables that adlfs and azure-identity
read by themselves. A Location remembers the secret values it was given (never shown) so that every message
about it is redacted with them (:meth:`Location.redact`).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.core.exceptions as azure_errors
import fsspec
from fsspec.implementations.local import LocalFileSystem

from inat_hf.errors import StorageAuthError, StorageError
from inat_hf.storage.azure import AZURE_HINT, AZURE_PROTOCOLS, AzureSettings, azure_settings, bound_azure_client
from inat_hf.storage.redaction import describe_error, redact, secrets_of, secrets_of_url


@dataclass(frozen=True)
class Location:
    """A root path (``root``: protocol stripped, no trailing slash) in a filesystem ``fs``; ``url`` is the
    redacted URL for messages. Make one with :func:`resolve`.
    """

    fs: fsspec.AbstractFileSystem = field(repr=False)
    root: str
    url: str
    _secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)
    azure: AzureSettings = field(default=(), repr=False, compare=False)
    """Azure client settings (:func:`inat_hf.storage.azure.azure_settings`); empty off Azure."""

    def path(self, relative: str = "") -> str:
        """Return the path of ``relative`` (posix) under the root; raise ValueError if it leaves the root."""
        clean = _clean_relative(relative, self.url)
        if not clean:
            return self.root
        return f"{self.root}{clean}" if self.root.endswith("/") or not self.root else f"{self.root}/{clean}"

    def redact(self, text: str) -> str:
        """Return ``text`` with this Location's secrets (and any secret-looking pattern) replaced."""
        return redact(text, self._secrets)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle as its parts: a copy in another process (a ``num_proc`` worker, a Dask worker) gets an
        equal filesystem from fsspec, and its Azure client gets this Location's limits again.
        """
        return _unpickle, (self.fs, self.root, self.url, self._secrets, self.azure)

    def parent(self) -> Location:
        """Return the Location of the folder holding this one (the same filesystem and credentials)."""
        root = posixpath.dirname(self.root.rstrip("/")) if "/" in self.root.rstrip("/") else self.root
        url = self.url.rstrip("/").rsplit("/", 1)[0] if "/" in self.url.split("://", 1)[-1] else self.url
        return Location(self.fs, root, url, self._secrets, self.azure)

    def child(self, relative: str) -> Location:
        """Return the Location rooted at ``self.path(relative)``."""
        clean = _clean_relative(relative, self.url)
        return Location(self.fs, self.path(clean), where(self, clean), self._secrets, self.azure)


def _unpickle(fs: Any, root: str, url: str, secrets: tuple[str, ...], azure: AzureSettings) -> Location:
    if azure:
        bound_azure_client(getattr(fs, "service_client", None), azure)
    return Location(fs, root, url, secrets, azure)


def _clean_relative(relative: str, url: str) -> str:
    """Return ``relative`` normalised ("" for the root), or raise ValueError if it is absolute or escapes."""
    if not relative:
        return ""
    if relative.startswith(("/", "\\")) or "://" in relative or re.match(r"[A-Za-z]:[\\/]", relative):
        raise ValueError(f"path {relative!r} is absolute; give a path relative to {url}")
    clean = posixpath.normpath(relative)
    if clean == ".." or clean.startswith("../"):
        raise ValueError(f"path {relative!r} leads out of {url}: '..' may not escape the root")
    return "" if clean == "." else clean


def where(loc: Location, relative: str) -> str:
    """Return the URL of ``relative`` under ``loc``, for messages."""
    return f"{loc.url}/{relative}" if relative else loc.url


def resolve(url: str, storage_options: Mapping[str, Any] | None = None) -> Location:
    """Open the filesystem of ``url`` and return a :class:`Location` rooted at its path.

    Parameters
    ----------
    url : str
        Any fsspec URL, or a local path (a relative one is made absolute).
    storage_options : mapping, optional
        Passed to the filesystem unchanged (adlfs: ``connection_string``; or ``account_name`` with
        ``account_key``, ``sas_token`` or ``credential``); without them adlfs reads the ``AZURE_STORAGE_*``
        environment variables or uses ``DefaultAzureCredential``. Secret values, and those in the URL's query
        (a SAS URL's ``sig``), are remembered on the Location (never shown) so that its messages are redacted
        with them.

    Raises
    ------
    StorageAuthError
        If adlfs cannot make a client from the credentials (missing or malformed).
    StorageError
        If the protocol is unknown or its fsspec implementation is not installed.
    """
    url = os.fspath(url)
    options = dict(storage_options or {})
    secrets = tuple(dict.fromkeys(secrets_of(options) + secrets_of_url(url)))
    shown = redact(url, secrets).rstrip("/") or url[:1]
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    azure = azure_settings(options, shown) if protocol in AZURE_PROTOCOLS else ()
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except Exception as exc:
        if isinstance(exc, ImportError):
            message = f"{shown}: cannot open {protocol}:// ({describe_error(exc)}); install its fsspec package"
        elif protocol in AZURE_PROTOCOLS and isinstance(exc, ValueError | azure_errors.AzureError):
            message = f"{shown}: cannot connect to Azure ({describe_error(exc)}); {AZURE_HINT}"
            raise StorageAuthError(redact(message, secrets)) from None
        else:
            message = f"{shown}: cannot open ({describe_error(exc)})"
        raise StorageError(redact(message, secrets)) from None
    root = path.rstrip("/") or path
    if azure:
        bound_azure_client(getattr(fs, "service_client", None), azure)
    return Location(fs, root, root if isinstance(fs, LocalFileSystem) else shown, secrets, azure)
