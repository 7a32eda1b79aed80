"""The builder config: one flat dataclass of simple, hashable fields, validated on creation.

Presets are named ``{rank}_{scheme}`` for every rank of :data:`~inat_hf.taxonomy.RANKS` and every
scheme of :data:`PRESET_SCHEMES` (``family_user`` is the default). Any field can be overridden by keyword,
as ``datasets`` does for config kwargs: ``config_for("family_user", min_client_size=32)``. Parameter
names follow Flower where Flower has one (``num_partitions``, ``alpha``, ``min_partition_size``,
``group_size``, ``seed``). Storage options (credentials) are never config fields.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import datasets

from inat_hf.partition import get_partitioner
from inat_hf.schema import POLICIES, TRAIN_SPLITS, Policy
from inat_hf.taxonomy import RANKS

PRESET_SCHEMES: tuple[str, ...] = ("user", "geo1k", "dirichlet", "iid")
"""Schemes that have a preset for every rank."""

DEFAULT_CONFIG_NAME = "family_user"

# Fields that change the examples but not the manifest.
_EXAMPLE_ONLY_FIELDS = frozenset({"on_bad_image", "max_image_side", "with_images"})
# Fields that do not change the examples (so they stay out of the fingerprint).
_NOT_IN_FINGERPRINT = {"name", "version", "data_dir", "data_files", "description"}


@dataclass
class INatFLConfig(datasets.BuilderConfig):
    """One way of cutting iNat 2021 into clients, and labelling it.

    Attributes
    ----------
    rank : str
        Label granularity: ``kingdom`` ... ``species``.
    scheme : str
        ``user``, ``geo<N>`` (``geo1k``, ...), ``dirichlet`` or ``iid``.
    seed : int
        Seeds every random choice (partition draws, client sampling, holdout).
    num_partitions : int
        Clients of ``dirichlet`` and ``iid``.
    alpha : float
        Dirichlet concentration.
    min_partition_size : int
        Dirichlet: redraw until every client has this many rows.
    group_size : int
        ``user``: users merged per client (1 = one client per user).
    min_client_size : int
        Drop clients with fewer train+test rows (applied after the scheme).
    max_clients : int or None
        Keep only the largest clients (ties: smaller client id).
    client_fraction : float
        Keep a random fraction of the clients.
    test_fraction : float
        Per-client holdout: this fraction of each client's rows becomes its ``test`` rows.
    holdout_client_fraction : float
        This fraction of the clients is held out whole: all their rows are ``test`` rows.
    on_invalid : str
        What a structurally bad metadata record does (:func:`inat_hf.metadata.load_metadata`): ``error``
        stops with the file, record and field; ``skip`` drops the row and counts it in the report.
    on_bad_image : str
        ``error`` or ``skip`` (skipped rows are listed with their reason).
    max_image_side : int or None
        Resize images at prepare time so that the longer side is at most this.
    with_images : bool
        False prepares the examples without image bytes (metadata only).
    train_split : str
        The train pool that clients, labels and the holdout are built from: ``train`` (``train.json`` or
        ``training_image_info.csv``, 2,686,843 images) or ``train_mini`` (``train_mini.json`` or
        ``train_mini_image_info.csv``, 500,000 images, 50 per species). ``validation`` is the official val
        either way.
    """

    rank: str = "family"
    scheme: str = "user"
    seed: int = 0
    num_partitions: int = 1000
    alpha: float = 0.5
    min_partition_size: int = 10
    group_size: int = 1
    min_client_size: int = 1
    max_clients: int | None = None
    client_fraction: float = 1.0
    test_fraction: float = 0.0
    holdout_client_fraction: float = 0.0
    on_invalid: Policy = "error"
    on_bad_image: Policy = "error"
    max_image_side: int | None = None
    with_images: bool = True
    train_split: str = "train"

    def __post_init__(self) -> None:
        given: str | None = vars(self).get("name")  # datasets.BuilderConfig's field, "default" unless given
        if not given or given == "default":
            self.name = f"{self.rank}_{self.scheme}"
        super().__post_init__()
        validate(self)

    def partition_params(self) -> dict[str, Any]:
        """The keyword parameters handed to the partition scheme."""
        return {
            "num_partitions": self.num_partitions,
            "alpha": self.alpha,
            "min_partition_size": self.min_partition_size,
            "group_size": self.group_size,
        }

    def fingerprint_fields(self) -> dict[str, Any]:
        """The fields that determine the examples, as a plain dict (sorted keys when serialised)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _NOT_IN_FINGERPRINT and f.name in _OWN_FIELDS
        }

    def manifest_fields(self) -> dict[str, Any]:
        """The fields that determine the manifest (:mod:`inat_hf.manifest`): :meth:`fingerprint_fields` less
        those that only change how examples are made from it (``on_bad_image``, ``max_image_side``,
        ``with_images``), so that such configs share one cached manifest.
        """
        fields = self.fingerprint_fields()
        return {name: value for name, value in fields.items() if name not in _EXAMPLE_ONLY_FIELDS}

    def fingerprint(self) -> str:
        """Hex digest of :meth:`fingerprint_fields` (never includes storage options or paths)."""
        text = json.dumps(self.fingerprint_fields(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_OWN_FIELDS = {f.name for f in dataclasses.fields(INatFLConfig)} - {
    f.name for f in dataclasses.fields(datasets.BuilderConfig)
}


def _require(condition: bool, field: str, value: Any, allowed: str) -> None:
    if not condition:
        raise ValueError(f"config field {field}={value!r} is invalid; allowed: {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(config: INatFLConfig) -> None:
    """Raise ``ValueError`` naming the field and the allowed values if a field is out of range."""
    _require(config.rank in RANKS, "rank", config.rank, ", ".join(RANKS))
    try:
        get_partitioner(config.scheme)
    except ValueError as err:
        raise ValueError(f"config field scheme={config.scheme!r} is invalid: {err}") from None
    _require(_is_int(config.seed) and config.seed >= 0, "seed", config.seed, "an integer >= 0")
    for name in ("num_partitions", "group_size", "min_partition_size", "min_client_size"):
        value = getattr(config, name)
        low = 0 if name in ("min_partition_size", "min_client_size") else 1
        _require(_is_int(value) and value >= low, name, value, f"an integer >= {low}")
    _require(
        isinstance(config.alpha, (int, float)) and not isinstance(config.alpha, bool) and config.alpha > 0,
        "alpha",
        config.alpha,
        "a number > 0",
    )
    _require(
        config.max_clients is None or (_is_int(config.max_clients) and config.max_clients >= 1),
        "max_clients",
        config.max_clients,
        "None or an integer >= 1",
    )
    _require(
        _fraction(config.client_fraction, 0, 1, upper_ok=True),
        "client_fraction",
        config.client_fraction,
        "a number in (0, 1]",
    )
    _require(
        _fraction(config.test_fraction, 0, 1, lower_ok=True),
        "test_fraction",
        config.test_fraction,
        "a number in [0, 1)",
    )
    _require(
        _fraction(config.holdout_client_fraction, 0, 1, lower_ok=True),
        "holdout_client_fraction",
        config.holdout_client_fraction,
        "a number in [0, 1)",
    )
    for name in ("on_invalid", "on_bad_image"):
        value = getattr(config, name)
        _require(value in POLICIES, name, value, ", ".join(POLICIES))
    _require(
        config.max_image_side is None or (_is_int(config.max_image_side) and config.max_image_side >= 16),
        "max_image_side",
        config.max_image_side,
        "None or an integer >= 16",
    )
    _require(isinstance(config.with_images, bool), "with_images", config.with_images, "True or False")
    _require(config.train_split in TRAIN_SPLITS, "train_split", config.train_split, ", ".join(TRAIN_SPLITS))


def _fraction(value: Any, low: float, high: float, *, lower_ok: bool = False, upper_ok: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    above = value >= low if lower_ok else value > low
    below = value <= high if upper_ok else value < high
    return above and below


def presets() -> list[INatFLConfig]:
    """The preset configs (``BUILDER_CONFIGS``)."""
    configs = []
    for rank in RANKS:
        for scheme in PRESET_SCHEMES:
            configs.append(
                INatFLConfig(
                    name=f"{rank}_{scheme}",
                    rank=rank,
                    scheme=scheme,
                    description=f"iNat 2021 labelled by {rank}, clients by the {scheme!r} scheme",
                )
            )
    return configs


def config_for(name_or_config: str | INatFLConfig = DEFAULT_CONFIG_NAME, **overrides: Any) -> INatFLConfig:
    """A config by name, or a given config, with fields overridden: the one way to make a config.

    A ``{rank}_{scheme}`` name that is not a preset also works (``species_geo300``). A config keeps its
    name and description unless ``rank`` or ``scheme`` is overridden (the name is then ``{rank}_{scheme}``);
    the config passed is not changed. Either way the result is validated as on creation.

    Raises
    ------
    ValueError
        Unknown name, unknown field, or a field out of range.
    """
    if isinstance(name_or_config, INatFLConfig):
        _check_fields(overrides)
        given = name_or_config
        fields = {**given.fingerprint_fields(), **overrides}
        if (fields["rank"], fields["scheme"]) != (given.rank, given.scheme):  # another config: its own name
            return INatFLConfig(name=f"{fields['rank']}_{fields['scheme']}", **fields)
        return INatFLConfig(name=given.name, **{"description": given.description, **fields})
    if not isinstance(name_or_config, str):
        raise ValueError(
            f"a config is a name such as {DEFAULT_CONFIG_NAME!r} or an INatFLConfig, not {name_or_config!r}"
        )
    name = name_or_config
    rank, sep, scheme = name.partition("_")
    if not sep or rank not in RANKS:
        raise ValueError(
            f"unknown config name {name!r}; names are {{rank}}_{{scheme}} with rank in {', '.join(RANKS)} "
            f"and scheme in {', '.join(PRESET_SCHEMES)} (or geo<N>), e.g. {DEFAULT_CONFIG_NAME!r}"
        )
    _check_fields(overrides)
    fields = {"rank": rank, "scheme": scheme, **overrides}
    if fields["rank"] != rank or fields["scheme"] != scheme:
        name = f"{fields['rank']}_{fields['scheme']}"
    return INatFLConfig(name=name, **fields)


def _check_fields(overrides: dict[str, Any]) -> None:
    unknown = sorted(set(overrides) - _OWN_FIELDS - {"description"})
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; fields are {', '.join(sorted(_OWN_FIELDS))}")
