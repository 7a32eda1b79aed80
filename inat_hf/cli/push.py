"""``inat-fl push``: upload an export folder to the Hugging Face Hub (token: ``HF_TOKEN``)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Register ``push``."""
    parser = sub.add_parser("push", help="upload an export folder to the Hugging Face Hub (token: HF_TOKEN)")
    parser.add_argument("repo_id", help="namespace/name of the dataset repository")
    parser.add_argument("--folder", required=True, help="the export folder")
    parser.add_argument("--public", action="store_true", help="make the repository public (default: private)")
    parser.add_argument("--allow-images", action="store_true", help="allow Parquet files with image bytes")
    parser.add_argument("--dry-run", action="store_true", help="check the folder and list what would be uploaded")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the folder, then upload it (or list it, with ``--dry-run``)."""
    from inat_hf.hub.push import plan_push, push

    plan = plan_push(args.folder, allow_images=args.allow_images)
    print(
        f"{len(plan.files)} files, {plan.total_bytes / 2**20:.1f} MiB; configs: "
        + ", ".join(f"{name} ({', '.join(splits)})" for name, splits in plan.configs.items())
    )
    if args.dry_run:
        print("\n".join(plan.files))
        return 0
    print(push(args.folder, args.repo_id, private=not args.public, allow_images=args.allow_images))
    return 0
