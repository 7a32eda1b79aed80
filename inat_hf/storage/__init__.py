"""The ONLY code that talks to storage: URLs, credentials, concurrent fetches, retries, redaction.

A URL plus its ``storage_options`` becomes a :class:`Location` once, at the edge (:func:`resolve`); every
other function takes the Location. Credentials come from ``storage_options`` or from the environment
variables that adlfs and azure-identity read by themselves, and never appear in a message.

Modules: :mod:`~inat_hf.storage.location` (Location, resolve), :mod:`~inat_hf.storage.files` (read, write,
list, stream), :mod:`~inat_hf.storage.fetch` (:func:`fetch_many`), :mod:`~inat_hf.storage.retry` (bounded
retries, :data:`STATS`), :mod:`~inat_hf.storage.azure` (the Azure client limits) and
:mod:`~inat_hf.storage.redaction`.
"""

from inat_hf.errors import StorageAuthError, StorageError, StorageNotFoundError
from inat_hf.storage.azure import AZURE_CONNECTION_TIMEOUT, AZURE_READ_TIMEOUT, AZURE_SDK_RETRY
from inat_hf.storage.fetch import fetch_many
from inat_hf.storage.files import (
    exists,
    is_local,
    is_per_process,
    list_files,
    list_folder,
    list_sizes,
    md5_of,
    open_atomic,
    open_binary,
    open_output,
    read_bytes,
    remove,
    size,
    staged_for,
    write_bytes,
    write_many,
)
from inat_hf.storage.location import Location, resolve
from inat_hf.storage.redaction import protect_library_logs, redact
from inat_hf.storage.retry import DEFAULT_RETRIES, RETRY_DEADLINE, STATS, StorageStats
from inat_hf.storage.tokens import file_token, has_version, list_names

protect_library_logs()  # fsspec logs whole URLs (with a SAS signature) at DEBUG

__all__ = [
    "AZURE_CONNECTION_TIMEOUT",
    "AZURE_READ_TIMEOUT",
    "AZURE_SDK_RETRY",
    "DEFAULT_RETRIES",
    "RETRY_DEADLINE",
    "STATS",
    "Location",
    "StorageAuthError",
    "StorageError",
    "StorageNotFoundError",
    "StorageStats",
    "exists",
    "fetch_many",
    "file_token",
    "has_version",
    "is_local",
    "is_per_process",
    "list_files",
    "list_folder",
    "list_names",
    "list_sizes",
    "md5_of",
    "open_atomic",
    "open_binary",
    "open_output",
    "read_bytes",
    "redact",
    "remove",
    "resolve",
    "size",
    "staged_for",
    "write_bytes",
    "write_many",
]
