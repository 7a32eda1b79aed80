"""The driver's plan: files of whole clients, in client order, and the task that writes each one.

A config's manifest is cut, split by split, into row ranges of whole clients (about ``file_rows`` rows each,
:func:`inat_hf.manifest.layout.plan_shards`); range ``i`` of ``n`` becomes
``data/{config}/{split}-{i:05d}-of-{n:05d}.parquet``. A :class:`FileTask` carries everything a worker needs
to write that file, and nothing secret or large: where its rows are (a batch of the copy of the manifest that
the driver writes once next to the output, with each row's ``client`` pseudonym computed once from the whole
manifest, :mod:`~inat_hf.prepare.rows`; the graph never carries rows), the URLs (refused if they carry a
credential) and the settings. Storage options travel apart, by reference (:mod:`inat_hf.prepare.driver`).

The prepare key (:func:`prepare_key`) hashes the manifest fingerprint with the settings that change a file's
bytes; each file records it with its row range in the Parquet key-value metadata, so that a rerun can tell a
complete file that matches from one to write again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from inat_hf import storage
from inat_hf.config import INatFLConfig
from inat_hf.export.files import file_name
from inat_hf.manifest import Manifest, layout, plan_shards
from inat_hf.schema import SPLITS

PREPARE_VERSION = 3
"""Bumped when the bytes of a prepared file change for the same inputs (2: written in batches, the record in
the file's key-value metadata only; 3: a ``user`` client's pseudonym taken over all its rows, not per split)."""
FILE_ROWS_WITH_IMAGES = 2_000
"""Default rows per file with image bytes: about 160 MB at iNat's 80 KB per image (1,344 train files)."""
FILE_ROWS_WITHOUT_IMAGES = 250_000
"""Default rows per file without image bytes (as ``inat-fl export``)."""
ROWS_PREFIX = ".inat-fl-prepare-"
"""Name prefix of the copies of the manifests the tasks read their rows from, at the output's root (hidden, not
under ``data/``: ``datasets`` never loads them, ``inat-fl push`` never uploads them; :mod:`inat_hf.prepare.rows`)."""
BATCH_ROWS = layout.IMAGE_ROW_GROUP_ROWS
"""Default rows per batch with images: the image bytes a task holds at once, one row group each (256)."""


@dataclass(frozen=True)
class Settings:
    """What every file of one run shares (no secret: URLs are checked by :func:`public_url`).

    Attributes
    ----------
    out_url : str
        The output folder (absolute for local paths).
    images_url : str or None
        The folder the manifest's ``file_name`` values are relative to; ``None`` without images.
    include_user : bool
        Keep the raw ``user`` column.
    batch_rows : int
        With images, the most rows whose image bytes a task holds at once: one Parquet row group each
        (:mod:`inat_hf.prepare.stream`; a client larger than this spans several row groups of its file).
    redo_skipped : bool
        Write again the complete, matching files that skipped rows (after the images were fixed), instead of
        reusing them. Not part of the prepare key: the same inputs give the same bytes either way.
    """

    out_url: str
    images_url: str | None
    include_user: bool = False
    batch_rows: int = BATCH_ROWS
    redo_skipped: bool = False


@dataclass(frozen=True)
class FileTask:
    """One output file: which rows, where, and how (see the module docstring).

    Attributes
    ----------
    config : INatFLConfig
        The config (``on_bad_image``, ``max_image_side``, ``with_images`` are read from it).
    split : str
    relative : str
        ``data/{config}/{split}-{i:05d}-of-{n:05d}.parquet``, relative to the output folder.
    start, stop : int
        The row range in the manifest.
    key : str
        :func:`prepare_key` of the run.
    fingerprint : str
        The manifest fingerprint.
    settings : Settings
    rows_file : str
        The copy of the manifest holding this file's rows, their ``client`` pseudonyms and the label vocabulary,
        relative to the output (:func:`copy_path`).
    rows_index : int
        The record batch of ``rows_file`` that holds rows ``[start, stop)``: the file's index in its config's plan.
    """

    config: INatFLConfig
    split: str
    relative: str
    start: int
    stop: int
    key: str
    fingerprint: str
    settings: Settings
    rows_file: str
    rows_index: int

    @property
    def rows_in(self) -> int:
        """Rows of the manifest this file stands for."""
        return self.stop - self.start


def copy_path(config_name: str, fingerprint: str) -> str:
    """Where the copy of a config's manifest goes, relative to the output:
    ``.inat-fl-prepare-{config}-{fingerprint}.arrow``.
    """
    return f"{ROWS_PREFIX}{config_name}-{fingerprint}.arrow"


def public_url(url: str, what: str) -> str:
    """``url`` made absolute when it is a local path; raise ValueError if it carries a credential."""
    if storage.redact(url) != url:
        raise ValueError(
            f"{what} holds a credential (a SAS signature or account key); pass credentials in storage options or "
            "the workers' environment (AZURE_STORAGE_*), never in the URL: URLs travel in the task graph"
        )
    if "://" in url:
        return url
    return storage.resolve(url).root


def prepare_key(fingerprint: str, config: INatFLConfig, settings: Settings, file_rows: int) -> str:
    """Hash of what decides a prepared file's bytes: the manifest fingerprint (metadata, config with its
    ``on_bad_image``, ``max_image_side`` and ``with_images``), ``include_user``, ``file_rows``, ``batch_rows``
    (with images) and :data:`PREPARE_VERSION`.
    """
    payload = {
        "fingerprint": fingerprint,
        "config": config.fingerprint_fields(),
        "include_user": settings.include_user,
        "with_images": settings.images_url is not None,
        "file_rows": file_rows,
        "batch_rows": settings.batch_rows if settings.images_url is not None else None,
        "version": PREPARE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def plan_files(manifest: Manifest, config: INatFLConfig, settings: Settings, *, file_rows: int) -> Iterator[FileTask]:
    """The files of one config, split by split in manifest order; task ``i`` reads its rows from batch ``i``
    of :func:`copy_path` (written by :func:`inat_hf.prepare.rows.ensure_copy`).

    Parameters
    ----------
    manifest : Manifest
    config : INatFLConfig
    settings : Settings
    file_rows : int
        Rows per file to aim at (a client is never cut; ``validation`` may be cut anywhere).
    """
    if file_rows < 1:
        raise ValueError(f"file_rows={file_rows!r} is invalid; allowed: an integer >= 1")
    if settings.batch_rows < 1:
        raise ValueError(f"batch_rows={settings.batch_rows!r} is invalid; allowed: an integer >= 1")
    key = prepare_key(manifest.fingerprint, config, settings, file_rows)
    rows_file = copy_path(config.name, manifest.fingerprint)
    index = 0
    for split in SPLITS:
        ranges = plan_shards(manifest, split, target_rows=file_rows, min_shards=1, max_shards=99_999)
        for i, (start, stop) in enumerate(ranges):
            relative = file_name(config.name, split, i, len(ranges))
            yield FileTask(config, split, relative, start, stop, key, manifest.fingerprint, settings, rows_file, index)
            index += 1
