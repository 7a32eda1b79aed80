"""``inat-fl stats``: partition statistics, plots and the per-user table of a config."""

from __future__ import annotations

import argparse
import time
from typing import Any

from inat_hf.cli import common


def add_parser(sub: Any) -> None:
    """Register ``stats``."""
    parser = sub.add_parser(
        "stats",
        help="partition statistics, plots and the per-user table of a config",
        parents=[common.data_location(), common.config_overrides(), common.cache()],
    )
    parser.add_argument("config", help="config name, e.g. family_user, species_geo1k, order_dirichlet")
    parser.add_argument("--out", required=True, help="local folder for stats.json, the plots and the user CSV")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute and print the statistics; write stats.json, the plots and the per-user CSV (no image is read)."""
    import json
    from pathlib import Path

    from inat_hf import storage
    from inat_hf.analysis.plots import plot_client_sizes, plot_label_heatmap
    from inat_hf.analysis.stats import compute_stats, format_stats
    from inat_hf.config import config_for
    from inat_hf.manifest import load_config_metadata, load_or_build, locate
    from inat_hf.metadata.users import user_table, write_user_table

    config = config_for(args.config, **common.parse_overrides(args.set))
    source = common.location(args).metadata
    out = Path(args.out)
    start = time.perf_counter()
    images = load_config_metadata(source, config)  # once: the per-user table, and the manifest
    manifest = load_or_build(locate(source, config, args.cache_dir), source, images)  # EmptyConfigError: before
    out.mkdir(parents=True, exist_ok=True)  # anything is written
    stats = compute_stats(manifest, config.name)
    print(format_stats(stats))
    report = {**stats.to_dict(), "config_fields": config.fingerprint_fields()}
    local = storage.resolve(str(out))
    storage.write_bytes(local, "stats.json", (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
    plot_client_sizes(manifest, out / "client_sizes.png", config_name=config.name)
    plot_label_heatmap(manifest, out / "label_heatmap.png", config_name=config.name)
    users_csv = out / "images_and_categories_per_users.csv"
    write_user_table(user_table(images), str(users_csv))
    print(f"\nwrote {out / 'stats.json'} and {users_csv.name} in {time.perf_counter() - start:.1f} s")
    print(f"plots: {out / 'client_sizes.png'}\n       {out / 'label_heatmap.png'}")
    return 0
