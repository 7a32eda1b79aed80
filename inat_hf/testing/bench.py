"""What the benchmark scripts share (``scripts/bench*.py``; no script imports another script).

* the Azurite measures of ``bench fetch`` and ``bench prepare``: :class:`Meter` (wall time, CPU time of
  this process and its children, and Azurite's), :func:`raw_download` (the rate storage gives),
  :func:`builder_prepare` (``download_and_prepare`` from Azurite), :func:`best_run`;
* the prepared metadata-only split of ``bench clients`` and ``bench partitioner``:
  :func:`add_split_arguments`, :func:`split_builder`, :func:`prepare_split`, :func:`ids_digest`;
* :func:`run_main`: the command line of one benchmark script run on its own.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from inat_hf.testing.azurite import AzuriteServer

ROOT = Path(__file__).resolve().parents[2]
"""The repository (the default place of ``bench_out/``)."""
CONTAINER = "bench"
"""The Azurite container the benchmarks upload the replica to."""


class Meter:
    """Wall time, CPU time of this process and its finished children, and Azurite's CPU time, over a block."""

    def __init__(self, server: AzuriteServer) -> None:
        self.server = server

    @staticmethod
    def _own_cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def __enter__(self) -> Meter:
        self.start = (time.perf_counter(), self._own_cpu(), self.server.cpu_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu, azurite_cpu = self.start
        self.seconds = time.perf_counter() - wall
        self.cpu = self._own_cpu() - cpu
        self.azurite_cpu = self.server.cpu_seconds() - azurite_cpu

    def result(self, images: int, **extra: Any) -> dict[str, Any]:
        """The measures of ``images`` images: per second, and CPU milliseconds per image on each side."""
        return {**extra, "images": images, "seconds": self.seconds, "images_per_s": images / self.seconds,
                "client_cpu_ms_per_image": 1000 * self.cpu / images,
                "azurite_cpu_ms_per_image": 1000 * self.azurite_cpu / images}  # fmt: skip


def raw_download(server: AzuriteServer, prefix: str, workers: int) -> dict[str, Any]:
    """Download every ``.jpg`` blob under ``prefix`` with azure-storage-blob from a thread pool."""
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(server.connection_string) as service:
        container = service.get_container_client(CONTAINER)
        names = [b.name for b in container.list_blobs(name_starts_with=prefix) if b.name.endswith(".jpg")]
        with Meter(server) as meter, ThreadPoolExecutor(workers) as pool:
            sizes = list(pool.map(lambda name: len(container.download_blob(name).readall()), names))
    return meter.result(len(sizes), bytes=sum(sizes))


def builder_prepare(url: str, server: AzuriteServer, num_proc: int, cache_dir: Path) -> dict[str, Any]:
    """Time ``download_and_prepare`` of ``family_user`` from Azurite in a fresh cache (after the manifest)."""
    from inaturalist_fl import INaturalistFL

    builder = INaturalistFL(
        config_name="family_user",
        data_dir=url,
        storage_options={"connection_string": server.connection_string},
        cache_dir=str(cache_dir),
    )
    with Meter(server) as meter:
        builder.download_and_prepare(num_proc=num_proc)
    images = sum(split.num_examples for split in builder.info.splits.values())
    written = sum(split.num_bytes for split in builder.info.splits.values())
    return meter.result(images, num_proc=num_proc, arrow_bytes=written)


def best_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the most images per second."""
    return max(runs, key=lambda run: run["images_per_s"])


def split_builder(params: dict[str, Any]) -> Any:
    """The metadata-only builder of ``params`` (``config``, ``data``, ``cache``)."""
    from inaturalist_fl import INaturalistFL

    return INaturalistFL(
        config_name=params["config"], data_dir=params["data"], with_images=False, cache_dir=params["cache"]
    )


def ids_digest(image_ids: list[list[int]]) -> str:
    """A short digest of clients' image ids (each client's ids in any order)."""
    digest = hashlib.sha256()
    for ids in image_ids:
        digest.update(np.sort(np.asarray(ids, dtype=np.int64)).tobytes() + b"|")
    return digest.hexdigest()[:16]


def prepare_split(params: dict[str, Any], num_proc: int | None) -> dict[str, Any]:
    """Write the replica's metadata if missing, then prepare the metadata-only dataset (cached)."""
    data = Path(params["data"])
    if not (data / "train.json").exists():
        from inat_hf.replica import write_sample

        print(f"writing the {params['scale']!r} replica's metadata to {data} ...", file=sys.stderr)
        write_sample(str(data), scale=params["scale"], metadata_only=True, progress=True)
    start = time.perf_counter()
    builder = split_builder(params)  # builds and caches the manifest the first time
    init = time.perf_counter() - start
    cached = Path(builder.cache_dir, "dataset_info.json").exists()
    start = time.perf_counter()
    builder.download_and_prepare(num_proc=num_proc)
    return {"builder_init_seconds": init, "prepare_seconds": time.perf_counter() - start, "was_cached": cached}


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the prepared full-scale split (``bench clients`` and ``bench partitioner``)."""
    parser.add_argument("--data", default=str(ROOT / "bench_out" / "full"), help="replica folder (written if missing)")
    parser.add_argument("--scale", default="full")
    parser.add_argument("--cache", default=str(ROOT / "bench_out" / "clients_cache"), help="datasets cache_dir")
    parser.add_argument("--config", default="family_user")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-proc", type=int, default=2, help="download_and_prepare workers")


def run_main(doc: str, add_parser: Callable[[Any], Any]) -> None:
    """Parse ``NAME [options]`` (the benchmark's ``add_parser`` registers NAME) and run it."""
    cli = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_parser(cli.add_subparsers(dest="bench", required=True))
    options = cli.parse_args()
    options.func(options)
