"""``inat-fl card``: regenerate the dataset card (``README.md`` for the Hub) and its figure."""

from __future__ import annotations

import argparse
import time
from typing import Any

from inat_hf.cli import common


def add_parser(sub: Any) -> None:
    """Register ``card``."""
    parser = sub.add_parser(
        "card",
        help="regenerate the dataset card (README.md for the Hub) and its figure",
        parents=[common.data_location(), common.config_overrides(), common.cache()],
    )
    parser.add_argument(
        "--config", action="append", help="config(s) of the card (default: those of the committed card)"
    )
    parser.add_argument("--out", default="dataset_card.md", help="card file (default: dataset_card.md)")
    parser.add_argument("--assets", default=None, help="folder of the figure (default: assets/ next to --out)")
    parser.add_argument("--replica-note", default=None, help="say that the numbers come from the synthetic replica")
    parser.add_argument(
        "--baselines",
        metavar="RESULTS_JSON",
        help="a results.json of inat-fl baselines: its table and curves go in the card (default: none measured)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the card and its figure (from the metadata; no image is read)."""
    from pathlib import Path

    from inat_hf.config import config_for
    from inat_hf.hub.card import CARD_CONFIGS, card_from_data

    overrides = common.parse_overrides(args.set)
    configs = [config_for(name, **overrides) for name in args.config or CARD_CONFIGS]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    source = common.location(args)
    start = time.perf_counter()
    from inat_hf.analysis.baselines import load_results

    baselines = load_results(args.baselines) if args.baselines else None
    text = card_from_data(
        source,
        configs,
        out_dir=out.parent,
        cache_dir=args.cache_dir,
        replica_note=args.replica_note,
        assets_dir=args.assets,
        baselines=baselines,
    )
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(text):,} characters) in {time.perf_counter() - start:.1f} s")
    return 0
