"""inaturalist-fl: iNaturalist 2021 as a federated dataset for HuggingFace ``datasets``.

The data flow, one folder per layer, imports pointing down it:

* :mod:`inat_hf.storage`: fsspec/adlfs, the only code that talks to storage;
* :mod:`inat_hf.metadata`: official JSON or processed CSV -> one images table;
* :mod:`inat_hf.partition`: the images table -> a client per row (schemes and filters);
* :mod:`inat_hf.manifest`: the partitioned rows of a config, cached, and :mod:`inat_hf.manifest.examples`
  (manifest rows -> examples, images fetched);
* :mod:`inat_hf.export`: the Parquet layout of an export (the table, the ``client`` pseudonyms, row groups,
  file names; reading a client back, attaching images);
* the ``datasets`` builder (:mod:`inat_hf.builder`) and the Dask engine (:mod:`inat_hf.prepare`, which writes
  that layout; ``inat-fl export`` runs it in-process) write the examples; :mod:`inat_hf.hub` adds the card
  and pushes the folder;
* :mod:`inat_hf.federated`: clients of a prepared split (``ClientData``), one client from storage
  (``ClientStream``), the Flower partitioner; :mod:`inat_hf.train` trains on them (:mod:`inat_hf.train.flower`
  with Flower);
* beside the flow: :mod:`inat_hf.analysis` (partition statistics, plots, summaries), :mod:`inat_hf.realcopy`
  (preflight and extraction of a real copy), :mod:`inat_hf.cli` (``inat-fl``, one module per command) and
  :mod:`inat_hf.replica` (a faithful synthetic replica of iNat 2021 that every feature is tested on).

Loose modules are what a user imports first: :mod:`~inat_hf.builder`, :mod:`~inat_hf.config`,
:mod:`~inat_hf.schema` (the column contract), :mod:`~inat_hf.errors`, :mod:`~inat_hf.taxonomy`,
:mod:`~inat_hf.about`. Module paths from before this layout still import, with a ``DeprecationWarning`` that
names the new one (:mod:`inat_hf._moved`).
"""

from typing import Any

from inat_hf import _moved
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

_moved.install()


def __getattr__(name: str) -> Any:
    """``inat_hf.ClientData`` on first use: it needs ``datasets``, which is slow to import."""
    if name == "ClientData":
        from inat_hf.federated.clients import ClientData

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
