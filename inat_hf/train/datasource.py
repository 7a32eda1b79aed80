"""Where a training run's data comes from: a prepared builder config or an export, with its images.

A :class:`DataSource` is a small frozen (picklable, hashable) description, so that the same data can be
opened in the driver and again in every Flower worker process (``scripts/finetune_vit.py`` and the Flower
App share it; a Flower node reads only its client of it, :mod:`inat_hf.train.flower.nodedata`)::

    source = DataSource(config="family_user", data_dir="out/small")
    source.prepare()                       # the builder's download_and_prepare, once, in the driver
    train, validation = source.split("train"), source.split("validation")

- ``data_dir``: the builder (:class:`inaturalist_fl.INaturalistFL`) over the data folder, ``overrides``
  as config fields; ``images`` is the builder's ``images_dir`` when the images lie apart from the metadata.
- ``export``: ``datasets.load_dataset(export, config)`` over an export folder (``inat-fl export``); its
  images come from ``images`` (:func:`inat_hf.hub.export.attach_images`, as bytes, so that the input
  pipeline decodes them in draft mode) or from the export itself when it was written with images.

Storage options are the non-secret ``--option`` pairs; credentials come from the environment, which
worker processes inherit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import datasets

SPLITS = ("train", "validation")


@dataclass(frozen=True)
class DataSource:
    """A builder config over ``data_dir``, or an ``export`` folder; see the module docstring.

    Raises
    ------
    ValueError
        If neither or both of ``data_dir`` and ``export`` are given, or ``overrides`` are given with
        ``export`` (an export holds the configs it was made with).
    """

    config: str = "family_user"
    data_dir: str | None = None
    export: str | None = None
    images: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()
    storage_options: tuple[tuple[str, Any], ...] = ()
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if (self.data_dir is None) == (self.export is None):
            raise ValueError("give exactly one of data_dir (a data folder for the builder) and export (a folder)")
        if self.export is not None and self.overrides:
            raise ValueError(
                "config overrides (--set) do not apply to an export: it holds the configs it was made with; "
                "export again with the fields you want, or use data_dir"
            )

    @classmethod
    def of(
        cls,
        *,
        overrides: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> DataSource:
        """A source with ``overrides`` and ``storage_options`` given as mappings."""
        return cls(
            overrides=tuple(sorted((overrides or {}).items())),
            storage_options=tuple(sorted((storage_options or {}).items())),
            **fields,
        )

    @property
    def options(self) -> dict[str, Any] | None:
        """The storage options as a dict (None when there are none)."""
        return dict(self.storage_options) or None

    def builder(self) -> Any:
        """The ``datasets`` builder of ``data_dir`` (not prepared)."""
        from inaturalist_fl import INaturalistFL

        return INaturalistFL(
            config_name=self.config,
            data_dir=self.data_dir,
            cache_dir=self.cache_dir,
            storage_options=self.options,
            images_dir=self.images,  # None: the images lie beside the metadata
            **dict(self.overrides),
        )

    def prepare(self, num_proc: int | None = None) -> None:
        """Prepare the builder config (``download_and_prepare``), or load the export once into the cache."""
        if self.data_dir is not None:
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
        if self.data_dir is not None:
            dataset = self.builder().as_dataset(name)
        else:
            dataset = datasets.load_dataset(self.export, self.config, split=name, cache_dir=self.cache_dir)
            if self.images is not None:
                from inat_hf.hub.export import attach_images

                dataset = attach_images(dataset, self.images, self.options, decode=False)
            elif "image" not in dataset.column_names:
                raise ValueError(
                    f"the export {self.export} has no images (a manifest-only export): pass images=URL of your copy "
                    "of the images (--images-dir in scripts/finetune_vit.py and flower_sim.py), or export with images"
                )
        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(f"split {name!r} gave a {type(dataset).__name__}, not one datasets.Dataset")
        return dataset
