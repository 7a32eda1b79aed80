"""Uploading an export folder to the Hugging Face Hub.

``push(folder, repo_id)`` checks the folder first (a valid dataset card whose YAML ``configs:`` point to
files that exist, no image bytes unless allowed, no secret in any text file) and then uploads it with
``huggingface_hub`` (token from ``HF_TOKEN`` or the saved login). ``plan_push`` does the checks and
returns what would be uploaded, without touching the network. ``prepare_report.json`` (the run's log: local
paths, timings, skipped rows) stays local, and so does the rows copy a failed prepare leaves
(``.inat-fl-prepare-*.arrow``: manifest rows with the raw ``user``, :mod:`inat_hf.prepare.rows`).

**Images never go public.** With ``allow_images`` the repository's visibility is read from the Hub before
anything is uploaded: an existing public repository (or one whose visibility the Hub does not say) is
refused with :class:`PublicRepositoryError`, a missing one is created private and read back, so no image
byte is sent to a repository that is not private. (The Hub cannot lock a visibility: someone who makes the
repository public during the upload still publishes what it holds.)
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
from huggingface_hub import DatasetCard

from inat_hf.errors import InatError
from inat_hf.prepare.report import REPORT_FILE
from inat_hf.prepare.rows import is_copy
from inat_hf.storage import redact

if TYPE_CHECKING:
    from huggingface_hub import HfApi


class PublicRepositoryError(InatError, ValueError):
    """``push`` with image bytes to a repository that is public (or not known to be private)."""


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
    files = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file()
        and ".cache" not in p.parts
        and p.relative_to(root).as_posix() != REPORT_FILE
        and not (p.parent == root and is_copy(p.name))  # a failed prepare's rows copy: raw user names
    )
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


def repo_is_private(api: HfApi, repo_id: str) -> bool | None:
    """Whether the dataset repository ``repo_id`` is private: True, False, or None when it does not exist
    (or is not visible to this token). A visibility the Hub does not report counts as not private.
    """
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = api.repo_info(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return None
    return info.private is True


def _refuse_public(api: HfApi, repo_id: str, private: bool | None) -> PublicRepositoryError:
    """The error for image bytes bound to a repository that is not private: names it and the fix."""
    url = f"{api.endpoint.rstrip('/')}/datasets/{repo_id}"
    state = "is public" if private is False else "cannot be read back after it was created"
    return PublicRepositoryError(
        redact(
            f"{url} {state}; --allow-images uploads image bytes, which the iNat terms forbid redistributing, so "
            f"nothing was uploaded. Make the repository private first ({url}/settings, or "
            f"HfApi().update_repo_settings({repo_id!r}, repo_type='dataset', private=True)), or push an export "
            "without images (`inat-fl export` without --with-images, then push without --allow-images)"
        )
    )


def push(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = True,
    allow_images: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Upload an export folder as a dataset repository; return the commit URL.

    A missing repository is created (private unless ``private=False``). With ``allow_images`` the
    repository must be private: its visibility is checked on the Hub before any upload.

    Parameters
    ----------
    folder : str or Path
        The export folder (checked by :func:`plan_push`).
    repo_id : str
        ``namespace/name`` of the dataset repository.
    private : bool
        Visibility of a repository this call creates; an existing repository keeps its own.
    allow_images : bool
        Allow Parquet files with image bytes; only to a private repository.
    token : str, optional
        The Hub token; else ``HF_TOKEN`` or the saved ``hf auth login``.
    endpoint : str, optional
        The Hub's URL; else ``HF_ENDPOINT`` or https://huggingface.co.

    Raises
    ------
    ValueError
        A folder :func:`plan_push` refuses, or ``allow_images`` with ``private=False``.
    PublicRepositoryError
        ``allow_images`` and the repository is public (or not reported private once created).
    """
    from huggingface_hub import HfApi

    plan = plan_push(folder, allow_images=allow_images)
    if allow_images and not private:
        raise ValueError(
            f"{repo_id}: image bytes may only go to a private repository (the iNat terms forbid redistributing "
            "the images); drop --public, or push an export without images"
        )
    api = HfApi(token=token, endpoint=endpoint)
    is_private = repo_is_private(api, repo_id)
    if is_private is None:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if allow_images:  # read it back: a repository created meanwhile, or an organisation's rule, may differ
            is_private = repo_is_private(api, repo_id)
    if allow_images and is_private is not True:
        raise _refuse_public(api, repo_id, is_private)
    info = api.upload_folder(
        repo_id=repo_id, repo_type="dataset", folder_path=str(plan.folder), allow_patterns=list(plan.files)
    )
    return str(info)
