"""Benchmark ``pipeline``: the ViT input pipeline, ``ViTImageProcessor`` against ``ImageTransform``.

    python scripts/bench.py pipeline [--data DIR] [--cache DIR] [--size base] [--repeats 5]

On the ``small`` replica (JPEGs up to 500 px, written to ``--data`` if missing) prepared as
``family_user`` without ``max_image_side``, the train split goes through ``with_pipeline`` and a
``DataLoader`` with no worker processes and one torch thread (so images/s is per core), for a 224 px
target (``--size base``): the processor path (``make_transform(..., fast=False)``: decode, then
``ViTImageProcessor`` on the batch; the pipeline of issue #6) and the fast path (``ImageTransform``: draft
decode, PIL resize, one normalisation per batch). The two are timed alternately ``--repeats`` times over
the same ``--batches`` batches; the medians and their ratio are reported. Target: ratio at least 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from inat_hf.testing.bench import run_main

ROOT = Path(__file__).resolve().parents[1]


def _rate(dataset: Any, transform: Any, batch_size: int, batches: int) -> float:
    from inat_hf.train.pipeline import make_loader, with_pipeline

    loader = make_loader(with_pipeline(dataset, transform), batch_size, workers=0)
    start, images = time.perf_counter(), 0
    for _, batch in zip(range(batches), loader, strict=False):
        images += len(batch["labels"])
    return images / (time.perf_counter() - start)


def bench_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ``pipeline`` benchmark; print a table and one JSON line."""
    import torch

    from inat_hf.train.pipeline import make_processor, make_transform
    from inaturalist_fl import INaturalistFL

    torch.set_num_threads(1)
    data = Path(args.data)
    if not (data / "train.json").exists():
        from inat_hf.replica import write_sample

        print(f"writing the small replica to {data} ...", file=sys.stderr)
        write_sample(str(data), scale="small", seed=0)
    builder = INaturalistFL(config_name="family_user", data_dir=str(data), cache_dir=str(args.cache))
    builder.download_and_prepare(num_proc=2)
    train = builder.as_dataset("train").shuffle(seed=0).flatten_indices()
    processor = make_processor(size=args.size)
    transforms = {"processor": make_transform(processor, fast=False), "fast": make_transform(processor)}
    _rate(train, transforms["fast"], args.batch_size, 1)  # warm-up (imports, caches)
    rates: dict[str, list[float]] = {name: [] for name in transforms}
    for _ in range(args.repeats):
        for name, transform in transforms.items():
            rates[name].append(_rate(train, transform, args.batch_size, args.batches))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio = medians["fast"] / medians["processor"]
    result = {
        "bench": "pipeline",
        "target_px": processor.size["height"],
        "images": args.batch_size * args.batches,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "images_per_s_per_core": rates,
        "median_images_per_s_per_core": medians,
        "speedup": ratio,
        "targets_met": {"at_least_2x": ratio >= 2},
    }
    print(f"{args.size} ViT ({result['target_px']} px) from the small replica's JPEGs (up to 500 px), 1 core")
    print(f"{'path':<48}{'median img/s':>14}  runs")
    labels = {"processor": "before: decode + ViTImageProcessor", "fast": "after: ImageTransform (draft, batched)"}
    for name, values in rates.items():
        print(f"{labels[name]:<48}{medians[name]:>14.1f}  {', '.join(f'{v:.0f}' for v in values)}")
    print(f"speed-up: {ratio:.2f}x")
    print(json.dumps(result))
    return result


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``pipeline`` subcommand (``scripts/bench.py`` calls this)."""
    parser = subparsers.add_parser("pipeline", help="input pipeline: ViTImageProcessor vs ImageTransform")
    parser.add_argument("--data", default=str(ROOT / "bench_out" / "small"), help="small replica (written if missing)")
    parser.add_argument("--cache", default=str(ROOT / "bench_out" / "pipeline_cache"), help="datasets cache_dir")
    parser.add_argument("--size", default="base", help="ViT size of the target (base: 224 px)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10, help="batches per timed pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes of each path, alternating")
    parser.set_defaults(func=bench_pipeline)


if __name__ == "__main__":
    run_main(__doc__, add_parser)
