"""The project's own exceptions.

Every error that bad input can cause is one of these, with a message that names the file (or URL, with
secrets redacted), the field and the fix. They subclass the builtin a caller would expect, so
``except ValueError`` and ``except OSError`` keep working.
"""

from __future__ import annotations


class InatError(Exception):
    """Base class of every error raised on purpose by ``inat_hf``."""


class MetadataError(InatError, ValueError):
    """A metadata file (JSON or CSV) is malformed, incomplete or inconsistent."""


class StorageError(InatError, OSError):
    """A storage operation failed; the message is redacted and names the URL."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """A file, folder or container does not exist."""


class StorageAuthError(StorageError, PermissionError):
    """The credentials were missing, wrong or not allowed to do this."""


class EmptyConfigError(InatError, ValueError):
    """A config keeps no row of its metadata: the one-line message names the config, the rows in and the reason."""
