"""``inat-fl prepare``: the builder's examples as image-bearing, client-aligned Parquet files, on Dask.

The real job is all of iNat 2021 (2.7M images). The manifest (no image bytes) fits on the driver, so no
shuffle is needed: the driver plans files of whole clients in client order (:mod:`~inat_hf.prepare.plan`),
writes once a copy of each manifest next to the output, one record batch per file, from which each task
reads its own rows, so that no row travels in the task graph (:mod:`~inat_hf.prepare.rows`), and each Dask
task writes one file (:mod:`~inat_hf.prepare.task`): it fetches that file's images through
:mod:`inat_hf.storage`, applies ``on_bad_image`` and ``max_image_side``, and writes one Parquet file with
statistics and the builder's features in the schema, to any fsspec URL, a batch of at most ``batch_rows``
rows (one row group) at a time, so that a worker's memory is bounded by a batch, not by a client
(:mod:`~inat_hf.prepare.stream`). The output has the export layout (:mod:`inat_hf.export.files`:
``data/{config}/{split}-XXXXX-of-YYYYY.parquet``); with the card, which the caller writes from the report
(:func:`inat_hf.hub.folder.write_card`), ``datasets.load_dataset(OUT, config)``,
:func:`inat_hf.export.read_client` and ``ClientData`` read it. ``inat-fl export`` is this same run with the
synchronous scheduler and no image bytes.

Files appear only complete and record the prepare key and their row range; a rerun writes only the files
that are missing or do not match (and, with ``redo_skipped``, the files that skipped rows), and gives the
same bytes (:mod:`~inat_hf.prepare.driver`). Schedulers and credentials: :mod:`~inat_hf.prepare.engine`.
"""

from inat_hf.prepare.driver import prepare
from inat_hf.prepare.plan import (
    BATCH_ROWS,
    FILE_ROWS_WITH_IMAGES,
    FILE_ROWS_WITHOUT_IMAGES,
    FileTask,
    Settings,
    plan_files,
)
from inat_hf.prepare.report import REPORT_FILE, format_report
from inat_hf.prepare.stream import RECORD_KEY
from inat_hf.prepare.task import read_record, run_file

__all__ = [
    "BATCH_ROWS",
    "FILE_ROWS_WITHOUT_IMAGES",
    "FILE_ROWS_WITH_IMAGES",
    "RECORD_KEY",
    "REPORT_FILE",
    "FileTask",
    "Settings",
    "format_report",
    "plan_files",
    "prepare",
    "read_record",
    "run_file",
]
