"""``inat-fl demo``: the main job on the embedded default, end to end on local disk (:func:`run_demo`).

Writes the ``small`` synthetic replica (unless it is already there), prepares a config with the
``datasets`` builder, and prints the client table (clients, examples, size quantiles, label skew) and
where the plots went. Everything lands under one folder (default ``./inat-fl-demo``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inat_hf.cli import common


@dataclass(frozen=True)
class DemoResult:
    """What the demo made: the prepared split sizes and the files it wrote."""

    replica: Path
    cache_dir: Path
    split_sizes: dict[str, int]
    num_clients: int
    plots: tuple[Path, ...]
    seconds: float


def run_demo(
    out: str | Path = "inat-fl-demo",
    *,
    scale: str = "small",
    config_name: str = "family_user",
    num_proc: int = 2,
    overrides: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Write the replica, prepare ``config_name`` from it, and report the clients.

    Parameters
    ----------
    out : str or Path
        Folder for the replica (``replica/``), the datasets cache (``cache/``) and the plots (``stats/``).
    scale : str
        Replica scale (``tiny``, ``small``; ``full`` is metadata-only here).
    config_name : str
        Builder config, ``{rank}_{scheme}``.
    num_proc : int
        Processes for ``download_and_prepare``.
    overrides : dict, optional
        Config fields to override (``{"min_client_size": 5}``).
    say : callable
        Where progress lines go.
    """
    from inat_hf.analysis.plots import plot_client_sizes, plot_label_heatmap
    from inat_hf.analysis.stats import compute_stats, format_stats
    from inat_hf.federated.clients import ClientData
    from inat_hf.replica import write_sample

    start = time.perf_counter()
    out = Path(out).resolve()
    replica = out / "replica"
    if not (replica / "train.json").exists():
        say(f"writing the {scale!r} synthetic replica to {replica} ...")
        counts = write_sample(str(replica), scale=scale, metadata_only=scale == "full", progress=True)
        say(f"  {counts.train_images:,} train + {counts.val_images:,} val images, {counts.users:,} users")
    else:
        say(f"using the replica already in {replica}")
    overrides = dict(overrides or {})
    if scale == "full":
        overrides.setdefault("with_images", False)
    from inaturalist_fl import INaturalistFL  # the builder's face: its cache is named inaturalist_fl

    builder = INaturalistFL(config_name=config_name, data_dir=str(replica), cache_dir=str(out / "cache"), **overrides)
    say(f"preparing {builder.config.name} with num_proc={num_proc} ...")
    builder.download_and_prepare(num_proc=num_proc)
    sizes = {split: info.num_examples for split, info in (builder.info.splits or {}).items()}
    train = ClientData.from_builder(builder, "train")
    stats = compute_stats(builder.manifest, builder.config.name)
    plots_dir = out / "stats"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = (plots_dir / "client_sizes.png", plots_dir / "label_heatmap.png")
    plot_client_sizes(builder.manifest, plots[0], config_name=builder.config.name)
    plot_label_heatmap(builder.manifest, plots[1], config_name=builder.config.name)
    say("")
    say(format_stats(stats))
    say("")
    say("prepared splits: " + ", ".join(f"{name} {count:,}" for name, count in sizes.items()))
    largest = int(train.client_ids[train.sizes.argmax()])
    say(
        f"ClientData: {train.num_clients:,} train clients; the largest, client {largest}, has "
        f"{len(train.client(largest)):,} examples"
    )
    say("plots: " + ", ".join(str(p) for p in plots))
    seconds = time.perf_counter() - start
    say(f"done in {seconds:.0f} s; prepared dataset cached under {out / 'cache'}")
    return DemoResult(replica, out / "cache", sizes, train.num_clients, plots, seconds)


def add_parser(sub: Any) -> None:
    """Register ``demo``."""
    parser = sub.add_parser(
        "demo",
        help="the main job: write the small replica, prepare a config, report clients",
        parents=[common.config_overrides()],
    )
    parser.add_argument("--out", default="inat-fl-demo", help="folder for everything (default: ./inat-fl-demo)")
    parser.add_argument("--scale", default="small", help="replica scale: tiny, small (default) or full")
    parser.add_argument("--config", default="family_user", help="builder config {rank}_{scheme}")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo."""
    from inat_hf.config import config_for

    overrides = common.parse_overrides(args.set)
    config_for(args.config, **overrides)  # a bad name or field fails now, before the replica is written
    run_demo(args.out, scale=args.scale, config_name=args.config, num_proc=args.num_proc, overrides=overrides)
    return 0
