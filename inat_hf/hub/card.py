"""The dataset card: the Hub ``README.md`` of an export, rendered from the statistics of the data.

:func:`render_card` turns per-config statistics (:class:`ConfigCard`) and counts of the metadata into the
card: YAML front matter that the Hub and ``datasets`` read (licence, task, tags, size category, and one
``configs:`` entry per config whose ``data_files`` point at ``data/{config}/{split}-*.parquet``), then a body
in which every number comes from those statistics, none is typed by hand. :func:`card_from_data` computes
everything from a data folder (metadata, one manifest per config, the client-size figure) and renders the
card (``inat-fl card``); :func:`card_from_exports` renders the card of written files
(:func:`inat_hf.hub.folder.write_card`, after ``inat-fl export`` and ``inat-fl prepare``).
"""

from __future__ import annotations

import functools
import math
import os
import posixpath
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import pyarrow as pa
from huggingface_hub import DatasetCardData

from inat_hf import about, storage
from inat_hf.analysis.baselines import card_section
from inat_hf.analysis.plots import plot_client_sizes
from inat_hf.analysis.stats import PartitionStats, compute_stats
from inat_hf.analysis.summary import (
    GRID_DEGREES,
    TINY_CLIENT_SIZE,
    TOP_CLIENT_FRACTION,
    DataBiases,
    compute_biases,
    summarize,
)
from inat_hf.config import DEFAULT_CONFIG_NAME, INatFLConfig, config_for
from inat_hf.export.files import data_files as export_data_files
from inat_hf.hub.card_text import (
    builder_kwargs,
    configs_table,
    fmt_num,
    fmt_pct,
    scheme_text,
    set_flags,
)
from inat_hf.manifest import Manifest, check_configs, load_config_metadata, load_or_build, locate
from inat_hf.schema import SPLITS
from inat_hf.source import Source
from inat_hf.taxonomy import RANKS

TAGS = ("federated-learning", "inaturalist", "non-iid", "biodiversity", "fine-grained", "taxonomy", "species")
LICENSE_NAME = "inat2021-terms"
CARD_CONFIGS = ("family_user", "species_user", "class_geo1k", "order_dirichlet", "phylum_iid")
"""The configs of the committed card and of ``inat-fl card`` without ``--config``."""
_YAML_ORDER = ("pretty_name", "license", "license_name", "license_link", "task_categories", "task_ids")
_SIZE_BUCKETS = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B")


@dataclass(frozen=True)
class ConfigCard:
    """What the card says about one config.

    Attributes
    ----------
    config : INatFLConfig
    stats : PartitionStats
        :func:`inat_hf.analysis.stats.compute_stats` of the config's manifest.
    num_classes : int
        Names of the ``label`` ClassLabel (the rank's vocabulary).
    splits : dict of str to int
        Examples per split present in the export (splits without examples are left out).
    data_files : dict of str to str
        Split -> glob of its Parquet shards, relative to the export's root.
    """

    config: INatFLConfig
    stats: PartitionStats
    num_classes: int
    splits: Mapping[str, int]
    data_files: Mapping[str, str]

    @classmethod
    def from_stats(
        cls, config: INatFLConfig, stats: PartitionStats, data_files: Mapping[str, str] | None = None
    ) -> ConfigCard:
        """The card entry of ``config``: the splits of ``data_files`` (default: every split with examples, each
        at ``data/{name}/{split}-*.parquet``).
        """
        if data_files is None:
            data_files = export_data_files(config.name, [s for s in SPLITS if stats.examples.get(s, 0)])
        splits = {split: int(stats.examples.get(split, 0)) for split in data_files}
        return cls(config, stats, stats.num_labels, splits, dict(data_files))

    @property
    def name(self) -> str:
        """The config name."""
        return self.config.name


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket of ``n`` examples (``n<1K``, ``1K<n<10K``, ..., ``100M<n<1B``)."""
    if n < 0:
        raise ValueError(f"a number of examples is >= 0, got {n}")
    return _SIZE_BUCKETS[min(max(0, len(str(int(n))) - 3), len(_SIZE_BUCKETS) - 1)]


def card_data(configs: Sequence[ConfigCard], *, default_config: str, num_examples: int) -> DatasetCardData:
    """The card's YAML metadata: licence, task, tags, size category and one ``configs:`` entry per config.

    The default config is listed first with ``default: true``; ``data_files`` list ``split`` and ``path``.
    """
    names = [card.name for card in configs]
    if default_config not in names:
        raise ValueError(f"default_config {default_config!r} is not among the configs {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"config names repeat: {names}")
    entries = [
        {
            "config_name": card.name,
            "data_files": [{"split": split, "path": path} for split, path in card.data_files.items()],
            **({"default": True} if card.name == default_config else {}),
        }
        for card in sorted(configs, key=lambda card: card.name != default_config)
    ]
    return DatasetCardData(
        pretty_name=about.PRETTY_NAME,
        license="other",
        license_name=LICENSE_NAME,
        license_link=about.HOMEPAGE,
        task_categories=["image-classification"],
        task_ids=["multi-class-image-classification"],
        annotations_creators=["crowdsourced"],
        size_categories=[size_category(num_examples)],
        tags=list(TAGS),
        configs=entries,
    )


@functools.cache
def _sections() -> dict[str, Template]:
    """The sections of ``card_template.md``, by name."""
    text = resources.files("inat_hf.hub").joinpath("card_template.md").read_text(encoding="utf-8")
    parts = re.split(r"^<!-- section: (\w+) -->\n", text, flags=re.MULTILINE)
    return {name: Template(body.rstrip("\n") + "\n") for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def _section(name: str, **values: object) -> str:
    return _sections()[name].substitute(values)


def _words(name: str, with_images: bool) -> str:
    """The inline words of section ``name_with_images`` or ``name_without_images`` (no final newline)."""
    return _section(f"{name}_{'with' if with_images else 'without'}_images").rstrip("\n")


def _limitations(b: DataBiases, pool: str) -> str:
    return _section(
        "limitations",
        pool=pool,
        train_images=f"{b.train_images:,}",
        located_share=fmt_pct(b.located, b.train_images),
        northern_share=fmt_pct(b.northern, b.located),
        num_top_cells=len(b.top_cells),
        grid=GRID_DEGREES,
        occupied_cells=f"{b.occupied_cells:,}",
        top_share=fmt_pct(sum(n for _, n in b.top_cells), b.located),
        cells=", ".join(f"{name} ({fmt_pct(n, b.located)})" for name, n in b.top_cells),
        top_fraction=f"{TOP_CLIENT_FRACTION:.0%}",
        users=f"{b.users:,}",
        top_users=f"{b.top_users:,}",
        top_users_share=fmt_pct(b.top_users_images, b.train_images),
        tiny_share=fmt_pct(b.tiny_users, b.users),
        tiny_size=TINY_CLIENT_SIZE,
        tiny_images_share=fmt_pct(b.tiny_users_images, b.train_images),
        kingdoms=", ".join(f"{name} {fmt_pct(n, b.train_images)}" for name, n in b.kingdom_images),
        species_min=f"{b.species_images_min:,}",
        species_max=f"{b.species_images_max:,}",
    )


def _taxonomy(rank_counts: Mapping[str, int], configs: Sequence[ConfigCard], pool: str) -> str:
    used = {card.config.rank: card.num_classes for card in configs}
    rows = [f"| {rank} | {rank_counts.get(rank, 0):,} | {fmt_num(used.get(rank, math.nan))} |" for rank in RANKS]
    return "\n".join([f"| rank | names in {pool} | classes of the configs above |", "|---|---:|---:|", *rows])


def render_card(
    configs: Sequence[ConfigCard],
    *,
    rank_counts: Mapping[str, int],
    split_sizes: Mapping[str, int],
    users: int,
    figure: str | None,
    replica_note: str | None,
    default_config: str = DEFAULT_CONFIG_NAME,
    biases: DataBiases | None = None,
    repo_id: str = "<namespace>/inaturalist-fl",
    with_images: bool = False,
    baselines: str | None = None,
) -> str:
    """The full ``README.md`` of an export: YAML front matter, then the body rendered from the numbers.

    Parameters
    ----------
    configs : sequence of ConfigCard
        One per exported config, in the order of the configs table.
    rank_counts, split_sizes : mapping of str to int
        Distinct names per rank in the default config's train pool (its ``train_split``: ``train`` or
        ``train_mini``); images per split of the source (``train`` or ``train_mini``, ``val``).
    users : int
        Distinct photographers in that train pool.
    figure : str or None
        Relative path of the client-size figure of ``default_config`` (None: no figure).
    replica_note : str or None
        If given, a notice at the top says that the numbers come from the synthetic replica, with this text.
    default_config : str
        Marked ``default: true``; one of ``configs``.
    biases : DataBiases, optional
        From :func:`compute_biases`; without it the limitations section has no numbers.
    repo_id : str
        Hub id shown in the loading example.
    with_images : bool
        Whether the files hold the image bytes (a private copy): the card says what the files hold, how to
        load them and the terms that bind such a copy.
    baselines : str, optional
        The "Baselines" section (:func:`inat_hf.analysis.baselines.card_section`); default: the section that
        says none were measured.
    """
    if not configs:
        raise ValueError("a card needs at least one config")
    total = max(sum(card.splits.values()) for card in configs)
    data = card_data(configs, default_config=default_config, num_examples=total)
    default = next(card for card in configs if card.name == default_config)
    parts = [f"---\n{data.to_yaml(original_order=list(_YAML_ORDER))}\n---\n", f"# {about.PRETTY_NAME}\n"]
    if replica_note:
        flags = " ".join(f"--config {c.name}" for c in configs) + set_flags(configs)
        parts.append(_section("replica_notice", note=replica_note.strip(), config_flags=flags))
    images = ", ".join(f"{n:,} {split}" for split, n in split_sizes.items())
    contents = _words("contents", with_images)
    parts.append(_section("intro", images=images, species=f"{rank_counts.get('species', 0):,}", users=f"{users:,}",
                          contents=contents))  # fmt: skip
    schemes = "\n".join(f"- `{c.name}`: {c.config.rank} labels; {scheme_text(c.config)}." for c in configs)
    parts.append(_section("configurations", schemes=schemes, table=configs_table(configs)))
    if figure:
        size = default.stats.client_size
        median, p90, largest = fmt_num(size.median), fmt_num(size.p90), fmt_num(size.max)
        parts.append(_section("figure", default=default.name, figure=figure, median=median, p90=p90, largest=largest))
    kwargs = builder_kwargs(default.config)
    parts.append(_section("loading", default=default.name, repo_id=repo_id, builder_kwargs=kwargs))
    load = "load_with_images" if with_images else "load_without_images"
    parts += [_section(load, default=default.name, repo_id=repo_id), _section("clients")]
    parts.append(baselines if baselines is not None else card_section(None)[0])
    pool = default.config.train_split  # the card's numbers describe the default config's train pool
    parts.append(_section("taxonomy", table=_taxonomy(rank_counts, configs, pool)))
    parts.append(_limitations(biases, pool) if biases else _section("no_limitations"))
    parts.append(_section("licence", link=about.HOMEPAGE, images_terms=_words("terms", with_images)))
    parts.append(_section("citation", citation=about.CITATION))
    return "\n".join(parts)


def _default_of(names: Sequence[str], default_config: str | None) -> str:
    """The default config: ``default_config``, else ``family_user`` if listed, else the first; names distinct."""
    if not names or len(set(names)) != len(names):
        raise ValueError(f"a card needs distinct configs, at least one (e.g. 'family_user'); got {list(names)}")
    default = default_config or (DEFAULT_CONFIG_NAME if DEFAULT_CONFIG_NAME in names else names[0])
    if default not in names:
        raise ValueError(f"default_config {default!r} is not among the configs {list(names)}")
    return default


def card_config(configs: Sequence[INatFLConfig], default_config: str | None = None) -> INatFLConfig:
    """The config whose train pool (``train_split``) the card's counts describe: the default config
    (``default_config``, else ``family_user`` if listed, else the first). Callers load the metadata for the
    card with :func:`inat_hf.manifest.load_config_metadata` of this config.
    """
    name = _default_of([config.name for config in configs], default_config)
    return next(config for config in configs if config.name == name)


def card_from_exports(
    built: Sequence[tuple[INatFLConfig, Manifest, Mapping[str, str]]],
    images: pa.Table,
    out: storage.Location | str | os.PathLike[str],
    *,
    replica_note: str | None = None,
    figure_dir: str = "assets",
    default_config: str | None = None,
    with_images: bool = False,
    baselines: Mapping[str, Any] | None = None,
) -> str:
    """The card of exported configs; writes the client-size figure under ``out`` and returns the text.

    Parameters
    ----------
    built : sequence of (INatFLConfig, Manifest, dict of str to str)
        Each exported config, its manifest and its ``data_files`` (split -> glob relative to ``out``).
    images : pyarrow.Table
        The source metadata (:func:`inat_hf.metadata.load_metadata`), already loaded by the caller with the
        default config's ``train_split`` (:func:`card_config`): the counts and the biases come from it.
    out : storage.Location or str or path-like
        Root of the export (local or any fsspec URL), where the card goes.
    replica_note : str, optional
        Marks the numbers as the synthetic replica's (see :func:`render_card`).
    figure_dir : str
        Folder of the figure ``client_sizes_{default config}.png``, relative to ``out`` (the card links it so).
    default_config : str, optional
        Default: ``family_user`` if exported, else the first config.
    with_images : bool
        Whether the exported files hold the image bytes (see :func:`render_card`).
    baselines : mapping, optional
        A baselines ``results.json`` (:func:`inat_hf.analysis.baselines.load_results`): its table in the card,
        its curves under ``figure_dir``.
    """
    default = _default_of([config.name for config, _, _ in built], default_config)
    pool = next(config for config, _, _ in built if config.name == default).train_split
    summary = summarize(images)
    train = next((s for s in summary if s.split == pool), None)
    if train is None:
        raise ValueError(
            f"the metadata has no {pool} rows: the card describes the train pool of {default!r} (train_split={pool!r});"
            f" load the metadata with train_split={pool!r}"
        )
    cards = [ConfigCard.from_stats(c, compute_stats(m, c.name), files) for c, m, files in built]
    figure = posixpath.join(figure_dir, f"client_sizes_{default}.png")
    with tempfile.TemporaryDirectory() as tmp:
        plot_client_sizes(next(m for c, m, _ in built if c.name == default), f"{tmp}/f.png", config_name=default)
        out = out if isinstance(out, storage.Location) else storage.resolve(os.fspath(out))
        storage.write_bytes(out, figure, Path(tmp, "f.png").read_bytes())
    section, curves = card_section(baselines, figure_dir)
    for path, png in curves.items():
        storage.write_bytes(out, path, png)
    return render_card(
        cards,
        rank_counts=train.rank_counts,
        split_sizes={s.split: s.images for s in summary},
        users=train.users,
        figure=figure,
        replica_note=replica_note,
        default_config=default,
        biases=compute_biases(images),
        with_images=with_images,
        baselines=section,
    )


def card_from_data(
    data_dir: Source | str,
    config_names: Sequence[str | INatFLConfig],
    *,
    out_dir: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    replica_note: str | None = None,
    assets_dir: str | os.PathLike[str] | None = None,
    default_config: str | None = None,
    baselines: Mapping[str, Any] | None = None,
) -> str:
    """Build (or load) each config's manifest, write the figure and return the card text.

    Parameters as :func:`card_from_exports`, and: ``data_dir``, where the data is (a
    :class:`~inat_hf.source.Source`, or any fsspec URL with its ``storage_options``; they appear nowhere in
    the card; no image is read); ``config_names``, ``{rank}_{scheme}`` names or
    configs with fields overridden; ``out_dir``, the local folder of the card; ``cache_dir``, as the builder's
    (the one manifest cache: :func:`inat_hf.manifest.cache_root`); ``assets_dir``, the folder of the figure,
    inside ``out_dir`` (default ``out_dir/assets``); ``baselines``, a baselines ``results.json`` for the card's
    "Baselines" section. The splits listed are those with examples.
    """
    figure_dir = Path(os.path.relpath(assets_dir, out_dir)).as_posix() if assets_dir is not None else "assets"
    if figure_dir == ".." or figure_dir.startswith("../"):
        raise ValueError(f"the figure folder {assets_dir} must lie inside the card's folder {out_dir}")
    configs = [config_for(c) for c in config_names]
    described = card_config(configs, default_config)
    source = Source.of(data_dir, storage_options).metadata
    images = load_config_metadata(source, described)  # its train_split: what the card's numbers describe
    same_pool = [c for c in configs if (c.train_split, c.on_invalid) == (described.train_split, described.on_invalid)]
    check_configs(images, same_pool)  # a config that keeps no rows stops here, before any manifest
    built = []
    for config in configs:
        same = (config.train_split, config.on_invalid) == (described.train_split, described.on_invalid)
        loaded = images if same else None  # other metadata: load_or_build loads its own
        manifest = load_or_build(locate(source, config, cache_dir), source, loaded)
        splits = [split for split in SPLITS if manifest.split_range(split)[1]]  # as the export writes them
        built.append((config, manifest, export_data_files(config.name, splits)))
    return card_from_exports(
        built, images, out_dir, replica_note=replica_note, figure_dir=figure_dir, default_config=default_config,
        baselines=baselines,
    )  # fmt: skip
