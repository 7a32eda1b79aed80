r"""Federated ViT fine-tuning as a Flower simulation: a ClientApp per client, Flower's FedAvg / FedAvgM.

    # the small replica, a tiny random ViT, 2 rounds over the first 4 clients (Ray, on this machine)
    inat-fl sample out/small --scale small
    python scripts/flower_sim.py --data-dir out/small --tiny --num-supernodes 4 --clients-per-round 4 \\
        --rounds 2 --out out/flower

    # ViT-B/16 (in21k) on your own copy, every client a node, 10 per round, FedAvgM
    python scripts/flower_sim.py --data-dir az://inaturalist/2021 --config family_user --rounds 100 \\
        --clients-per-round 10 --local-epochs 1 --server-momentum 0.9 --val-limit 5000 --out out/flower

    # a manifest-only export plus your images (or an export written with images: no --images-dir)
    python scripts/flower_sim.py --export out/export --images-dir out/small --tiny --rounds 5 --out out/flower

Each Flower node ``partition-id`` ``i`` trains on partition ``i`` of ``inat_hf.federated.partitioner.INatPartitioner``
(the ``i``-th client of the ``train`` split in client-id order) for ``--local-epochs`` with
``inat_hf``'s training code and returns its weights and example count; the ``ServerApp`` runs Flower's
``FedAvg`` (``FedAvgM`` with ``--server-momentum`` or ``--server-lr``) over ``--clients-per-round`` nodes
per round for ``--rounds`` rounds and evaluates the global model on the ``validation`` split before
training and after every round. Runs through ``flwr.simulation.run_simulation`` (Ray backend); each
client gets ``--client-cpus`` CPUs and ``--client-gpus`` GPUs (default: 1 on CUDA, else 0). Outputs in
``--out``, as ``scripts/finetune_vit.py`` writes them: ``metrics.json``, ``metrics.csv``,
``accuracy.png``. The apps are in :mod:`inat_hf.train.flower.apps` and :mod:`inat_hf.train.flower.server`.
Needs the ``flower`` extra.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from inat_hf.cli.common import parse_overrides
from inat_hf.train.fedavg import FedAvgSettings
from inat_hf.train.flower.apps import ModelSpec
from inat_hf.train.flower.server import run_flower_simulation
from inat_hf.train.options import (  # the same data, model and optimisation options as finetune_vit.py
    add_data_arguments,
    add_model_arguments,
    add_optimisation_arguments,
    training_data,
)
from inat_hf.train.report import round_reporter
from inat_hf.train.training import LocalSettings, pick_device, seed_everything


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    add_data_arguments(parser)
    add_model_arguments(parser)
    fl = parser.add_argument_group("federation")
    fl.add_argument("--rounds", type=int, default=10)
    fl.add_argument("--num-supernodes", type=int, help="Flower nodes: the first N clients (default: every client)")
    fl.add_argument("--clients-per-round", type=int, default=10, help="nodes Flower samples per round")
    fl.add_argument("--local-epochs", type=int, default=1, help="epochs on each client's rows")
    fl.add_argument("--max-local-steps", type=int, help="at most this many steps per client")
    add_optimisation_arguments(fl)
    fl.add_argument("--client-cpus", type=float, default=1.0, help="Ray CPUs per client (default 1)")
    fl.add_argument("--client-gpus", type=float, help="Ray GPUs per client (default: 1 on CUDA, else 0)")
    fl.add_argument("--ray-cpus", type=int, help="CPUs Ray may use in all (default: every core)")
    fl.add_argument("--threads", type=int, help="torch CPU threads of the server process")
    fl.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/flower", help="folder for metrics.json, metrics.csv, accuracy.png")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    seed_everything(args.seed)
    data = training_data(args)
    size = "tiny" if args.tiny else args.size
    spec = ModelSpec(checkpoint=None if size else args.model, size=size or "tiny", new_head=args.new_head)
    local = LocalSettings(
        epochs=args.local_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        workers=args.workers,
        max_steps=args.max_local_steps,
    )
    settings = FedAvgSettings(
        rounds=args.rounds,
        clients_per_round=args.clients_per_round,
        local=local,
        server_lr=args.server_lr,
        server_momentum=args.server_momentum,
        eval_batch_size=args.eval_batch_size,
        seed=args.seed,
    )
    gpus = args.client_gpus if args.client_gpus is not None else (1.0 if torch.cuda.is_available() else 0.0)
    resources = {"num_cpus": args.client_cpus, "num_gpus": gpus}
    meta: dict[str, Any] = {
        "mode": "flower " + ("FedAvgM" if args.server_momentum or args.server_lr != 1.0 else "FedAvg"),
        "config": args.config,
        "overrides": parse_overrides(args.set),
        "model": f"{size} random ViT" if size else args.model,
        "device": str(pick_device()),
        "val_limit": args.val_limit,
        "num_supernodes": args.num_supernodes,
        "client_resources": resources,
        "settings": dataclasses.asdict(settings),
    }
    try:
        run_flower_simulation(
            data,
            spec,
            settings,
            num_nodes=args.num_supernodes,
            client_resources=resources,
            ray_init_args={"num_cpus": args.ray_cpus} if args.ray_cpus else None,
            on_round=round_reporter(out, meta, settings.rounds),
            val_limit=args.val_limit,
        )
    except ValueError as err:
        raise SystemExit(str(err)) from err
    print(f"metrics: {out / 'metrics.json'}, {out / 'metrics.csv'}; plot: {out / 'accuracy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
