r"""Fine-tune a ViT on iNat-FL, centrally or federated (FedAvg / FedAvgM), or measure what bounds training.

    # the small replica, prepared by the builder, a tiny random ViT, 5 FedAvg rounds of 10 clients
    inat-fl sample out/small --scale small
    python scripts/finetune_vit.py --data-dir out/small --tiny --mode fedavg --rounds 5 --out out/ft

    # ViT-B/16 (in21k) on your own copy, server momentum (FedAvgM), config overrides
    python scripts/finetune_vit.py --data-dir az://inaturalist/2021 --config family_user \\
        --set min_client_size=32 --mode fedavg --rounds 100 --clients-per-round 10 --local-epochs 1 \\
        --lr 1e-4 --batch-size 32 --server-momentum 0.9 --val-limit 5000 --out out/ft

    # central fine-tuning (transformers Trainer) on a manifest-only Hub export plus your images
    python scripts/finetune_vit.py --export out/export --images-dir az://inaturalist/2021 --mode central \\
        --epochs 1 --out out/central

    # images/s of the input pipeline against the training step, tiny and ViT-B/16-sized random ViTs
    python scripts/finetune_vit.py --data-dir out/small --bench-pipeline --out out/bench

Data (:class:`inat_hf.train.data.TrainingData`, shared with ``scripts/flower_sim.py``): ``--data-dir``
prepares the config with the builder (``--cache-dir``, ``--num-proc``; ``--images-dir`` when the images lie
apart from the metadata); ``--export`` loads an export with ``datasets.load_dataset(DIR, config)`` and adds
the images from ``--images-dir`` (alias ``--images``) with ``inat_hf.export.attach_images``, or uses
the export's own images (an output of ``inat-fl prepare`` holds the image bytes: no ``--images-dir``).
Credentials come from the environment (``AZURE_STORAGE_*``, read by adlfs); ``--option KEY=VALUE`` passes
other storage options. Model: ``--model`` (a checkpoint name or path; default
``google/vit-base-patch16-224-in21k``; ``--new-head`` replaces the classifier of a checkpoint fine-tuned on
other labels), ``--tiny`` or ``--size base`` (a random ViT). Outputs in ``--out``: ``metrics.json``
(settings and one row per round or epoch), ``metrics.csv`` and ``accuracy.png``
(:mod:`inat_hf.train.report`); ``bench.json`` for ``--bench-pipeline`` (the processor and the fast input
pipeline against the training step). The logic is in :mod:`inat_hf.train.training`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import torch

from inat_hf.cli.common import parse_overrides
from inat_hf.federated.clients import ClientData
from inat_hf.train.fedavg import (
    FedAvgSettings,
    run_fedavg,
)
from inat_hf.train.options import add_data_arguments, add_model_arguments, add_optimisation_arguments, training_data
from inat_hf.train.report import round_reporter, save_metrics
from inat_hf.train.training import (
    VIT_SIZES,
    LocalSettings,
    autocast_dtype,
    label_names,
    limit,
    make_loader,
    make_model,
    make_processor,
    make_transform,
    pick_device,
    run_central,
    seed_everything,
    with_pipeline,
)


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    add_data_arguments(parser)
    parser.add_argument("--train-limit", type=int, help="central: a seeded random subset of the train rows")
    add_model_arguments(parser)
    train = parser.add_argument_group("training")
    train.add_argument("--mode", choices=("fedavg", "central"), default="fedavg")
    train.add_argument("--epochs", type=int, default=1, help="central: epochs")
    train.add_argument("--rounds", type=int, default=10, help="fedavg: rounds")
    train.add_argument("--clients-per-round", type=int, default=10, help="fedavg: clients sampled per round")
    train.add_argument("--local-epochs", type=int, default=1, help="fedavg: epochs on each client's rows")
    train.add_argument("--max-local-steps", type=int, help="fedavg: at most this many steps per client")
    train.add_argument("--max-steps", type=int, help="central: stop after this many steps")
    add_optimisation_arguments(train)
    train.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    train.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/finetune", help="folder for metrics.json, metrics.csv, accuracy.png")
    bench = parser.add_argument_group("--bench-pipeline")
    bench.add_argument("--bench-pipeline", action="store_true", help="input pipeline vs training step, then exit")
    bench.add_argument("--bench-batches", type=int, default=12, help="batches timed per pipeline measurement")
    bench.add_argument("--bench-steps", type=int, default=5, help="training steps timed per model")
    bench.add_argument("--bench-workers", default="0", help="comma-separated DataLoader worker counts to time")
    bench.add_argument(
        "--bench-transforms", default="processor,fast", help="comma-separated: processor (ViTImageProcessor), fast"
    )
    bench.add_argument(
        "--bench-models", default="tiny,base", help=f"comma-separated ViT sizes ({', '.join(VIT_SIZES)})"
    )
    return parser


def load_splits(args: argparse.Namespace) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The train split (rows grouped by client) and the central validation split, with their images."""
    data = training_data(args)
    return data.split("train"), data.split("validation")


# --- the input pipeline against the model -----------------------------------------------------------------


def _pipeline_rate(
    train: datasets.Dataset, size: str, transform: str, batch_size: int, batches: int, workers: int
) -> float:
    """Images/s of the input pipeline (JPEG decode, resize, normalise) through ``set_transform`` and a
    DataLoader: ``transform`` ``processor`` (ViTImageProcessor per batch) or ``fast`` (ImageTransform).
    """
    fast = transform == "fast"
    pipeline = with_pipeline(train, make_transform(make_processor(size=size), fast=fast))
    loader = iter(make_loader(pipeline, batch_size, seed=0, workers=workers))
    next(loader)  # warm-up: workers start, first batch
    start, images = time.perf_counter(), 0
    for _, batch in zip(range(batches), loader, strict=False):
        images += len(batch["labels"])
    return images / (time.perf_counter() - start)


def _step_seconds(labels: list[str], size: str, batch_size: int, steps: int) -> float:
    """Median seconds of one AdamW training step of a random ViT of ``size`` on a random batch, with the
    autocast that training uses (bf16 on CUDA, else fp16; full precision on CPU).
    """
    device = pick_device()
    amp = autocast_dtype(device)
    model = make_model(labels, size=size).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    side = VIT_SIZES[size]["image_size"]
    pixels = torch.randn(batch_size, 3, side, side, device=device)
    target = torch.randint(0, len(labels), (batch_size,), device=device)
    times = []
    for _ in range(steps + 1):  # the first step is a warm-up
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = model(pixel_values=pixels, labels=target).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def bench_pipeline(train: datasets.Dataset, args: argparse.Namespace) -> list[dict[str, Any]]:
    """For each ViT size, transform and worker count: input-pipeline images/s and training-step images/s."""
    labels, rows = label_names(train), []
    transforms = args.bench_transforms.split(",")
    if not set(transforms) <= {"processor", "fast"}:
        raise SystemExit(f"--bench-transforms {args.bench_transforms!r}: choose from processor, fast")
    for size in args.bench_models.split(","):
        if size not in VIT_SIZES:
            raise SystemExit(f"--bench-models: unknown ViT size {size!r}; choose from {', '.join(VIT_SIZES)}")
        step = _step_seconds(labels, size, args.batch_size, args.bench_steps)
        for workers in (int(w) for w in args.bench_workers.split(",")):
            for transform in transforms:
                rate = _pipeline_rate(train, size, transform, args.batch_size, args.bench_batches, workers)
                model_rate = args.batch_size / step
                rows.append(
                    {
                        "model": size,
                        "image_size": VIT_SIZES[size]["image_size"],
                        "batch_size": args.batch_size,
                        "transform": transform,
                        "workers": workers,
                        "pipeline_images_per_s": rate,
                        "step_seconds": step,
                        "model_images_per_s": model_rate,
                        "bound": "input" if rate < model_rate else "model",
                    }
                )
    return rows


def _print_bench(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'model':6} {'px':>4} {'batch':>5} {'transform':>9} {'workers':>7} {'pipeline img/s':>15} {'step s':>8} "
        f"{'model img/s':>12}  bound"
    )
    for r in rows:
        print(
            f"{r['model']:6} {r['image_size']:>4} {r['batch_size']:>5} {r['transform']:>9} {r['workers']:>7} "
            f"{r['pipeline_images_per_s']:>15.1f} {r['step_seconds']:>8.4f} {r['model_images_per_s']:>12.1f}  "
            f"{r['bound']}"
        )


# --- main -------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    seed_everything(args.seed)
    train, validation = load_splits(args)
    if args.bench_pipeline:
        rows = bench_pipeline(train, args)
        _print_bench(rows)
        meta = {"device": str(pick_device()), "torch_threads": torch.get_num_threads(), "config": args.config}
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
        return 0
    size = "tiny" if args.tiny else args.size
    checkpoint = None if size else args.model
    transform = make_transform(make_processor(checkpoint=checkpoint, size=size or "tiny"))
    model = make_model(label_names(train), checkpoint=checkpoint, size=size or "tiny", new_head=args.new_head)
    validation = limit(with_pipeline(validation, transform), args.val_limit, args.seed)
    local = LocalSettings(
        epochs=args.local_epochs if args.mode == "fedavg" else args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        workers=args.workers,
        max_steps=args.max_local_steps if args.mode == "fedavg" else args.max_steps,
    )
    meta: dict[str, Any] = {
        "mode": args.mode,
        "config": args.config,
        "overrides": parse_overrides(args.set),
        "model": f"{size} random ViT" if size else args.model,
        "device": str(pick_device()),
        "val_limit": args.val_limit,
    }
    if args.mode == "central":
        meta["settings"] = {**dataclasses.asdict(local), "eval_batch_size": args.eval_batch_size, "seed": args.seed}
        train = limit(with_pipeline(train, transform), args.train_limit, args.seed)
        rows = run_central(
            model,
            train,
            validation,
            local,
            work_dir=out / "trainer",
            eval_batch_size=args.eval_batch_size,
            seed=args.seed,
        )
        save_metrics(rows, out, x="epoch", meta=meta)
    else:
        settings = FedAvgSettings(
            rounds=args.rounds,
            clients_per_round=args.clients_per_round,
            local=local,
            server_lr=args.server_lr,
            server_momentum=args.server_momentum,
            eval_batch_size=args.eval_batch_size,
            seed=args.seed,
        )
        meta["settings"] = dataclasses.asdict(settings)

        clients = ClientData(with_pipeline(train, transform))
        rows = run_fedavg(model, clients, validation, settings, on_round=round_reporter(out, meta, settings.rounds))
    print(f"metrics: {out / 'metrics.json'}, {out / 'metrics.csv'}; plot: {out / 'accuracy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
