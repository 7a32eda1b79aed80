"""iNat 2021 metadata -> one images table (pyarrow, one row per image, typed columns, every rank).

Sources: the official COCO-style files (``train.json``, ``val.json``, ``train_mini.json``,
``public_test.json``; plain, ``.json.gz`` or ``.json.tar.gz``: :mod:`~inat_hf.metadata.official_json`, parsed
slice by slice by :mod:`~inat_hf.metadata.json_stream`) and the processed CSV ``training_image_info.csv``
(:mod:`~inat_hf.metadata.processed_csv`). Records become typed columns with every bad row given a reason
(:mod:`~inat_hf.metadata.fields`), then the images table (:mod:`~inat_hf.metadata.image_table`, columns
:data:`inat_hf.schema.IMAGE_COLUMNS`) with its report (:mod:`~inat_hf.metadata.report`): rows in = rows out +
rows skipped, per file. :mod:`~inat_hf.metadata.users` is the per-user table.
"""

from inat_hf.metadata.load import find_metadata_files, is_file_url, load_metadata
from inat_hf.metadata.report import FileReport, MetadataReport, metadata_report

__all__ = ["FileReport", "MetadataReport", "find_metadata_files", "is_file_url", "load_metadata", "metadata_report"]
