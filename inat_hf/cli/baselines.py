"""``inat-fl baselines``: the baselines grid (data configs x algorithms under one budget), resumable per cell."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from inat_hf.cli import common

BUDGET_HELP = {
    "rounds": "federated rounds",
    "clients_per_round": "clients Flower samples per round",
    "local_epochs": "epochs of each client on its rows per round",
    "max_local_steps": "at most this many steps per client and round (0: no limit)",
    "lr": "the clients' (and the central run's) learning rate",
    "central_epochs": "epochs of the central run over the pooled train split",
    "fedavgm_server_lr": "FedAvgM's server learning rate",
    "server_momentum": "FedAvgM's server momentum",
    "proximal_mu": "FedProx's mu",
    "adaptive_server_lr": "FedAdam's / FedYogi's eta",
    "tau": "FedAdam's / FedYogi's adaptivity",
    "test_fraction": "each client's holdout: this fraction of its rows (the config's test split)",
    "val_limit": "rows of the validation split every model is evaluated on (seeded subset; 0: all)",
    "model": "tiny or base (a random ViT of that shape), or a checkpoint name or path",
}


def add_parser(sub: Any) -> None:
    """Register ``baselines``."""
    from inat_hf.train.baselines.grid import ALGORITHMS, DEFAULT_ALGORITHMS, DEFAULT_DATA, Budget  # no torch

    data = [cell.text for cell in DEFAULT_DATA]

    parser = sub.add_parser(
        "baselines",
        help="train every algorithm on every config under one budget: results.json, a table, curves",
        description="Central training and Flower's strategies (a Flower simulation, one node per client) on "
        "each data config, under one budget, seeds fixed. Writes OUT/results.json, OUT/results.md and "
        "OUT/curves/*.png; a rerun skips the cells already done. Put the table in a dataset card with "
        "inat-fl card ... --baselines OUT/results.json. Needs the train and flower extras.",
        parents=[common.data_location(), common.cache()],
    )
    parser.add_argument("--out", required=True, help="local folder of results.json, results.md, curves/, cells/")
    parser.add_argument(
        "--configs", nargs="+", default=data, metavar="CONFIG[:FIELD=VALUE,...]",
        help=f"data configs (default: {' '.join(data)})",
    )  # fmt: skip
    parser.add_argument(
        "--algorithms", nargs="+", default=list(DEFAULT_ALGORITHMS), metavar="ALGORITHM",
        help=f"{', '.join(ALGORITHMS)} (default: {' '.join(DEFAULT_ALGORITHMS)})",
    )  # fmt: skip
    parser.add_argument("--measured-on", help="what the data is, for the table and the card (default: the data folder)")
    budget = parser.add_argument_group("the budget (the same for every cell)")
    for f in dataclasses.fields(Budget):
        default = f.default
        kind = type(default) if not isinstance(default, bool) else bool
        budget.add_argument(
            f"--{f.name.replace('_', '-')}", type=kind, default=default,
            help=f"{BUDGET_HELP.get(f.name, f.name.replace('_', ' '))} (default: {default})",
        )  # fmt: skip
    parser.add_argument("--client-cpus", type=float, default=1.0, help="Ray CPUs per simulated client (default 1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the grid and print where the results are."""
    from inat_hf.train.baselines import Budget, DataCell, Grid, run_grid

    if args.image_option:
        raise ValueError(
            "--image-option: the Flower run config carries one set of storage options (-o) for the data and "
            "its images; give the images' options with -o"
        )
    source = common.location(args)
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(Budget)}
    grid = Grid([DataCell.parse(text) for text in args.configs], tuple(args.algorithms), Budget(**fields))
    grid.cells()  # an unknown algorithm stops here, before any training
    results = run_grid(
        grid,
        source.data_dir,
        args.out,
        measured_on=args.measured_on or source.data_dir,
        images=args.images_dir,
        storage_options=common.parse_storage_options(args.option),
        cache_dir=args.cache_dir,
        client_resources={"num_cpus": args.client_cpus},
        progress=sys.stderr,
    )
    print(f"baselines: {len(results['cells'])} cells; {args.out}/results.json, results.md, curves/")
    return 0
