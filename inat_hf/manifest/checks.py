"""Why a config keeps no rows: one line naming the config, the rows in and the reason.

Every path to a manifest (the builder, ``ClientStream``, export, ``inat-fl prepare``, ``stats`` and ``card``)
goes through :func:`inat_hf.manifest.build.build_manifest`, which calls :func:`check_source` before it
partitions anything (so a geo scheme on metadata without locations, or a rank the metadata does not give,
fails before any image is fetched or any file written) and :func:`check_kept` after the client filters.
Both raise :class:`inat_hf.errors.EmptyConfigError`, e.g.::

    family_geo1k: keeps 0 of 131 train rows: the processed CSV (training_image_info.csv) has no
    latitude/longitude; use train.json, whose images have locations, or a scheme without locations (user, ...)
    family_user: keeps 0 of 2,686,843 train rows: min_client_size=5,000 keeps 0 of 158,873 clients (the
    largest has 2,921 rows)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from inat_hf.config import INatFLConfig
from inat_hf.errors import EmptyConfigError
from inat_hf.metadata.report import metadata_report
from inat_hf.partition import get_partitioner

_SCHEMES_WITHOUT_LOCATIONS = "user, dirichlet, iid"


def empty_config_error(config: INatFLConfig, rows_in: int, reason: str) -> EmptyConfigError:
    """The error of a config that keeps none of its ``rows_in`` train-pool rows, for ``reason``."""
    return EmptyConfigError(f"{config.name}: keeps 0 of {rows_in:,} {config.train_split} rows: {reason}")


def _csv_source(images: pa.Table, split: str) -> str | None:
    """The base name of the processed CSV that the ``split`` rows of ``images`` came from (None: not a CSV)."""
    for report in metadata_report(images).files:
        name = report.source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if report.split == split and name.endswith(".csv"):
            return name
    return None


def check_source(
    images: pa.Table,
    train: pa.Table,
    labels: NDArray[np.int64],
    config: INatFLConfig,
) -> None:
    """Raise :class:`~inat_hf.errors.EmptyConfigError` when the metadata cannot give ``config`` a single row.

    Parameters
    ----------
    images : pyarrow.Table
        The images table as loaded (its report tells a processed CSV from the official JSON).
    train : pyarrow.Table
        Its train-pool rows (``config.train_split``).
    labels : numpy.ndarray of int64, shape (len(train),)
        The label of each train-pool row at ``config.rank`` (``-1``: none).
    config : INatFLConfig
    """
    rows_in, csv = train.num_rows, _csv_source(images, config.train_split)
    if rows_in == 0:
        raise empty_config_error(
            config,
            0,
            f"the metadata holds no {config.train_split!r} rows (load it with train_split={config.train_split!r})",
        )
    labelled = labels >= 0
    if not labelled.any():
        where = (
            f"the processed CSV ({csv}) gives no {config.rank}: its file names are not in the official folders "
            f"(train/<image_dir_name>/...) and it has no {config.rank!r} column; use train.json"
            if csv
            else f"none has a {config.rank} label (public_test.json has no labels)"
        )
        raise empty_config_error(config, rows_in, where)
    inputs = get_partitioner(config.scheme).inputs
    if "latitude" in inputs:
        lat = train["latitude"].to_numpy().astype(np.float64)
        lon = train["longitude"].to_numpy().astype(np.float64)
        if not (labelled & ~np.isnan(lat) & ~np.isnan(lon)).any():
            needs = f"latitude/longitude, which the {config.scheme} scheme needs"
            others = f"a scheme without locations ({_SCHEMES_WITHOUT_LOCATIONS})"
            raise empty_config_error(
                config,
                rows_in,
                f"the processed CSV ({csv}) has no {needs}; use train.json, whose images have locations, or {others}"
                if csv
                else f"none of the {int(labelled.sum()):,} labelled rows has a {needs}; use {others}",
            )
    if "user_codes" in inputs and not (labelled & np.asarray(pc.is_valid(train["user"]))).any():
        raise empty_config_error(
            config, rows_in, "no labelled row has a user (rights_holder), which the user scheme needs"
        )


def check_kept(
    config: INatFLConfig,
    rows_in: int,
    reason: NDArray[np.int8],
    reasons: tuple[str, ...],
    clients_before: Mapping[str, NDArray[np.int64]],
) -> None:
    """Raise :class:`~inat_hf.errors.EmptyConfigError` when the partition and the client filters kept no row.

    Parameters
    ----------
    config : INatFLConfig
    rows_in : int
        Train-pool rows.
    reason : numpy.ndarray of int8, shape (rows_in,)
        Each row's drop reason, an index into ``reasons`` (``-1``: kept).
    reasons : tuple of str
        The drop reasons, in the order the steps ran.
    clients_before : mapping of str to numpy.ndarray
        For each filter's drop reason, the client sizes it was given.
    """
    if (reason < 0).any():
        return
    counts = np.bincount(reason.astype(np.int64), minlength=len(reasons))
    last = reasons[int(np.flatnonzero(counts)[-1])]  # the steps run in order: the last one that dropped emptied it
    sizes = clients_before.get(last, np.zeros(0, dtype=np.int64))
    sizes = sizes[sizes > 0]
    largest = int(sizes.max()) if sizes.size else 0
    if last == "client_too_small":
        why = (
            f"min_client_size={config.min_client_size:,} keeps 0 of {sizes.size:,} clients "
            f"(the largest has {largest:,} rows)"
        )
    else:
        why = "dropped " + ", ".join(f"{reasons[i]}={int(n):,}" for i, n in enumerate(counts) if n)
    raise empty_config_error(config, rows_in, why)
