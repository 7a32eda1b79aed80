"""The text pieces of the dataset card: numbers, how a config cuts the data, its overrides, the configs table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from inat_hf.config import INatFLConfig, config_for
from inat_hf.partition import get_partitioner
from inat_hf.schema import SPLITS

if TYPE_CHECKING:
    from inat_hf.hub.card import ConfigCard


def fmt_num(value: float, digits: int = 1) -> str:
    """A number for the card: integers with thousands separators, others with ``digits`` decimals, NaN as -."""
    if math.isnan(value):
        return "-"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.{digits}f}"


def fmt_pct(part: int, whole: int) -> str:
    """``part`` as a percentage of ``whole`` (one decimal), - when ``whole`` is 0."""
    return f"{100 * part / whole:.1f}%" if whole else "-"


def scheme_text(config: INatFLConfig) -> str:
    """How a config cuts the data, from its fields."""
    fixed = get_partitioner(config.scheme).fixed
    if config.scheme == "user":
        text = "one client per photographer" if config.group_size == 1 else f"{config.group_size} photographers"
    elif "max_cell_size" in fixed:
        text = f"adaptive geographic cells of at most {fixed['max_cell_size']:,} images (Geo-N of Hsu et al.)"
    elif config.scheme == "dirichlet":
        text = f"{config.num_partitions:,} clients, labels drawn from Dirichlet(α = {config.alpha:g})"
    else:
        text = f"{config.num_partitions:,} clients of uniformly random images"
    if config.min_client_size > 1:
        text += f"; clients under {config.min_client_size:,} images dropped"
    if config.train_split != "train":
        text += f"; clients, labels and test rows from `{config.train_split}` (not `train`)"
    return text


def config_overrides(config: INatFLConfig) -> dict[str, Any]:
    """The fields of ``config`` that differ from its preset ``{rank}_{scheme}`` (``train_split``, ...), but
    ``with_images``: whether the files hold image bytes is said by the card itself, and the builder snippet
    loads images from your own copy either way.
    """
    preset = config_for(f"{config.rank}_{config.scheme}").fingerprint_fields()
    fields = config.fingerprint_fields().items()
    return {k: v for k, v in fields if k not in ("rank", "scheme", "with_images") and preset[k] != v}


def set_flags(configs: Sequence[ConfigCard]) -> str:
    """``--set FIELD=VALUE`` flags of the overrides that all the configs share (what ``inat-fl card`` takes)."""
    shared = set.intersection(*(set(config_overrides(card.config).items()) for card in configs))
    words = {None: "none", True: "true", False: "false"}
    return "".join(f" --set {k}={words.get(v, v) if isinstance(v, bool | None) else v}" for k, v in sorted(shared))


def builder_kwargs(config: INatFLConfig) -> str:
    """The builder's keyword arguments that give ``config`` from its preset (``, train_split="train_mini"``)."""
    fields = config_overrides(config).items()
    return "".join(f', {k}="{v}"' if isinstance(v, str) else f", {k}={v!r}" for k, v in fields)


def configs_table(configs: Sequence[ConfigCard]) -> str:
    """The markdown table of the configs: clients, examples per split, classes, median size, label skew."""
    header = ["config", "rank", "scheme", "clients", *SPLITS, "classes", "median client size", "label skew (TV)"]
    rows = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    for card in configs:
        s = card.stats
        cells = [f"`{card.name}`", card.config.rank, card.config.scheme, f"{s.num_clients:,}"]
        cells += [f"{s.examples.get(split, 0):,}" for split in SPLITS]
        cells += [f"{card.num_classes:,}", fmt_num(s.client_size.median), fmt_num(s.label_skew_tv, 3)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
