"""The export layout, written by :mod:`inat_hf.prepare` (``inat-fl export`` is prepare with the synchronous
scheduler) and read by ``datasets``, :func:`read_client`, ``ClientData`` and the Flower partitioner.

:mod:`~inat_hf.export.files`: the Parquet table (features in the schema metadata, the ``client``
pseudonym), client-aligned row groups, file names, the card's ``data_files`` and split sizes, reading one
client back. :mod:`~inat_hf.export.images`: the image bytes from your own copy (:func:`attach_images`). The
card and the upload are :mod:`inat_hf.hub`'s.
"""

from inat_hf.export.files import (
    PSEUDONYM_PREFIX,
    client_pseudonyms,
    data_files,
    export_features,
    file_name,
    pseudonym,
    read_client,
    rows_table,
    with_split_sizes,
)
from inat_hf.export.images import attach_images

__all__ = [
    "PSEUDONYM_PREFIX",
    "attach_images",
    "client_pseudonyms",
    "data_files",
    "export_features",
    "file_name",
    "pseudonym",
    "read_client",
    "rows_table",
    "with_split_sizes",
]
