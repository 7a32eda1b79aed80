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

It runs the Flower App of ``flower_app/`` (the same ``ClientApp`` and ``ServerApp``,
:mod:`inat_hf.train.flower.apps` and :mod:`inat_hf.train.flower.server`) through
``flwr.simulation.run_simulation`` (Ray backend) in this process, with the run config that these options
make (the keys of ``[tool.flwr.app.config]``; ``flwr run flower_app`` is the other way to run it). Node
``partition-id`` ``i`` trains the ``i``-th client of the ``train`` split in client-id order, reading that
client's rows only, for ``--local-epochs``, and returns its weights and example count; the server runs
Flower's ``FedAvg`` (``FedAvgM`` with ``--server-momentum`` or ``--server-lr``) over ``--clients-per-round``
nodes per round for ``--rounds`` rounds and evaluates the global model on the ``validation`` split before
training and after every round. Each client gets ``--client-cpus`` CPUs and ``--client-gpus`` GPUs of Ray
(default: 1 on CUDA, else 0). Outputs in ``--out``, as ``scripts/finetune_vit.py`` writes them:
``metrics.json``, ``metrics.csv``, ``accuracy.png``. Needs the ``flower`` extra.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch

from inat_hf.train.flower.nodedata import client_ids
from inat_hf.train.flower.runconfig import run_source
from inat_hf.train.flower.server import run_flower_simulation
from inat_hf.train.options import (  # the same data, model and optimisation options as finetune_vit.py
    add_data_arguments,
    add_model_arguments,
    add_optimisation_arguments,
)
from inat_hf.train.training import seed_everything


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


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The Flower App's run config (the keys of ``flower_app/pyproject.toml``) that the options name."""
    size = "tiny" if args.tiny else args.size
    config: dict[str, Any] = {
        "config": args.config,
        "set": " ".join(args.set),
        "data-dir": args.data_dir or "",
        "export": args.export or "",
        "images": args.images or "",
        "storage-options": " ".join(args.option),
        "cache-dir": args.cache_dir or "",
        "num-proc": args.num_proc,
        "model": size or args.model,
        "new-head": args.new_head,
        "strategy": "fedavgm" if args.server_momentum or args.server_lr != 1.0 else "fedavg",
        "server-lr": args.server_lr,
        "server-momentum": args.server_momentum,
        "proximal-mu": 0.01,  # FedProx's; unused by FedAvg and FedAvgM
        "tau": 0.001,  # FedAdam's and FedYogi's; unused here
        "rounds": args.rounds,
        "num-nodes": args.num_supernodes or 0,
        "clients-per-round": args.clients_per_round,
        "node-wait-seconds": 60.0,  # the simulated nodes are there from the start
        "local-epochs": args.local_epochs,
        "max-local-steps": args.max_local_steps or 0,
        "batch-size": args.batch_size,
        "lr": args.lr,
        "optimizer": args.optimizer,
        "weight-decay": args.weight_decay,
        "workers": args.workers,
        "eval-batch-size": args.eval_batch_size,
        "val-limit": args.val_limit or 0,
        "seed": args.seed,
        "out": args.out,
    }
    if not config["num-nodes"]:  # every client of the train split a node
        config["num-nodes"] = int(client_ids(run_source(config)).size)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    gpus = args.client_gpus if args.client_gpus is not None else (1.0 if torch.cuda.is_available() else 0.0)
    try:
        run_flower_simulation(
            run_config(args),
            client_resources={"num_cpus": args.client_cpus, "num_gpus": gpus},
            ray_init_args={"num_cpus": args.ray_cpus} if args.ray_cpus else None,
        )
    except ValueError as err:
        raise SystemExit(str(err)) from err
    print(f"metrics: {args.out}/metrics.json, {args.out}/metrics.csv; plot: {args.out}/accuracy.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
