"""The command-line options that ``scripts/finetune_vit.py`` and ``scripts/flower_sim.py`` share.

The data (``--config``, ``--set``, ``--data-dir`` or ``--export``, ``--images-dir``, ``--option``,
``--cache-dir``, ``--num-proc``, ``--val-limit``), the model (``--model``, ``--tiny``, ``--size``,
``--new-head``) and the optimisation (``--optimizer``, ``--lr``, ... ``--server-momentum``, ``--workers``),
and :func:`training_data`, the :class:`~inat_hf.train.data.TrainingData` those options name (its
:class:`~inat_hf.source.Source`: ``--data-dir`` with ``--images-dir`` and ``--option``).
"""

from __future__ import annotations

import argparse
from typing import Any

from inat_hf.cli.common import parse_overrides, parse_storage_options
from inat_hf.train.data import TrainingData
from inat_hf.train.training import DEFAULT_CHECKPOINT, VIT_SIZES


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model options."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_CHECKPOINT, help=f"checkpoint name or path ({DEFAULT_CHECKPOINT})")
    model.add_argument("--tiny", action="store_true", help="a tiny random ViT (32 px) instead of --model")
    model.add_argument("--size", choices=sorted(VIT_SIZES), help="a random ViT of this size instead of --model")
    model.add_argument(
        "--new-head", action="store_true", help="replace the classifier of a --model fine-tuned on other labels"
    )


def add_optimisation_arguments(group: Any) -> None:
    """Optimiser, batch and server-step options."""
    group.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    group.add_argument("--lr", type=float, default=1e-4)
    group.add_argument("--weight-decay", type=float, default=0.0)
    group.add_argument("--batch-size", type=int, default=32)
    group.add_argument("--eval-batch-size", type=int, default=64)
    group.add_argument("--server-lr", type=float, default=1.0, help="federated: server learning rate (not 1: FedAvgM)")
    group.add_argument("--server-momentum", type=float, default=0.0, help="federated: FedAvgM's beta (0 = FedAvg)")
    group.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (per client)")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The data options."""
    data = parser.add_argument_group("data")
    data.add_argument("--config", default="family_user", help="config name, {rank}_{scheme} (default family_user)")
    data.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="data folder URL for the builder (official layout or processed CSV)")
    source.add_argument("--export", help="an export folder (inat-fl export), loaded with datasets.load_dataset")
    data.add_argument(
        "--images-dir",
        "--images",
        dest="images",
        help="URL of your copy of the images: with a manifest-only --export; with --data-dir when apart from "
        "the metadata (default: the data folder)",
    )
    data.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="storage option (no secrets)")
    data.add_argument("--cache-dir", help="datasets cache (default: the datasets default)")
    data.add_argument("--num-proc", type=int, default=2, help="builder worker processes (default 2)")
    data.add_argument("--val-limit", type=int, help="evaluate on a seeded random subset of the validation rows")


def training_data(args: argparse.Namespace) -> TrainingData:
    """The :class:`TrainingData` the options name, prepared (builder) or loaded once (export)."""
    try:
        data = TrainingData.of(
            config=args.config,
            data_dir=args.data_dir,
            export=args.export,
            images=args.images,
            overrides=parse_overrides(args.set),
            storage_options=parse_storage_options(args.option),
            cache_dir=args.cache_dir,
        )
        data.prepare(num_proc=args.num_proc)
        data.split("train")  # an export without images says so now
    except ValueError as err:
        raise SystemExit(str(err)) from err
    return data


data_source = training_data
"""The former name of :func:`training_data`."""
