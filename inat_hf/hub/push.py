"""Uploading an export folder to the Hugging Face Hub.

``push(folder, repo_id)`` checks the folder first (a valid dataset card whose YAML ``configs:`` point to
files that exist, no image bytes unless allowed, no secret in any text file) and then uploads it with
``huggingface_hub`` (token from ``HF_TOKEN`` or the saved login). ``plan_push`` does the checks and
returns what would be uploaded, without touching the network.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from huggingface_hub import DatasetCard

from inat_hf.storage import redact


@dataclass(frozen=True)
class PushPlan:
    """What an upload would send: files (relative, sorted), total bytes, configs and their splits."""

    folder: Path
    files: tuple[str, ...]
    total_bytes: int
    configs: dict[str, list[str]]


def plan_push(folder: str | Path, *, allow_images: bool = False) -> PushPlan:
    """Check an export folder and list what :func:`push` would upload.

    Raises
    ------
    ValueError
        No README.md, invalid card metadata, a config whose data_files match no file, image bytes in a
        Parquet file without ``allow_images``, or a secret-looking string in a text file.
    """
    root = Path(folder)
    card_path = root / "README.md"
    if not card_path.is_file():
        raise ValueError(f"{root}: no README.md (the dataset card); export with `inat-fl export` first")
    text = card_path.read_text(encoding="utf-8")
    if redact(text) != text:
        raise ValueError(f"{card_path}: holds something that looks like a secret; refusing to upload")
    card = DatasetCard(text)
    configs_meta = card.data.to_dict().get("configs") or []
    if not configs_meta:
        raise ValueError(f"{card_path}: the YAML has no `configs:`; regenerate it with `inat-fl export`")
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts)
    configs: dict[str, list[str]] = {}
    for entry in configs_meta:
        splits = []
        for data in entry.get("data_files", []):
            matches = [f for f in files if fnmatch.fnmatch(f, data["path"])]
            if not matches:
                raise ValueError(
                    f"config {entry['config_name']!r} split {data['split']!r}: no file matches "
                    f"{data['path']!r} in {root}"
                )
            if not allow_images:
                for match in matches:
                    if "image" in pq.read_schema(root / match).names:
                        raise ValueError(
                            f"{match} holds image bytes; the iNat terms forbid redistributing the "
                            "images (pass allow_images=True only for a private repository)"
                        )
            splits.append(data["split"])
        configs[entry["config_name"]] = splits
    total = sum((root / f).stat().st_size for f in files)
    return PushPlan(folder=root, files=tuple(files), total_bytes=total, configs=configs)


def push(
    folder: str | Path, repo_id: str, *, private: bool = True, allow_images: bool = False, token: str | None = None
) -> str:
    """Upload an export folder as a dataset repository; return the commit URL.

    The token comes from ``token``, else ``HF_TOKEN`` or the saved ``huggingface-cli login``.
    """
    from huggingface_hub import HfApi

    plan = plan_push(folder, allow_images=allow_images)
    if allow_images and not private:
        raise ValueError("image bytes may only go to a private repository (the iNat terms forbid redistribution)")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id, repo_type="dataset", folder_path=str(plan.folder), allow_patterns=list(plan.files)
    )
    return str(info)
