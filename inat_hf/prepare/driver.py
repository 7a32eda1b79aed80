"""The driver of ``inat-fl prepare``: manifests, the plan, the run on Dask, progress, the report and the card.

The driver builds (or reads from the one cache) each config's manifest, removes from ``data/{config}/``
what the plan does not name (temporary files of a killed run, files of another plan), runs one task per file
(:mod:`inat_hf.prepare.engine`), shows files done / planned and images/s, and at the end writes
``prepare_report.json`` (rows in = rows written + rows skipped, per file and in total, with every skipped
row's reason) and the dataset card (``README.md`` with YAML ``configs:``, as :func:`inat_hf.hub.export.
export_dataset` writes it). If a task fails, the run stops with the file and the reason (redacted); files
already complete stay, and the report says what was done.
"""

from __future__ import annotations

import json
import posixpath
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc

from inat_hf import storage
from inat_hf.config import INatFLConfig, config_for
from inat_hf.errors import InatError
from inat_hf.hub.card import card_from_exports
from inat_hf.hub.export import data_files, with_split_sizes
from inat_hf.manifest import Manifest, ManifestKey, check_configs, load_or_build, locate
from inat_hf.metadata import is_file_url, load_metadata
from inat_hf.prepare import engine
from inat_hf.prepare.plan import (
    FILE_ROWS_WITH_IMAGES,
    FILE_ROWS_WITHOUT_IMAGES,
    FileTask,
    Settings,
    plan_files,
    public_url,
    with_rows,
)
from inat_hf.prepare.task import peak_rss

REPORT_FILE = "prepare_report.json"


@dataclass
class Progress:
    """Files done / planned and images/s on the driver, a line at most every ``every`` seconds."""

    planned: int
    stream: TextIO | None = sys.stderr
    every: float = 2.0
    done: int = 0
    reused: int = 0
    images: int = 0
    started: float = field(default_factory=time.perf_counter)
    _shown: float = 0.0

    def update(self, result: Mapping[str, Any]) -> None:
        """Count one finished file and show the line if it is time."""
        self.done += 1
        if result["status"] == "reused":
            self.reused += 1
        else:
            self.images += int(result["rows_written"])
        now = time.perf_counter()
        if self.stream is not None and (now - self._shown >= self.every or self.done == self.planned):
            self._shown = now
            print(f"prepare: {self.line()}", file=self.stream, flush=True)

    @property
    def images_per_s(self) -> float:
        """Images written per second since the first task was submitted."""
        return self.images / max(1e-9, time.perf_counter() - self.started)

    def line(self) -> str:
        """``"3/12 files (1 reused), 4,000 images, 350 images/s"``."""
        return (
            f"{self.done}/{self.planned} files ({self.reused} reused), {self.images:,} images, "
            f"{self.images_per_s:,.0f} images/s"
        )


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


def _totals(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    for result in results:
        reasons.update(row["reason"].split(" (", 1)[0] for row in result["skipped"])
    return {
        "files": len(results),
        "files_written": sum(r["status"] == "written" for r in results),
        "files_reused": sum(r["status"] == "reused" for r in results),
        "rows_in": sum(r["rows_in"] for r in results),
        "rows_written": sum(r["rows_written"] for r in results),
        "rows_skipped": sum(r["rows_skipped"] for r in results),
        "skipped_by_reason": dict(sorted(reasons.items())),
    }


def _manifest_summary(manifest: Manifest) -> dict[str, Any]:
    reasons = pc.value_counts(manifest.dropped["reason"]).to_pylist() if manifest.dropped.num_rows else []
    return {
        "fingerprint": manifest.fingerprint,
        "rows": manifest.table.num_rows,
        "dropped_by_manifest": {str(r["values"]): int(r["counts"]) for r in reasons},
    }


def prepare(
    out_url: str,
    data_dir: str,
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
    scheduler: Any = "local",
    workers: int | None = None,
    replica_note: str | None = None,
    progress: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Write configs of the data at ``data_dir`` as image-bearing, client-aligned Parquet files with Dask.

    The output has the export layout (``data/{config}/{split}-XXXXX-of-YYYYY.parquet``, ``README.md``), so
    ``datasets.load_dataset(out_url, config)`` loads it with images. Resumable: a rerun writes only the files
    that are missing or do not match. See :mod:`inat_hf.prepare` for the whole story.

    Parameters
    ----------
    out_url : str
        Output folder: a local path or any fsspec URL (``az://container/prefix``).
    data_dir : str
        The metadata (official JSON or processed CSV), any fsspec URL.
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
    scheduler : {"local", "synchronous"}, str or distributed.Client
        ``"local"``: a ``LocalCluster`` of ``workers`` processes; ``"synchronous"``: in this process;
        ``"tcp://HOST:PORT"``: an existing cluster; or a ``distributed.Client``.
    workers : int, optional
        Worker processes of ``"local"`` (default 2).
    replica_note : str, optional
        Notice at the top of the card.
    progress : file, optional
        Where progress lines go (None: quiet).

    Returns
    -------
    dict
        The report also written to ``OUT/prepare_report.json``.

    Raises
    ------
    inat_hf.examples.BadImageError
        With ``on_bad_image="error"``: the file being written, the image and the reason.
    ValueError
        A bad config, scheduler or URL (a URL may not hold a credential).
    """
    began = time.perf_counter()
    extra = {k: v for k, v in (("max_image_side", max_image_side), ("on_bad_image", on_bad_image)) if v is not None}
    wanted = [
        config_for(c, **{**(overrides or {}), **extra}) if isinstance(c, str) else config_for(c.name, **{
            **c.fingerprint_fields(), **extra}) for c in configs
    ]  # fmt: skip
    if not wanted or len({c.name for c in wanted}) != len(wanted):
        raise ValueError(f"prepare needs distinct configs, at least one (e.g. 'family_user'); got {list(configs)}")
    source = storage.resolve(public_url(data_dir, "data_dir"), storage_options)
    out = storage.resolve(public_url(out_url, "out_url"), out_storage_options)
    with_images = {c.with_images for c in wanted}
    if len(with_images) != 1:
        raise ValueError("configs of one prepare run either all have images (with_images) or none")
    data_url = public_url(data_dir, "data_dir")  # images beside the metadata by default, as the builder's
    default_images = posixpath.dirname(data_url.rstrip("/")) if is_file_url(data_url) else data_url
    images_url = public_url(images_dir or default_images, "images_dir") if with_images.pop() else None
    settings = Settings(public_url(out_url, "out_url"), images_url, include_user)
    rows_per_file = file_rows or (FILE_ROWS_WITH_IMAGES if images_url else FILE_ROWS_WITHOUT_IMAGES)

    keys = [locate(source, config, cache_dir) for config in wanted]
    metadata = None if all(k.is_built() for k in keys) else load_metadata(source, on_invalid=wanted[0].on_invalid)
    if metadata is not None:  # a config that keeps no rows stops the run here, before any manifest or file
        check_configs(metadata, [k.config for k in keys if not k.is_built()])
    manifests = [load_or_build(key, source, metadata) for key in keys]
    plans = [list(plan_files(m, c, settings, file_rows=rows_per_file)) for m, c in zip(manifests, wanted, strict=True)]
    for config, plan in zip(wanted, plans, strict=True):
        _clean_stale(out, config.name, {t.relative for t in plan}, progress)
    image_options = image_storage_options if image_storage_options is not None else storage_options
    report: dict[str, Any] = {
        "out": out.url,
        "configs": {c.name: _manifest_summary(m) for c, m in zip(wanted, manifests, strict=True)},
        "scheduler": scheduler if isinstance(scheduler, str) else type(scheduler).__name__,
        "file_rows": rows_per_file,
    }
    meter = Progress(sum(len(p) for p in plans), progress)
    results: list[dict[str, Any]] = []
    first_submit: list[float] = []

    def tasks(loaded: list[Manifest]) -> Any:
        for plan, manifest in zip(plans, loaded, strict=True):
            for item in plan:
                yield with_rows(item, manifest)

    def on_submit() -> None:
        if not first_submit:
            first_submit.append(time.perf_counter() - began)
            meter.started = time.perf_counter()

    def on_done(result: dict[str, Any]) -> None:
        results.append(result)
        meter.update(result)

    try:
        if scheduler == "synchronous":
            engine.run_synchronous(tasks(manifests), image_options, out_storage_options, on_done, on_submit)
        else:
            starting = time.perf_counter()
            with engine.distributed_client(scheduler, workers) as client:
                report["cluster_start_seconds"] = time.perf_counter() - starting
                engine.run_distributed(client, tasks(manifests), image_options, out_storage_options, on_done, on_submit)
    except BaseException as err:
        _write_report(out, report, results, plans, began, first_submit, meter, error=err)
        raise _named(err, results, plans, out) from None
    report = _write_report(out, report, results, plans, began, first_submit, meter)
    del manifests  # the card reads them again after the metadata: the two peaks do not add up (full scale: 4 GB)
    pa.default_memory_pool().release_unused()
    _write_card(out, keys, _in_plan_order(results, plans), metadata, source, replica_note)
    if progress is not None:
        print(format_report(report), file=progress)
    return report


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


def _in_plan_order(results: list[dict[str, Any]], plans: list[list[FileTask]]) -> list[dict[str, Any]]:
    order = {t.relative: i for i, t in enumerate(t for plan in plans for t in plan)}
    return sorted(results, key=lambda r: order.get(r["file"], len(order)))


def _write_report(
    out: storage.Location,
    report: dict[str, Any],
    results: list[dict[str, Any]],
    plans: list[list[FileTask]],
    began: float,
    first_submit: list[float],
    meter: Progress,
    error: BaseException | None = None,
) -> dict[str, Any]:
    ordered = _in_plan_order(results, plans)
    per_file = [{k: v for k, v in r.items() if k not in ("key", "fingerprint")} for r in ordered]
    report = {
        **report,
        "complete": error is None,
        "error": None if error is None else out.redact(f"{type(error).__name__}: {error}"),
        "files_planned": sum(len(p) for p in plans),
        "totals": _totals(ordered),
        "seconds": time.perf_counter() - began,
        "seconds_to_first_task": first_submit[0] if first_submit else None,
        "planning_seconds": (first_submit[0] - report.get("cluster_start_seconds", 0.0)) if first_submit else None,
        "driver_peak_rss": peak_rss(),
        "images_per_s": meter.images_per_s,
        "worker_peak_rss": max((r["worker_peak_rss"] for r in ordered), default=0),
        "files": per_file,
    }
    storage.write_bytes(out, REPORT_FILE, (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())
    return report


def _write_card(
    out: storage.Location,
    keys: list[ManifestKey],
    results: list[dict[str, Any]],
    metadata: pa.Table | None,
    source: storage.Location,
    replica_note: str | None,
) -> None:
    """The dataset card, as the export writes it, with the examples actually written per split."""
    written: dict[str, dict[str, list[str]]] = {}
    examples: dict[str, Counter[str]] = {}
    for result in results:
        written.setdefault(result["config"], {}).setdefault(result["split"], []).append(result["file"])
        examples.setdefault(result["config"], Counter())[result["split"]] += result["rows_written"]
    written = {name: {split: sorted(files) for split, files in splits.items()} for name, splits in written.items()}
    if metadata is None:
        metadata = load_metadata(source, on_invalid=keys[0].config.on_invalid)
    built = [
        (k.config, load_or_build(k, source, metadata), data_files(k.config.name, list(written.get(k.config.name, {}))))
        for k in keys
    ]
    card = card_from_exports(built, metadata, out, replica_note=replica_note)
    counts = {name: dict(c) for name, c in examples.items()}
    storage.write_bytes(out, "README.md", with_split_sizes(card, out, written, built, counts).encode("utf-8"))


def format_report(report: Mapping[str, Any]) -> str:
    """The end-of-run summary: files, rows in = written + skipped (with reasons), images/s."""
    t = report["totals"]
    lines = [
        f"{t['files']} of {report['files_planned']} files: {t['files_written']} written, {t['files_reused']} reused",
        f"rows in {t['rows_in']:,} = written {t['rows_written']:,} + skipped {t['rows_skipped']:,}",
    ]
    lines += [f"  skipped, {reason}: {n:,}" for reason, n in t["skipped_by_reason"].items()]
    lines.append(f"{report['images_per_s']:,.0f} images/s; {report['seconds']:.1f} s; report: {REPORT_FILE}")
    return "\n".join(lines)
