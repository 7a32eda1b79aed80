"""The data of a training run: a prepared builder config or an export, with its images.

A :class:`TrainingData` is a small frozen (picklable, hashable) description, so that the same data can be
opened in the driver and again in every Flower worker process (``scripts/finetune_vit.py`` and the Flower
App share it; a Flower node reads only its client of it, :mod:`inat_hf.train.flower.nodedata`)::

    data = TrainingData.of(config="family_user", data_dir="out/small")
    data.prepare()                       # the builder's download_and_prepare, once, in the driver
    train, validation = data.split("train"), data.split("validation")

- ``source``: the builder (:class:`inaturalist_fl.INaturalistFL`) over a :class:`~inat_hf.source.Source`
  (where the metadata and the images are, with their storage options; :meth:`TrainingData.of` makes it from
  ``data_dir``, ``images`` and ``storage_options``), ``overrides`` as config fields.
- ``export``: ``datasets.load_dataset(export, config)`` over an export folder (``inat-fl export``); its
  images come from ``images`` (:func:`inat_hf.export.attach_images`, as bytes, so that the input
  pipeline decodes them in draft mode) or from the export itself when it was written with images.

Storage options are the non-secret ``--option`` pairs; credentials come from the environment, which
worker processes inherit. ``DataSource`` is this class's former name, kept as an alias.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import datasets

from inat_hf.source import Source

SPLITS = ("train", "validation")


@dataclass(frozen=True)
class TrainingData:
    """A builder config over a ``source``, or an ``export`` folder; see the module docstring.

    Raises
    ------
    ValueError
        If neither or both of ``source`` and ``export`` are given, ``images`` or ``storage_options`` beside a
        ``source`` (it holds its own), or ``overrides`` with ``export`` (an export holds the configs it was
        made with).
    """

    config: str = "family_user"
    source: Source | None = None
    export: str | None = None
    images: str | None = None
    """The images of a manifest-only ``export`` (a ``source`` holds its own)."""
    overrides: tuple[tuple[str, Any], ...] = ()
    storage_options: tuple[tuple[str, Any], ...] = ()
    """The storage options of ``images`` (a ``source`` holds its own)."""
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if (self.source is None) == (self.export is None):
            raise ValueError("give exactly one of data_dir (a data folder for the builder) and export (a folder)")
        if self.source is not None and (self.images is not None or self.storage_options):
            raise ValueError("the images and storage options of a builder's data are its Source's: give them there")
        if self.export is not None and self.overrides:
            raise ValueError(
                "config overrides (--set) do not apply to an export: it holds the configs it was made with; "
                "export again with the fields you want, or use data_dir"
            )

    @classmethod
    def of(
        cls,
        *,
        data_dir: str | None = None,
        images: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> TrainingData:
        """The data with ``overrides`` and ``storage_options`` given as mappings; ``data_dir`` (with
        ``images``, where the images are when apart from the metadata, and ``storage_options``) makes the
        builder's :class:`~inat_hf.source.Source`.
        """
        if data_dir is not None:
            source = Source(data_dir, storage_options, images_dir=images)
            return cls(source=source, overrides=tuple(sorted((overrides or {}).items())), **fields)
        return cls(
            images=images,
            overrides=tuple(sorted((overrides or {}).items())),
            storage_options=tuple(sorted((storage_options or {}).items())),
            **fields,
        )

    @property
    def data_dir(self) -> str | None:
        """The builder's data folder (``source.data_dir``); None for an export."""
        return None if self.source is None else self.source.data_dir

    @property
    def options(self) -> dict[str, Any] | None:
        """The storage options of an export's ``images`` as a dict (None when there are none)."""
        return dict(self.storage_options) or None

    def builder(self) -> Any:
        """The ``datasets`` builder of ``source`` (not prepared)."""
        from inaturalist_fl import INaturalistFL

        if self.source is None:
            raise ValueError(f"an export ({self.export}) has no builder: it is loaded with datasets.load_dataset")
        return INaturalistFL(
            config_name=self.config, source=self.source, cache_dir=self.cache_dir, **dict(self.overrides)
        )

    def prepare(self, num_proc: int | None = None) -> None:
        """Prepare the builder config (``download_and_prepare``), or load the export once into the cache."""
        if self.source is not None:
            self.builder().download_and_prepare(num_proc=num_proc)
        else:
            for name in SPLITS:
                self.split(name)

    def split(self, name: str) -> datasets.Dataset:
        """One split with its ``image`` column (lazy for an export with ``images``); rows grouped by client.

        Raises
        ------
        ValueError
            If an export has no images and no ``images`` folder was given.
        """
        if self.source is not None:
            dataset = self.builder().as_dataset(name)
        else:
            dataset = datasets.load_dataset(self.export, self.config, split=name, cache_dir=self.cache_dir)
            if self.images is not None:
                from inat_hf.export import attach_images

                dataset = attach_images(dataset, self.images, self.options, decode=False)
            elif "image" not in dataset.column_names:
                raise ValueError(
                    f"the export {self.export} has no images (a manifest-only export): pass images=URL of your copy "
                    "of the images (--images-dir in scripts/finetune_vit.py and flower_sim.py), or export with images"
                )
        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(f"split {name!r} gave a {type(dataset).__name__}, not one datasets.Dataset")
        return dataset


DataSource = TrainingData
"""The former name of :class:`TrainingData` (``inat_hf.train.datasource.DataSource``)."""
