"""The ONE manifest cache, for every caller: the builder, ``ClientStream``, ``inat-fl stats``, export and card.

Root (:func:`cache_root`): ``{cache_dir}/inaturalist_fl`` where a caller passes a ``cache_dir`` (the builder's
``cache_dir``, ``--cache-dir`` on the command line), else ``$INAT_FL_CACHE``, else
``{HF_DATASETS_CACHE}/inaturalist_fl``; so a manifest built by ``inat-fl stats`` is the one the builder reads.
A manifest lives in ``{root}/manifests/{config name}-{fingerprint}/`` (``manifest.parquet``,
``clients.parquet``, ``dropped.parquet``, ``info.json``), written to a staging folder and renamed into place,
so a folder that exists is complete.

The fingerprint (:func:`manifest_fingerprint`) is a SHA-256 of JSON holding, for each metadata file, its base
name, its size and its version token (ETag on object stores, modification time on local disk, and the SHA-256
of its content where storage gives neither, never the size alone: :func:`inat_hf.storage.file_token`), the
config's fields (:meth:`INatFLConfig.manifest_fields`: all that change the partition, not how images are
fetched) and :data:`MANIFEST_VERSION`. It never holds a URL, a path or a credential, so the same data read
through another URL or with other credentials has the same fingerprint; a copy with new modification times
gets a new one (and the same manifest). :func:`locate` computes it once; the :class:`ManifestKey` carries it from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from inat_hf import storage
from inat_hf.config import INatFLConfig
from inat_hf.manifest import layout
from inat_hf.manifest.build import Manifest, build_manifest
from inat_hf.metadata import load_metadata
from inat_hf.metadata.load import metadata_tokens

MANIFEST_VERSION = 1
CACHE_ENV = "INAT_FL_CACHE"
CACHE_NAME = "inaturalist_fl"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The manifest cache root: ``{cache_dir}/inaturalist_fl``; without ``cache_dir`` (or with a remote one:
    manifests stay on local disk) ``$INAT_FL_CACHE``, else ``{HF_DATASETS_CACHE}/inaturalist_fl``.
    """
    if cache_dir is not None and "://" not in os.fspath(cache_dir):
        return Path(os.path.expanduser(os.fspath(cache_dir))) / CACHE_NAME
    if os.environ.get(CACHE_ENV):
        return Path(os.path.expanduser(os.environ[CACHE_ENV]))
    import datasets.config

    return Path(os.path.expanduser(str(datasets.config.HF_DATASETS_CACHE))) / CACHE_NAME


def manifest_fingerprint(source: storage.Location, config: INatFLConfig) -> str:
    """Fingerprint of (metadata files, config, seed); no URL or credential goes into it (module docstring)."""
    tokens = [list(pair) for pair in metadata_tokens(source, train_split=config.train_split)]
    payload = {"version": MANIFEST_VERSION, "files": tokens, "config": config.manifest_fields()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ManifestKey:
    """Where one config's manifest over one copy of the metadata is cached (computed once, then carried).

    Attributes
    ----------
    config : INatFLConfig
    fingerprint : str
        :func:`manifest_fingerprint` of the metadata and the config.
    folder : Path
        ``{cache_root}/manifests/{config name}-{fingerprint}``.
    """

    config: INatFLConfig
    fingerprint: str
    folder: Path

    @property
    def parquet_file(self) -> Path:
        """The manifest's rows (client-aligned row groups)."""
        return self.folder / "manifest.parquet"

    def is_built(self) -> bool:
        """Whether the manifest is in the cache (a folder there is always complete)."""
        return (self.folder / "info.json").is_file()

    def label_names(self) -> tuple[str, ...]:
        """The label vocabulary from ``info.json``, without reading the manifest's rows."""
        return tuple(json.loads((self.folder / "info.json").read_text(encoding="utf-8"))["label_names"])


def locate(
    source: storage.Location, config: INatFLConfig, cache_dir: str | os.PathLike[str] | None = None
) -> ManifestKey:
    """The :class:`ManifestKey` of ``config`` over the metadata at ``source`` (one listing of the folder)."""
    fingerprint = manifest_fingerprint(source, config)
    return ManifestKey(config, fingerprint, cache_root(cache_dir) / "manifests" / f"{config.name}-{fingerprint}")


def load_config_metadata(source: storage.Location, config: INatFLConfig) -> pa.Table:
    """The metadata a config's manifest is built from: its ``train_split`` (and ``val``), read with its
    ``on_invalid`` policy. Callers that load once for several configs pass the result to :func:`load_or_build`.
    """
    return load_metadata(source, on_invalid=config.on_invalid, train_split=config.train_split)


def load_or_build(key: ManifestKey, source: storage.Location, images: pa.Table | None = None) -> Manifest:
    """The manifest of ``key``: read from the cache, or built (from ``images`` when the caller has already
    loaded the metadata, else from ``source``) and cached.
    """
    if not key.is_built():
        if images is None:
            images = load_config_metadata(source, key.config)
        manifest = build_manifest(images, key.config, key.fingerprint)
        key.folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key.folder.name}-", dir=key.folder.parent))
        write_manifest(manifest, staging)
        try:
            os.replace(staging, key.folder)
        except OSError:  # another process cached it first: theirs is identical
            shutil.rmtree(staging, ignore_errors=True)
    return read_manifest(key.folder)


def load_or_build_manifest(
    source: str | storage.Location,
    config: INatFLConfig,
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    images: pa.Table | None = None,
) -> Manifest:
    """The manifest of ``config`` over the metadata at ``source`` (a URL, resolved here, or a Location), from
    the cache or built and cached; ``images``: the metadata if the caller has already loaded it.
    """
    loc = source if isinstance(source, storage.Location) else storage.resolve(source, storage_options)
    return load_or_build(locate(loc, config, cache_dir), loc, images)


def write_manifest(manifest: Manifest, folder: Path) -> None:
    """Write a manifest as Parquet (client-aligned row groups, statistics on) plus ``info.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    layout.write_client_aligned(manifest.table, folder / "manifest.parquet", layout.MANIFEST_ROW_GROUP_ROWS)
    pq.write_table(manifest.clients, folder / "clients.parquet")
    pq.write_table(manifest.dropped, folder / "dropped.parquet")
    info = {"fingerprint": manifest.fingerprint, "label_names": list(manifest.label_names), "version": MANIFEST_VERSION}
    (folder / "info.json").write_text(json.dumps(info, sort_keys=True, ensure_ascii=False))


def read_manifest(folder: Path) -> Manifest:
    """Read a manifest written by :func:`write_manifest` (memory-mapped)."""
    info = json.loads((folder / "info.json").read_text())
    return Manifest(
        table=pq.read_table(folder / "manifest.parquet", memory_map=True),
        clients=pq.read_table(folder / "clients.parquet", memory_map=True),
        dropped=pq.read_table(folder / "dropped.parquet", memory_map=True),
        label_names=tuple(info["label_names"]),
        fingerprint=info["fingerprint"],
    )
