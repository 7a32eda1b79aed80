"""THE column contract: the images table, the manifest, the example features and the error policies.

Every other list of columns in the package derives from these:

* :data:`IMAGE_COLUMNS`: the images table of :func:`inat_hf.metadata.load_metadata`, one row per image;
* :data:`MANIFEST_COLUMNS`: the manifest (:mod:`inat_hf.manifest`), one row per example, no image bytes;
* :data:`EXAMPLE_COLUMNS` and :func:`features_for`: what the builder yields (the manifest columns an example
  carries, plus ``image``), which the export and the streaming paths share;
* :data:`Policy`: what bad input does, ``"error"`` (stop, naming the file, record and field) or ``"skip"``
  (leave the row out and count it with its reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from inat_hf.taxonomy import RANKS

if TYPE_CHECKING:
    import datasets

Policy = Literal["error", "skip"]
"""What a bad record or image does: ``"error"`` raises, ``"skip"`` drops the row and counts it."""
POLICIES: tuple[Policy, ...] = get_args(Policy)

SPLITS = ("train", "test", "validation")
TRAIN_SPLITS = ("train", "train_mini")
"""The official files a config's train pool can come from (``INatFLConfig.train_split``)."""
"""The splits of a manifest and of a prepared config, in row order."""

IMAGE_COLUMNS: tuple[str, ...] = (
    "image_id",
    "split",
    "file_name",
    "user",
    "width",
    "height",
    "license",
    "date",
    "latitude",
    "longitude",
    "location_uncertainty",
    "species_id",
    *RANKS,
)
"""Columns of the images table, in order. ``user`` is the ``rights_holder``; ``species_id`` is the
official category id; the rank columns are dictionary-encoded with the rank's whole label vocabulary
(:mod:`inat_hf.taxonomy`) as dictionary; ``location_uncertainty`` is raw (it holds nonsense in the
real data, e.g. -80)."""

_VALUE_TYPES: dict[str, str] = {
    "image_id": "int64",
    "client_id": "int64",
    **{rank: "string" for rank in RANKS},
    "species_id": "int64",
    "user": "string",
    "latitude": "float64",
    "longitude": "float64",
    "date": "timestamp[s, tz=UTC]",
    "width": "int32",
    "height": "int32",
    "file_name": "string",
}

EXAMPLE_COLUMNS: tuple[str, ...] = ("image_id", "client_id", "label", *tuple(_VALUE_TYPES)[2:])
"""Manifest columns copied into every example, in feature order (the features, less ``image``)."""

MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_id",
    "file_name",
    "client_id",
    "split",
    "label",
    *RANKS,
    "species_id",
    "user",
    "latitude",
    "longitude",
    "date",
    "width",
    "height",
    "license",
)
"""Columns of the manifest, in order: the examples' columns, the ``split`` and the image's ``license``."""


def check_policy(field: str, value: object) -> Policy:
    """Return ``value`` as a :data:`Policy`, or raise ``ValueError`` naming ``field`` and the choices."""
    for policy in POLICIES:
        if value == policy:
            return policy
    raise ValueError(f"{field}={value!r}; choose from {', '.join(POLICIES)}")


def features_for(label_names: tuple[str, ...] | list[str], *, with_images: bool = True) -> datasets.Features:
    """The example features: ``image`` (when ``with_images``), then :data:`EXAMPLE_COLUMNS`.

    Parameters
    ----------
    label_names : sequence of str
        The names of the ``label`` ClassLabel (the rank's vocabulary, in label order).
    with_images : bool
        Whether examples carry the ``image`` feature.
    """
    import datasets

    features: dict[str, object] = {"image": datasets.Image()} if with_images else {}
    for name in EXAMPLE_COLUMNS:
        if name == "label":
            features[name] = datasets.ClassLabel(names=list(label_names))
        else:
            features[name] = datasets.Value(_VALUE_TYPES[name])
    return datasets.Features(features)
