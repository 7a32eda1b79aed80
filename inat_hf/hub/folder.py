"""A Hub-ready folder: the Parquet files that :func:`inat_hf.prepare.prepare` writes, then the dataset card.

One write path: ``inat-fl export`` (:func:`export_dataset`) is prepare run with the synchronous scheduler,
manifest-only unless images are asked for, and ``inat-fl prepare`` is prepare on a cluster; both end with
:func:`write_card`, which renders the card (:mod:`inat_hf.hub.card`) from prepare's report: the files written
and the examples in them, each config as the run had it, and whether the files hold image bytes. The engine
below (:mod:`inat_hf.prepare`) knows nothing of the card.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from inat_hf import storage
from inat_hf.analysis.baselines import load_results
from inat_hf.config import config_for
from inat_hf.export.files import data_files, with_split_sizes
from inat_hf.hub.card import card_config, card_from_exports
from inat_hf.manifest import load_config_metadata, load_or_build, locate
from inat_hf.prepare import REPORT_FILE, prepare
from inat_hf.source import Source


def files_written(report: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """The files of a prepare run, by config and split (sorted), from its report (reused files included)."""
    written: dict[str, dict[str, list[str]]] = {name: {} for name in report["config_names"]}
    for result in report["files"]:
        written[result["config"]].setdefault(result["split"], []).append(result["file"])
    return {name: {split: sorted(files) for split, files in splits.items()} for name, splits in written.items()}


def write_card(
    out_url: str,
    data_dir: str,
    report: Mapping[str, Any] | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    out_storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    replica_note: str | None = None,
    baselines: str | None = None,
) -> str:
    """Write the dataset card (``README.md``, its figure under ``assets/``) of a prepared or exported folder.

    The card lists the files the run wrote (``data_files``) with the examples actually written per split
    (``dataset_info``: rows skipped for bad images are not counted), describes the default config's train pool
    (its metadata is loaded from ``data_dir``) and says whether the files hold image bytes.

    Parameters
    ----------
    out_url : str
        The folder prepare wrote (local or any fsspec URL).
    data_dir : str
        The metadata the run read (official JSON or processed CSV), any fsspec URL.
    report : mapping, optional
        What :func:`inat_hf.prepare.prepare` returned; default: read ``OUT/prepare_report.json``.
    storage_options, out_storage_options : mapping, optional
        Fsspec options (credentials) of ``data_dir`` and ``out_url``; they appear nowhere in the card.
    cache_dir : str, optional
        The manifest cache, as the run's.
    replica_note : str, optional
        Notice at the top of the card (numbers from the synthetic replica).
    baselines : str, optional
        A baselines ``results.json`` (``inat-fl baselines``): its table and curves go in the card.

    Returns
    -------
    str
        The card's text.

    Raises
    ------
    ValueError
        The run did not complete (the report says so): rerun prepare first.
    """
    results = load_results(baselines) if baselines else None  # a bad file stops here, before any work
    out = storage.resolve(out_url, out_storage_options)
    if report is None:
        report = json.loads(storage.read_bytes(out, REPORT_FILE))
    if not report.get("complete"):
        raise ValueError(
            f"{out.url}/{REPORT_FILE}: the prepare run did not complete ({report.get('error')}); rerun the same "
            "command to write the rest, then the card is written"
        )
    source = storage.resolve(data_dir, storage_options)
    configs = [config_for(name, **report["configs"][name]["fields"]) for name in report["config_names"]]
    described = card_config(configs)
    metadata = load_config_metadata(source, described)  # its train pool: what the card's numbers describe
    written = files_written(report)
    examples: dict[str, Counter[str]] = {name: Counter() for name in written}
    for result in report["files"]:
        examples[result["config"]][result["split"]] += result["rows_written"]
    built = []
    for config in configs:
        same = (config.train_split, config.on_invalid) == (described.train_split, described.on_invalid)
        manifest = load_or_build(locate(source, config, cache_dir), source, metadata if same else None)
        built.append((config, manifest, data_files(config.name, list(written[config.name]))))
    with_images = all(config.with_images for config in configs)  # a run's configs: all with images or none
    card = card_from_exports(built, metadata, out, replica_note=replica_note, with_images=with_images,
                             baselines=results)  # fmt: skip
    counts = {name: dict(c) for name, c in examples.items()}
    text = with_split_sizes(card, out, written, built, counts)
    storage.write_bytes(out, "README.md", text.encode("utf-8"))
    return text


def export_dataset(
    out_url: str,
    data_dir: str | Source,
    config_names: Sequence[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    out_storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    include_user: bool = False,
    with_images: bool = False,
    replica_note: str | None = None,
    images_dir: str | None = None,
    image_storage_options: Mapping[str, Any] | None = None,
    baselines: str | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Export configs of the data at ``data_dir`` to ``out_url`` with the card (``README.md``).

    This is :func:`inat_hf.prepare.prepare` with the synchronous scheduler (the same plan, the same files,
    the same bytes, ``prepare_report.json`` included), then :func:`write_card`. Manifest-only by default:
    labels, partitions and file names, no image bytes (the iNat terms forbid redistributing them). With
    ``with_images``, the image bytes come from ``images_dir`` (any fsspec URL, with its own
    ``image_storage_options``; default ``data_dir`` and ``storage_options``), and a bad image stops the export
    naming it (``overrides={"on_bad_image": "skip"}`` skips and counts it instead). A rerun writes only the
    files that are missing or do not match. ``baselines`` (a ``results.json`` of ``inat-fl baselines``) puts
    its table and curves in the card.

    Returns
    -------
    dict
        The files of the export, by config and split.

    Raises
    ------
    ValueError
        ``overrides`` set ``with_images`` against the ``with_images`` argument, or a bad config or URL.
    """
    if isinstance(data_dir, Source):  # a Source, or its four arguments
        loc = Source.of(data_dir, storage_options, images_dir, image_storage_options)
        data_dir, storage_options = loc.data_dir, loc.storage_options
        images_dir, image_storage_options = loc.images_dir, loc.image_storage_options
    if baselines:
        load_results(baselines)  # a bad file stops here, before the export
    fields = dict(overrides or {})
    if fields.setdefault("with_images", with_images) != with_images:
        raise ValueError(
            f"overrides with_images={fields['with_images']!r} contradicts with_images={with_images!r}: an export "
            "holds image bytes only with with_images=True (inat-fl export --with-images)"
        )
    report = prepare(
        out_url,
        data_dir,
        list(config_names),
        overrides=fields,
        storage_options=storage_options,
        out_storage_options=out_storage_options,
        images_dir=images_dir,
        image_storage_options=image_storage_options,
        cache_dir=cache_dir,
        include_user=include_user,
        scheduler="synchronous",
        progress=None,
    )
    write_card(out_url, data_dir, report, storage_options=storage_options, out_storage_options=out_storage_options,
               cache_dir=cache_dir, replica_note=replica_note, baselines=baselines)  # fmt: skip
    return files_written(report)
