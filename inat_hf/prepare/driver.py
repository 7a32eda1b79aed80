"""The driver of ``inat-fl prepare`` (and of ``inat-fl export``): manifests, the plan, the run on Dask,
progress and the report.

The driver builds (or reads from the one cache) each config's manifest, removes from ``data/{config}/``
what the plan does not name (temporary files of a killed run, files of another plan), writes (or finds from a
killed run) the copy of each manifest that the tasks read their rows from (:mod:`~inat_hf.prepare.rows`),
lets go of the manifests (it holds the plan only while the tasks run), runs one task per file
(:mod:`inat_hf.prepare.engine`), shows files done / planned and images/s, and at the end writes
``prepare_report.json`` (rows in = rows written + rows skipped, per file and in total, with every skipped
row's reason, each config's fields, and ``files_with_skipped``: the files that ``redo_skipped`` writes
again), and deletes the copies. If a task fails, the run stops with the file and the reason (redacted); files
already complete stay (and the copies, for the rerun), and the report says what was done. The dataset card
(``README.md``) is not the engine's: the caller writes it from the report
(:func:`inat_hf.hub.folder.write_card`; ``inat-fl prepare`` and ``export_dataset`` do).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import pyarrow.compute as pc

from inat_hf import storage
from inat_hf.config import INatFLConfig, config_for
from inat_hf.errors import InatError
from inat_hf.manifest import Manifest, ManifestKey, check_configs, load_config_metadata, load_or_build, locate
from inat_hf.prepare import engine, rows
from inat_hf.prepare.plan import (
    BATCH_ROWS,
    FILE_ROWS_WITH_IMAGES,
    FILE_ROWS_WITHOUT_IMAGES,
    FileTask,
    Settings,
    plan_files,
    public_url,
)
from inat_hf.prepare.report import Progress, format_report, write_report
from inat_hf.prepare.task import release_memory
from inat_hf.source import Source


def _clean_stale(out: storage.Location, config_name: str, planned: set[str], log: TextIO | None) -> int:
    """Delete the files under ``data/{config}/`` that the plan does not name; return how many."""
    folder = f"data/{config_name}"
    if not storage.exists(out, folder):
        return 0
    stale = [f for f in storage.list_files(out, folder) if f not in planned]
    for relative in stale:
        storage.remove(out, relative)
    if stale and log is not None:
        print(f"prepare: removed {len(stale)} file(s) of an earlier plan or run under {folder}/", file=log)
    return len(stale)


def _ready_output(
    out: storage.Location,
    wanted: list[INatFLConfig],
    manifests: list[Manifest],
    plans: list[list[FileTask]],
    log: TextIO | None,
) -> dict[str, str]:
    """Remove each config's stale files, then write (or find from a killed run) the copy of each config's rows
    that its tasks read (:func:`inat_hf.prepare.rows.ensure_copy`); return each copy's name and status.
    """
    for config, plan in zip(wanted, plans, strict=True):
        _clean_stale(out, config.name, {t.relative for t in plan}, log)
    return {
        plan[0].rows_file: rows.ensure_copy(out, m, plan, log) for m, plan in zip(manifests, plans, strict=True) if plan
    }


def _manifest_summary(manifest: Manifest, config: INatFLConfig) -> dict[str, Any]:
    reasons = pc.value_counts(manifest.dropped["reason"]).to_pylist() if manifest.dropped.num_rows else []
    return {
        "fields": config.fingerprint_fields(),  # the config again: config_for(name, **fields)
        "fingerprint": manifest.fingerprint,
        "rows": manifest.table.num_rows,
        "dropped_by_manifest": {str(r["values"]): int(r["counts"]) for r in reasons},
    }


def prepare(
    out_url: str,
    data_dir: str | Source,
    configs: Sequence[str | INatFLConfig],
    *,
    overrides: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    out_storage_options: Mapping[str, Any] | None = None,
    images_dir: str | None = None,
    image_storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    max_image_side: int | None = None,
    on_bad_image: str | None = None,
    include_user: bool = False,
    file_rows: int | None = None,
    batch_rows: int | None = None,
    redo_skipped: bool = False,
    scheduler: Any = "local",
    workers: int | None = None,
    progress: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Write configs of the data at ``data_dir`` as client-aligned Parquet files with Dask (with their image
    bytes, unless the configs say ``with_images=False``).

    The output has the export layout (``data/{config}/{split}-XXXXX-of-YYYYY.parquet``,
    :mod:`inat_hf.export.files`); with the card that :func:`inat_hf.hub.folder.write_card` writes from the
    returned report, ``datasets.load_dataset(out_url, config)`` loads it. Resumable: a rerun writes only the
    files that are missing or do not match. See :mod:`inat_hf.prepare` for the whole story.

    Parameters
    ----------
    out_url : str
        Output folder: a local path or any fsspec URL (``az://container/prefix``).
    data_dir : str or Source
        The metadata (official JSON or processed CSV), any fsspec URL; or a :class:`~inat_hf.source.Source`
        (metadata, images and their options; then the three location arguments below stay unset).
    configs : sequence of str or INatFLConfig
        ``{rank}_{scheme}`` names (with ``overrides``) or configs.
    overrides : mapping, optional
        Config fields for every named config (``min_client_size=32``).
    storage_options, out_storage_options, image_storage_options : mapping, optional
        Fsspec options (credentials) of ``data_dir``, ``out_url`` and ``images_dir`` (default: those of
        ``data_dir``). They reach workers by reference, never in the task graph; without them, workers use
        their own environment (``AZURE_STORAGE_CONNECTION_STRING``...).
    images_dir : str, optional
        Where the image files are read (default ``data_dir``).
    cache_dir : str, optional
        The manifest cache, as the builder's ``cache_dir``.
    max_image_side, on_bad_image : optional
        Config fields set for every config (shrink images; ``"error"`` or ``"skip"`` bad images).
    include_user : bool
        Keep the raw ``rights_holder`` (``user``) column.
    file_rows : int, optional
        Rows per file to aim at (default 2,000 with images, 250,000 without).
    batch_rows : int, optional
        With images, the most rows whose image bytes a worker holds at once, one row group each (default
        256): a worker's memory is bounded by a batch, not by its file's largest client
        (:mod:`inat_hf.prepare.stream`).
    redo_skipped : bool
        Write again the files that skipped rows (e.g. after the images were fixed) instead of reusing them;
        the other files are reused as usual. The report lists them (``files_with_skipped``).
    scheduler : {"local", "synchronous"}, str or distributed.Client
        ``"local"``: a ``LocalCluster`` of ``workers`` processes; ``"synchronous"``: in this process;
        ``"tcp://HOST:PORT"``: an existing cluster; or a ``distributed.Client``.
    workers : int, optional
        Worker processes of ``"local"`` (default 2).
    progress : file, optional
        Where progress lines go (None: quiet).

    Returns
    -------
    dict
        The report also written to ``OUT/prepare_report.json``.

    Raises
    ------
    inat_hf.manifest.examples.BadImageError
        With ``on_bad_image="error"``: the file being written, the image and the reason.
    ValueError
        A bad config, scheduler or URL (a URL may not hold a credential).
    """
    began = time.perf_counter()
    if isinstance(data_dir, Source):  # a Source, or its four arguments
        loc = Source.of(data_dir, storage_options, images_dir, image_storage_options)
        data_dir, storage_options = loc.data_dir, loc.storage_options
        images_dir, image_storage_options = loc.images_dir, loc.image_storage_options
    wanted = _wanted_configs(configs, overrides, max_image_side=max_image_side, on_bad_image=on_bad_image)
    source = storage.resolve(public_url(data_dir, "data_dir"), storage_options)
    out = storage.resolve(public_url(out_url, "out_url"), out_storage_options)
    images_url = _images_url(data_dir, images_dir) if _with_images(wanted) else None
    batch = BATCH_ROWS if batch_rows is None else batch_rows
    settings = Settings(public_url(out_url, "out_url"), images_url, include_user, batch, redo_skipped)
    rows_per_file = file_rows or (FILE_ROWS_WITH_IMAGES if images_url else FILE_ROWS_WITHOUT_IMAGES)

    keys = [locate(source, config, cache_dir) for config in wanted]
    manifests = _manifests(keys, source)
    plans = [list(plan_files(m, c, settings, file_rows=rows_per_file)) for m, c in zip(manifests, wanted, strict=True)]
    copies = _ready_output(out, wanted, manifests, plans, progress)
    report: dict[str, Any] = {
        "out": out.url,
        "config_names": [c.name for c in wanted],  # the order of the run (the file's keys are sorted)
        "configs": {c.name: _manifest_summary(m, c) for c, m in zip(wanted, manifests, strict=True)},
        "rows_copies": copies,
        "scheduler": scheduler if isinstance(scheduler, str) else type(scheduler).__name__,
        "file_rows": rows_per_file,
        "batch_rows": settings.batch_rows if images_url else None,
        "redo_skipped": redo_skipped,
    }
    meter = Progress(sum(len(p) for p in plans), progress)
    results: list[dict[str, Any]] = []
    first_submit: list[float] = []

    del manifests  # the tasks read their rows from the copies: the driver holds the plan only
    release_memory()
    tasks = [item for plan in plans for item in plan]

    def on_submit() -> None:
        if not first_submit:
            first_submit.append(time.perf_counter() - began)
            meter.started = time.perf_counter()

    def on_done(result: dict[str, Any]) -> None:
        results.append(result)
        meter.update(result)

    try:
        image_options = Source(data_dir, storage_options, images_dir, image_storage_options).image_options
        _run(scheduler, workers, tasks, (image_options, out_storage_options), on_done, on_submit, report)
    except BaseException as err:
        write_report(out, report, results, plans, began, first_submit, meter, error=err)
        raise _named(err, results, plans, out) from None
    report = write_report(out, report, results, plans, began, first_submit, meter)
    rows.remove_copies(out, list(copies))  # complete: the copies are not part of the output
    if progress is not None:
        print(format_report(report), file=progress)
    return report


def _run(
    scheduler: Any,
    workers: int | None,
    tasks: Any,
    options: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None],
    on_done: Any,
    on_submit: Any,
    report: dict[str, Any],
) -> None:
    """Run the tasks on ``scheduler`` with the images' and the output's storage options (by reference)."""
    if scheduler == "synchronous":
        engine.run_synchronous(tasks, *options, on_done, on_submit)
        return
    starting = time.perf_counter()
    with engine.distributed_client(scheduler, workers) as client:
        report["cluster_start_seconds"] = time.perf_counter() - starting
        engine.run_distributed(client, tasks, *options, on_done, on_submit)


def _manifests(keys: list[ManifestKey], source: storage.Location) -> list[Manifest]:
    """Each key's manifest, from the cache or built from the metadata of its config (its ``train_split`` and
    ``on_invalid``: loaded once for the configs that share them, not at all when every manifest is cached).
    """

    def pool(key: ManifestKey) -> tuple[str, str]:
        return key.config.train_split, key.config.on_invalid

    missing = [key for key in keys if not key.is_built()]
    loaded = {pool(key): load_config_metadata(source, key.config) for key in reversed(missing)}
    for group, table in loaded.items():  # a config that keeps no rows stops the run here, before any manifest
        check_configs(table, [key.config for key in missing if pool(key) == group])
    return [load_or_build(key, source, loaded.get(pool(key))) for key in keys]


def _wanted_configs(
    configs: Sequence[str | INatFLConfig],
    overrides: Mapping[str, Any] | None,
    **fields: Any,
) -> list[INatFLConfig]:
    """The configs of a prepare run: names with ``overrides``, configs as they are; ``fields`` that are not
    None (``max_image_side``, ``on_bad_image``) set on every one.
    """
    extra = {k: v for k, v in fields.items() if v is not None}
    wanted = [
        config_for(c, **{**(overrides or {}), **extra}) if isinstance(c, str) else config_for(c, **extra)
        for c in configs
    ]
    if not wanted or len({c.name for c in wanted}) != len(wanted):
        raise ValueError(f"prepare needs distinct configs, at least one (e.g. 'family_user'); got {list(configs)}")
    return wanted


def _with_images(configs: Sequence[INatFLConfig]) -> bool:
    """Whether the configs of a run write image bytes (all of them or none)."""
    with_images = {c.with_images for c in configs}
    if len(with_images) != 1:
        raise ValueError("configs of one prepare run either all have images (with_images) or none")
    return with_images.pop()


def _images_url(data_dir: str, images_dir: str | None) -> str:
    """Where the images are read: ``images_dir``, else beside the metadata (as the builder's default)."""
    return public_url(Source(public_url(data_dir, "data_dir"), images_dir=images_dir).images_url, "images_dir")


def _named(err: BaseException, results: list[dict[str, Any]], plans: list[list[FileTask]], out: Any) -> BaseException:
    """The error of a failed run, saying how many files are complete (the same type, message redacted)."""
    if not isinstance(err, InatError | ValueError):
        return err
    planned = sum(len(p) for p in plans)
    message = out.redact(f"{err} [{len(results)} of {planned} files complete; rerun to write the rest]")
    try:
        return type(err)(message)
    except TypeError:
        return err
