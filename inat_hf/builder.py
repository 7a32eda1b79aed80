"""The HuggingFace ``datasets`` builder: iNat 2021 as clients, labelled at any rank.

Use it directly (``datasets`` 4 and later no longer run loading scripts)::

    from inaturalist_fl import INaturalistFL   # the repository's root module; a subclass of INatFLBuilder

    builder = INaturalistFL(config_name="family_user", data_dir="az://inaturalist/2021",
                            storage_options={...}, cache_dir="...", min_client_size=32)
    builder.download_and_prepare(num_proc=4)
    train = builder.as_dataset("train")               # rows grouped by client
    stream = builder.as_streaming_dataset("train")    # shards are whole clients

``data_dir`` is any fsspec URL of the official layout (``train.json``, ``val.json`` and the image folders)
or of the processed CSV plus images, or of one metadata file; ``storage_options`` (credentials) go to fsspec
and never into a config, a cache path or a message. ``images_dir`` (builder argument, any fsspec URL) is
where the images are when they live apart from the metadata, with its own ``image_storage_options``
(default: ``storage_options``); like ``storage_options`` it is not a config field and changes no
manifest, fingerprint or cache path. The four make the builder's :class:`inat_hf.source.Source`
(``builder.source``); ``source=Source(...)`` gives one directly. Splits: ``train`` (grouped by client),
``test`` (the per-client holdout, when ``test_fraction`` or ``holdout_client_fraction`` is set),
``validation`` (the official val set, central, ``client_id = -1``). ``gen_kwargs`` carry lists of shards,
each a run of whole clients, so ``num_proc`` workers and streaming shards never split a client. Example keys
are ``"{client_id}/{image_id}"``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import datasets
from fsspec.implementations.local import LocalFileSystem

from inat_hf import about, storage
from inat_hf.config import DEFAULT_CONFIG_NAME, INatFLConfig, config_for, presets, validate
from inat_hf.manifest import Manifest, ManifestKey, load_or_build, locate, plan_shards, read_rows
from inat_hf.manifest.examples import iter_examples
from inat_hf.schema import SPLITS, features_for
from inat_hf.source import Source

logger = logging.getLogger("inat_hf.builder")

SKIPPED_DIR = "skipped"
VERSION = datasets.Version("1.0.0")

_NO_DATA_DIR = (
    "INaturalistFL needs data_dir: the URL of your copy of iNat 2021 (official layout or the processed CSV plus "
    "images), e.g. data_dir='az://inaturalist/2021', or a replica written by `inat-fl sample DIR`"
)
_BASE_FIELDS = frozenset(f.name for f in dataclasses.fields(datasets.BuilderConfig))
_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(INatFLConfig)) - _BASE_FIELDS


class INatFLBuilder(datasets.GeneratorBasedBuilder):
    """iNaturalist 2021 split into federated clients (see the module docstring).

    ``datasets`` names a builder after the module that defines it, so users take the subclass
    ``inaturalist_fl.INaturalistFL`` (builder name ``inaturalist_fl``).
    """

    BUILDER_CONFIG_CLASS = INatFLConfig
    BUILDER_CONFIGS: ClassVar[list[datasets.BuilderConfig]] = [
        dataclasses.replace(preset, version=VERSION)  # type: ignore[call-arg]  # a field of BuilderConfig
        for preset in presets()
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
            features=(
                features_for(self.label_names, with_images=self.config.with_images) if self.config.data_dir else None
            ),
            homepage=about.HOMEPAGE,
            license=about.TERMS,
            citation=about.CITATION,
        )

    @property
    def data_url(self) -> str:
        """The data folder URL (``data_dir``)."""
        if not self.config.data_dir:
            raise ValueError(_NO_DATA_DIR)
        return str(self.config.data_dir)

    def __init__(
        self,
        *args: Any,
        cache_dir: str | None = None,
        source: Source | None = None,
        images_dir: str | None = None,
        image_storage_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """``source`` (a :class:`~inat_hf.source.Source`) stands for ``data_dir``, ``storage_options``,
        ``images_dir`` and ``image_storage_options``, which may then not be given too; the other arguments
        are ``datasets``' (``config_name``, ``cache_dir``, ...) and config fields by keyword.
        """
        self._manifest_cache_dir = cache_dir  # the one manifest cache: inat_hf.manifest.cache_root(cache_dir)
        self._source: Source | None = None
        self._manifest_key: ManifestKey | None = None
        if source is not None:
            given = {**kwargs, "images_dir": images_dir, "image_storage_options": image_storage_options}
            both = [name for name in Source.__dataclass_fields__ if given.get(name) is not None]
            if both:
                raise ValueError(f"give source=Source(...) or {both}, not both: the Source holds them")
            kwargs.update(data_dir=source.data_dir, storage_options=dict(source.storage_options or {}))
            images_dir, image_storage_options = source.images_dir, source.image_storage_options
        self._given_source = source  # kept (with what it has resolved) if the config's data_dir is its own
        # The data's options as given: datasets adds its own ("hf") to the dict it keeps as self.storage_options.
        self._data_options = dict(kwargs.get("storage_options") or {})
        self._images_dir = None if images_dir is None else os.fspath(images_dir)
        self._image_storage_options = image_storage_options
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
        if config.data_dir:  # resolved once, here; the manifest's key (and fingerprint) computed once, here
            where = Source(str(config.data_dir), self._data_options, self._images_dir, self._image_storage_options)
            self._source = where = self._given_source if where == self._given_source else where
            self._manifest_key = locate(where.metadata, config, self._manifest_cache_dir)
            digest = hashlib.sha256(f"{config_id}|{self._manifest_key.fingerprint}".encode()).hexdigest()[:16]
            config_id = f"{config.name}-{digest}"
        return config, config_id

    def __getstate__(self) -> dict[str, Any]:
        """The builder without its cached manifest (workers and streaming shards read it from disk)."""
        state = dict(self.__dict__)
        state.pop("manifest", None)
        return state

    @property
    def source(self) -> Source:
        """Where the data is: the metadata (``source.metadata``, resolved once, with the config) and the
        images (``source.images``, resolved on first use), each with its storage options.
        """
        if self._source is None:
            raise ValueError(_NO_DATA_DIR)
        return self._source

    @property
    def image_source(self) -> storage.Location:
        """The images folder, ``builder.source.images`` (:attr:`inat_hf.source.Source.images_url`)."""
        return self.source.images

    @property
    def manifest_key(self) -> ManifestKey:
        """Where this config's manifest is cached (:func:`inat_hf.manifest.locate`, computed once)."""
        if self._manifest_key is None:
            raise ValueError(_NO_DATA_DIR)
        return self._manifest_key

    @functools.cached_property
    def label_names(self) -> tuple[str, ...]:
        """The ClassLabel names: from the cached manifest's ``info.json`` when there is one (a prepared
        dataset opens without reading its 2.7M-row manifest), else from the manifest.
        """
        if self.manifest_key.is_built():
            return self.manifest_key.label_names()
        return self.manifest.label_names

    @functools.cached_property
    def manifest(self) -> Manifest:
        """The config's manifest (built once, then read from the cache)."""
        return load_or_build(self.manifest_key, self.source.metadata)

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        manifest_file = str(self.manifest_key.parquet_file)
        names = {"train": datasets.Split.TRAIN, "test": datasets.Split.TEST, "validation": datasets.Split.VALIDATION}
        generators = []
        for split in SPLITS:
            shards = plan_shards(self.manifest, split)
            if shards:
                generators.append(
                    datasets.SplitGenerator(
                        name=names[split],
                        gen_kwargs={"shards": shards, "split": split, "manifest_file": manifest_file},
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

    def _generate_examples(self, shards: list[tuple[int, int]], split: str, manifest_file: str) -> Iterator:
        """Yield ``(key, example)`` for the manifest rows of ``shards``, in order, as one fetch pipeline."""
        if not shards:
            return
        rows = read_rows(Path(manifest_file), shards)
        loc = self.image_source if self.config.with_images else None
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


def skipped_rows(cache_dir: str | os.PathLike, split: str | None = None) -> list[dict[str, Any]]:
    """The rows that ``on_bad_image="skip"`` left out of a prepared dataset (``builder.cache_dir``).

    Each entry has ``image_id``, ``file_name``, ``reason`` and ``split``.
    """
    folder = Path(cache_dir) / SKIPPED_DIR
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        name = path.stem.rsplit("-", 1)[0]
        if split is None or name == split:
            rows.extend({**row, "split": name} for row in json.loads(path.read_text()))
    return rows
