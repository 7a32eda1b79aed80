"""inaturalist-fl: iNaturalist 2021 as a federated dataset for HuggingFace ``datasets``.

The data flow (see DESIGN.md): :mod:`inat_hf.storage` (fsspec/adlfs, the only module that talks to
storage) -> :mod:`inat_hf.metadata` (official JSON or processed CSV -> one images table) ->
partitions -> manifest -> examples -> the ``datasets`` builder. :mod:`inat_hf.sample` writes a faithful
synthetic replica of iNat 2021 that every feature is tested on.
"""

from typing import Any

from inat_hf.errors import InatError, MetadataError, StorageAuthError, StorageError, StorageNotFoundError
from inat_hf.metadata import IMAGE_COLUMNS, load_metadata
from inat_hf.report import MetadataReport, metadata_report
from inat_hf.taxonomy import RANKS, Taxonomy

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``inat_hf.ClientData`` on first use: it needs ``datasets``, which is slow to import."""
    if name == "ClientData":
        from inat_hf.clients import ClientData

        return ClientData
    raise AttributeError(f"module 'inat_hf' has no attribute {name!r}")


__all__ = [
    "IMAGE_COLUMNS",
    "RANKS",
    "ClientData",
    "InatError",
    "MetadataError",
    "MetadataReport",
    "StorageAuthError",
    "StorageError",
    "StorageNotFoundError",
    "Taxonomy",
    "__version__",
    "load_metadata",
    "metadata_report",
]
