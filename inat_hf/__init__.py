"""inaturalist-fl: iNaturalist 2021 as a federated dataset for HuggingFace ``datasets``.

The data flow, one folder (or module) per layer, imports pointing down it: :mod:`inat_hf.storage`
(fsspec/adlfs, the only code that talks to storage) -> :mod:`inat_hf.metadata` (official JSON or processed
CSV -> one images table) -> :mod:`inat_hf.partition` -> :mod:`inat_hf.manifest` -> :mod:`inat_hf.examples`
-> the ``datasets`` builder (:mod:`inat_hf.builder`), :mod:`inat_hf.clients`, :mod:`inat_hf.flower`,
:mod:`inat_hf.hub`, :mod:`inat_hf.train`. :mod:`inat_hf.schema` is the column contract;
:mod:`inat_hf.replica` writes a faithful synthetic replica of iNat 2021 that every feature is tested on.
"""

from typing import Any

from inat_hf.errors import (
    EmptyConfigError,
    InatError,
    MetadataError,
    StorageAuthError,
    StorageError,
    StorageNotFoundError,
)
from inat_hf.metadata import load_metadata
from inat_hf.metadata.report import MetadataReport, metadata_report
from inat_hf.schema import IMAGE_COLUMNS
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
    "EmptyConfigError",
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
