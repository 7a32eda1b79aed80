"""The HuggingFace ``datasets`` builder: iNat 2021 as clients, labelled at any rank.

Use it directly (``datasets`` 4 and later no longer run loading scripts)::

    from inaturalist_fl import INaturalistFL   # the repository's root module; a subclass of INatFLBuilder

    builder = INaturalistFL(config_name="family_user", data_dir="az://inaturalist/2021",
                            storage_options={...}, cache_dir="...", min_client_size=32)
    builder.download_and_prepare(num_proc=4)
    train = builder.as_dataset("train")               # rows grouped by client
    stream = builder.as_streaming_dataset("train")    # shards are whole clients

``data_dir`` is any fsspec URL of the official layout (``train.json``, ``val.json`` and the image folders)
or of the processed CSV plus images; ``storage_options`` (credentials) go to fsspec and never into a
config, a cache path or a message. Splits: ``train`` (grouped by client), ``test`` (the per-client
holdout, when ``test_fraction`` or ``holdout_client_fraction`` is set), ``validation`` (the official val
set, central, ``client_id = -1``). ``gen_kwargs`` carry lists of shards, each a run of whole clients, so
``num_proc`` workers and streaming shards never split a client. Example keys are ``"{client_id}/{image_id}"``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from inat_hf import storage
from inat_hf.config import DEFAULT_CONFIG_NAME, INatFLConfig, config_for, presets, validate
from inat_hf.examples import iter_examples
from inat_hf.manifest import (
    SPLITS,
    Manifest,
    load_or_build_manifest,
    manifest_fingerprint,
    manifest_folder,
)
from inat_hf.taxonomy import RANKS

logger = logging.getLogger("inat_hf.builder")

SHARD_ROWS = 10_000
"""About this many rows per shard; at least :data:`MIN_SHARDS` shards (fewer only with fewer clients)."""
MIN_SHARDS = 16
MAX_SHARDS = 512
SKIPPED_DIR = "skipped"
VERSION = datasets.Version("1.0.0")

_BASE_FIELDS = frozenset(f.name for f in dataclasses.fields(datasets.BuilderConfig))
_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(INatFLConfig)) - _BASE_FIELDS

_CITATION = """\
@inproceedings{van2021benchmarking,
  title={Benchmarking Representation Learning for Natural World Image Collections},
  author={Van Horn, Grant and Cole, Elijah and Beery, Sara and Wilber, Kimberly and Belongie, Serge and
          Mac Aodha, Oisin},
  booktitle={CVPR}, year={2021}
}
@inproceedings{hsu2020federated,
  title={Federated Visual Classification with Real-World Data Distribution},
  author={Hsu, Tzu-Ming Harry and Qi, Hang and Brown, Matthew},
  booktitle={ECCV}, year={2020}
}"""


def plan_shards(manifest: Manifest, split: str) -> list[tuple[int, int]]:
    """Row ranges of ``split`` in the manifest, each a run of whole clients (any cut for ``validation``)."""
    offset, length = manifest.split_range(split)
    if length == 0:
        return []
    if split == "validation":
        starts = np.arange(offset, offset + length)
    else:
        index = manifest.clients
        starts = np.sort(index[f"{split}_offset"].to_numpy()[index[f"{split}_length"].to_numpy() > 0])
    target = min(len(starts), max(MIN_SHARDS, min(MAX_SHARDS, math.ceil(length / SHARD_ROWS))))
    wanted = offset + np.arange(1, target) * length / target
    cuts = np.unique(starts[np.minimum(np.searchsorted(starts, wanted), len(starts) - 1)])
    bounds = [offset, *[int(c) for c in cuts if offset < c < offset + length], offset + length]
    return list(itertools.pairwise(bounds))


def features_for(config: INatFLConfig, label_names: tuple[str, ...]) -> datasets.Features:
    """The example features of a config (no ``image`` when ``with_images`` is False)."""
    features: dict[str, Any] = {}
    if config.with_images:
        features["image"] = datasets.Image()
    features.update(
        {
            "image_id": datasets.Value("int64"),
            "client_id": datasets.Value("int64"),
            "label": datasets.ClassLabel(names=list(label_names)),
            **{rank: datasets.Value("string") for rank in RANKS},
            "species_id": datasets.Value("int64"),
            "user": datasets.Value("string"),
            "latitude": datasets.Value("float64"),
            "longitude": datasets.Value("float64"),
            "date": datasets.Value("timestamp[s, tz=UTC]"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "file_name": datasets.Value("string"),
        }
    )
    return datasets.Features(features)


class INatFLBuilder(datasets.GeneratorBasedBuilder):
    """iNaturalist 2021 split into federated clients (see the module docstring).

    ``datasets`` names a builder after the module that defines it, so users take the subclass
    ``inaturalist_fl.INaturalistFL`` (builder name ``inaturalist_fl``).
    """

    BUILDER_CONFIG_CLASS = INatFLConfig
    BUILDER_CONFIGS: ClassVar[list[datasets.BuilderConfig]] = [
        dataclasses.replace(preset, version=VERSION) for preset in presets()
    ]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG_NAME
    VERSION = VERSION
    config: INatFLConfig

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=(
                f"iNaturalist 2021 labelled by {self.config.rank}, split into clients by the "
                f"{self.config.scheme!r} scheme."
            ),
            features=features_for(self.config, self.label_names) if self.config.data_dir else None,
            homepage="https://github.com/visipedia/inat_comp/tree/master/2021",
            license="Images: their own CC licences (field 'license'); non-commercial research and education only.",
            citation=_CITATION,
        )

    @property
    def data_url(self) -> str:
        """The data folder URL (``data_dir``)."""
        if not self.config.data_dir:
            raise ValueError(
                "INaturalistFL needs data_dir: the URL of your copy of iNat 2021 (official layout or the "
                "processed CSV plus images), e.g. data_dir='az://inaturalist/2021', or a replica written by "
                "`inat-fl sample DIR`"
            )
        return str(self.config.data_dir)

    def __init__(self, *args: Any, cache_dir: str | None = None, **kwargs: Any) -> None:
        root = str(cache_dir or datasets.config.HF_DATASETS_CACHE)
        if "://" in root:  # a remote datasets cache: manifests stay on local disk
            root = str(datasets.config.HF_DATASETS_CACHE)
        self._manifest_root = Path(os.path.expanduser(root)) / "inaturalist_fl"
        super().__init__(*args, cache_dir=cache_dir, **kwargs)

    def _create_builder_config(
        self,
        config_name: str | None = None,
        custom_features: datasets.Features | None = None,
        **config_kwargs: Any,
    ) -> tuple[datasets.BuilderConfig, str]:
        """Check the name and the overrides, then let ``datasets`` make the config and its cache id.

        ``datasets`` sets overrides with ``setattr`` (no validation) and knows only the presets; here an
        unknown name or field, or a value out of range, is a ``ValueError`` naming it, a ``{rank}_{scheme}``
        name that is not a preset (``species_geo300``) works, and the cache id also hashes the manifest
        fingerprint, so that changed metadata at the same ``data_dir`` is prepared again. (``datasets`` 4+
        also passes ``config_id``; 3.x does not.)
        """
        passed = {"config_id": config_kwargs.pop("config_id")} if "config_id" in config_kwargs else {}
        unknown = sorted(set(config_kwargs) - _CONFIG_FIELDS - _BASE_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown config field(s) {unknown}; fields are {', '.join(sorted(_CONFIG_FIELDS))} "
                "(and data_dir); storage_options and cache_dir are builder arguments"
            )
        overrides = {k: v for k, v in config_kwargs.items() if k in _CONFIG_FIELDS and v is not None}
        wanted = config_for(config_name or self.DEFAULT_CONFIG_NAME, **overrides)  # ValueError naming the problem
        if wanted.name in self.builder_configs:
            config_name = wanted.name
        else:  # a valid {rank}_{scheme} that is not a preset: the default preset, renamed and overridden
            config_name = None
            config_kwargs = {
                "description": f"iNat 2021 labelled by {wanted.rank}, clients by the {wanted.scheme!r} scheme",
                **config_kwargs,
                "name": wanted.name,
                "rank": wanted.rank,
                "scheme": wanted.scheme,
            }
        config, config_id = super()._create_builder_config(config_name, custom_features, **passed, **config_kwargs)
        validate(config)
        if config.data_dir:
            fingerprint = manifest_fingerprint(str(config.data_dir), config, self.storage_options or None)
            config_id = f"{config.name}-{hashlib.sha256(f'{config_id}|{fingerprint}'.encode()).hexdigest()[:16]}"
        return config, config_id

    def __getstate__(self) -> dict[str, Any]:
        """The builder without its cached manifest (workers and streaming shards read it from disk)."""
        state = dict(self.__dict__)
        state.pop("manifest", None)
        return state

    def manifest_cache_dir(self) -> Path:
        """Where manifests are cached: ``{cache_dir}/inaturalist_fl`` (local disk)."""
        return self._manifest_root

    @functools.cached_property
    def label_names(self) -> tuple[str, ...]:
        """The ClassLabel names: from the cached manifest's ``info.json`` when there is one (a prepared
        dataset opens without reading its 2.7M-row manifest), else from the manifest."""
        fingerprint = manifest_fingerprint(self.data_url, self.config, self.storage_options or None)
        info = manifest_folder(self.manifest_cache_dir(), self.config, fingerprint) / "info.json"
        if info.is_file():
            return tuple(json.loads(info.read_text(encoding="utf-8"))["label_names"])
        return self.manifest.label_names

    @functools.cached_property
    def manifest(self) -> Manifest:
        """The config's manifest (built once, then read from the cache)."""
        return load_or_build_manifest(
            self.data_url, self.config, self.storage_options or None, self.manifest_cache_dir()
        )

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        folder = manifest_folder(self.manifest_cache_dir(), self.config, self.manifest.fingerprint)
        names = {"train": datasets.Split.TRAIN, "test": datasets.Split.TEST, "validation": datasets.Split.VALIDATION}
        generators = []
        for split in SPLITS:
            shards = plan_shards(self.manifest, split)
            if shards:
                generators.append(
                    datasets.SplitGenerator(
                        name=names[split],
                        gen_kwargs={"shards": shards, "split": split, "manifest_dir": str(folder)},
                    )
                )
        return generators

    def _prepare_split(self, split_generator: datasets.SplitGenerator, **kwargs: Any) -> None:
        # Only a local download_and_prepare lists skipped rows on disk (streaming and remote caches log them).
        local = isinstance(self._fs, LocalFileSystem)
        self._skip_dir = str(Path(self._output_dir) / SKIPPED_DIR) if local else None
        try:
            super()._prepare_split(split_generator, **kwargs)
        finally:
            self._skip_dir = None

    def _skip_log(self, split: str, start: int) -> Path | None:
        folder = getattr(self, "_skip_dir", None)
        return Path(folder) / f"{split}-{start:010d}.json" if folder else None

    def _generate_examples(self, shards: list[tuple[int, int]], split: str, manifest_dir: str) -> Iterator:
        """Yield ``(key, example)`` for the manifest rows of ``shards``, in order, as one fetch pipeline."""
        if not shards:
            return
        rows = read_rows(Path(manifest_dir), shards)
        loc = storage.resolve(self.data_url, self.storage_options or None) if self.config.with_images else None
        skipped: list[dict[str, Any]] = []

        def note(image_id: int, file_name: str, reason: str) -> None:
            skipped.append({"image_id": image_id, "file_name": file_name, "reason": reason})

        yield from iter_examples(
            rows, loc, on_bad_image=self.config.on_bad_image, max_image_side=self.config.max_image_side, on_skip=note
        )
        if skipped:
            first, last = shards[0][0], shards[-1][1]
            logger.warning(
                "%s rows %d-%d: skipped %d bad image(s), first %s", split, first, last, len(skipped), skipped[0]
            )
            path = self._skip_log(split, first)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(skipped))


def read_rows(manifest_dir: Path, shards: list[tuple[int, int]]) -> pa.Table:
    """The manifest rows of ``shards`` (row ranges), in order, reading only the Parquet row groups they touch."""
    parquet = pq.ParquetFile(manifest_dir / "manifest.parquet", memory_map=True)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    bounds = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    first = int(np.searchsorted(bounds, min(start for start, _ in shards), side="right")) - 1
    last = int(np.searchsorted(bounds, max(end for _, end in shards), side="left"))
    table = parquet.read_row_groups(list(range(first, last)))
    offset = int(bounds[first])
    return pa.concat_tables([table.slice(start - offset, end - start) for start, end in shards])


def skipped_rows(cache_dir: str | os.PathLike, split: str | None = None) -> list[dict[str, Any]]:
    """The rows that ``on_bad_image="skip"`` left out of a prepared dataset (``builder.cache_dir``).

    Each entry has ``image_id``, ``file_name``, ``reason`` and ``split``.
    """
    folder = Path(cache_dir) / SKIPPED_DIR
    rows = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        name = path.stem.rsplit("-", 1)[0]
        if split is None or name == split:
            rows.extend({**row, "split": name} for row in json.loads(path.read_text()))
    return rows
