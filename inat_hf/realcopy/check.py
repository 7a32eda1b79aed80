"""``inat-fl check DATA_DIR``: a preflight of a copy of iNat 2021 that reads little and says what is wrong.

:func:`check_data` finds the metadata files (name, size, version token), loads them and compares their counts
with the official ones (:data:`OFFICIAL_COUNTS`; for the synthetic replica, with its scale's), each train pool
with its own (``train``: images, species, users; ``train_mini``: images, species, images per species), cross-checks
the per-user CSV when there is one, fetches and decodes a sample of images spread over the users (so over
the ``user`` clients) with the measured rate and a projected time for the whole prepare, and turns
credential and permission errors into a redacted reason with the fix. The report is ``ok`` only when no
problem was found; :meth:`CheckReport.to_dict` is the ``--json`` output.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from inat_hf import storage
from inat_hf.errors import InatError, StorageAuthError, StorageNotFoundError
from inat_hf.manifest import user_codes
from inat_hf.manifest.examples import check_image
from inat_hf.metadata import is_file_url, load_metadata
from inat_hf.metadata.users import cross_check_user_table, read_user_table
from inat_hf.schema import TRAIN_SPLITS
from inat_hf.source import Source

OFFICIAL_COUNTS = {
    "train images": 2_686_843,
    "train species": 10_000,
    "train users": 158_873,
    "train_mini images": 500_000,
    "train_mini species": 10_000,
    "train_mini per-species min": 50,
    "train_mini per-species max": 50,
    "val images": 100_000,
}
"""The counts of the official iNat 2021 metadata (visipedia/inat_comp 2021 README), each train pool against
its own: ``train_mini`` is 50 images of each of the 10,000 species. No count of ``train_mini``'s users is
published: it is shown, not compared."""
_SPLIT_FILES = [
    f"{s}{x}" for s in ("train", "train_mini", "val", "public_test") for x in (".json", ".json.gz", ".json.tar.gz")
]
METADATA_NAMES = (*_SPLIT_FILES, "training_image_info.csv", "train_mini_image_info.csv")
"""The metadata files looked for, in the order :func:`inat_hf.metadata.load_metadata` prefers them."""
USERS_CSV = "images_and_categories_per_users.csv"
"""The per-user table that ``inat-fl stats`` writes."""
USERS_CSV_NAMES = ("training_images_and_categories_per_users.csv", USERS_CSV)
"""Per-user tables cross-checked when present (the first: the name in the known Azure copy)."""
DEFAULT_SAMPLE = 200
REFERENCE_WORKERS = (8, 32)
"""Dask worker counts the projection is shown for."""
_REPLICA = re.compile(rb"SYNTHETIC replica of iNaturalist 2021 \(inaturalist-fl sample, scale=(\w+), seed=(\d+)\)")
_AUTH_FIX = (
    "check the credentials: AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with "
    "AZURE_STORAGE_SAS_TOKEN / AZURE_STORAGE_ACCOUNT_KEY (or -o/--image-option account_name=... with a "
    "credential from the environment); a SAS needs read and list permission on the container"
)


@dataclass
class Problem:
    """One thing that is wrong, with the fix."""

    area: str
    message: str
    fix: str


@dataclass
class CheckReport:
    """What :func:`check_data` found; ``ok`` when ``problems`` is empty."""

    data_dir: str
    images_dir: str
    reference: str = "official iNat 2021"
    files: list[dict[str, Any]] = field(default_factory=list)
    counts: list[dict[str, Any]] = field(default_factory=list)
    users_csv: str = "not present"
    images: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def problem(self, area: str, message: str, fix: str) -> None:
        """Record a problem."""
        self.problems.append(Problem(area, message, fix))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (the ``--json`` output)."""
        return {**asdict(self), "ok": self.ok}

    def format(self) -> str:
        """The report for people."""
        lines = [f"data_dir:   {self.data_dir}", f"images_dir: {self.images_dir}", "", "metadata files:"]
        lines += [f"  {f['name']:<32} {f['size']:>15,} bytes  version {f['token']}" for f in self.files] or ["  none"]
        lines.append(f"\ncounts (against the {self.reference}):")
        for c in self.counts:
            if c["expected"] is None:
                lines.append(f"  {c['what']:<26} {c['found']:>12,}  (no published count: shown, not compared)")
                continue
            mark = "ok" if c["ok"] else "DIFFERS"
            lines.append(f"  {c['what']:<26} {c['found']:>12,}  expected {c['expected']:>12,}  {mark}")
        lines.append(f"\nper-user CSV: {self.users_csv}")
        if self.images:
            i = self.images
            lines.append(
                f"\nimages: {i['decoded']}/{i['sampled']} sampled images fetched and decoded "
                f"({i['missing']} missing, {i['corrupt']} corrupt) in {i['seconds']:.2f} s: {i['rate']:,.1f} images/s"
            )
            if i.get("projected_seconds") is not None:
                workers = ", ".join(f"{_duration(t)} with {w} workers" for w, t in i["dask_seconds"].items())
                lines.append(
                    f"  projected prepare of {i['total_images']:,} images (fetch and decode at this rate): "
                    f"{_duration(i['projected_seconds'])} on this machine; with Dask at this rate per worker, "
                    f"{workers}"
                )
        if self.problems:
            lines.append(f"\n{len(self.problems)} problem(s):")
            lines += [f"  [{p.area}] {p.message}\n      fix: {p.fix}" for p in self.problems]
        else:
            lines.append("\nno problem found")
        return "\n".join(lines)


def check_data(
    data_dir: Source | str,
    *,
    images_dir: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    image_storage_options: Mapping[str, Any] | None = None,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
) -> CheckReport:
    """Check a copy of iNat 2021 before a long prepare (see the module docstring).

    Parameters
    ----------
    data_dir : Source or str
        Where the data is (:class:`~inat_hf.source.Source`), or the metadata: a data folder or one metadata
        file (any fsspec URL), which makes a Source with the three arguments below.
    images_dir : str, optional
        The images, when apart from the metadata (default: beside it).
    storage_options, image_storage_options : mapping, optional
        fsspec options (credentials) of ``data_dir`` and of ``images_dir`` (default: ``storage_options``).
    sample : int
        Images to fetch and decode, spread over the users (0: none).
    seed : int
        Seeds the choice of the sampled images.

    Returns
    -------
    CheckReport
        Never raises for a storage or metadata problem: it is recorded in ``problems``.
    """
    where = Source.of(data_dir, storage_options, images_dir, image_storage_options)
    report = CheckReport(data_dir=where.redact(where.data_dir), images_dir=where.redact(where.images_url))
    try:
        report.data_dir = where.metadata.url
        images = _check_metadata(where.metadata, report)
        images_loc = where.images
        report.images_dir = images_loc.url
    except InatError as err:
        _record(report, "metadata", err)
        return report
    if images is not None and sample > 0:
        try:
            _check_images(images_loc, images, sample, seed, report)
        except InatError as err:
            _record(report, "images", err)
    return report


def _record(report: CheckReport, area: str, err: InatError) -> None:
    """A storage or metadata error as a problem with its fix (messages are redacted at the source)."""
    if isinstance(err, StorageAuthError):
        report.problem("credentials", str(err), _AUTH_FIX)
    elif isinstance(err, StorageNotFoundError):
        report.problem(area, str(err), "check the URL: container, prefix and spelling")
    else:
        report.problem(area, str(err), "see the message; `inat-fl metadata URL` loads one file and says more")


def _check_metadata(source: storage.Location, report: CheckReport) -> pa.Table | None:
    """List, load and count the metadata; return the train pool and val rows (``None``: nothing to sample)."""
    if is_file_url(source.root):
        name = source.root.rsplit("/", 1)[-1]
        present = {name: storage.file_token(source)}
        folder, loaded = source.parent(), [name]
    else:
        present, folder = storage.list_names(source), source
        loaded = [n for n in METADATA_NAMES if n in present]
    for name in loaded:
        token = present[name]
        report.files.append({"name": name, "size": int(token.split(":", 1)[0]), "token": token.split(":", 1)[1]})
    splits = {}
    for name in loaded:
        split = _split_of(name)
        if split not in splits:  # the first file of a split wins, as load_metadata picks it
            splits[split] = name
    if not splits:
        report.problem(
            "metadata",
            f"{source.url}: no metadata file found (looked for {', '.join(METADATA_NAMES)})",
            "point DATA_DIR to the folder holding train.json/val.json (or training_image_info.csv)",
        )
        return None
    expected = _reference(folder, splits, report)
    tables = {split: load_metadata(folder.child(name)) for split, name in splits.items()}
    for split, table in tables.items():
        if split == "public_test":
            continue
        _count(report, f"{split} images", table.num_rows, expected)
        if split in TRAIN_SPLITS:  # each train pool against its own counts
            _count_pool(report, split, table, expected)
    pool = tables.get("train", tables.get("train_mini"))
    users_csv = next((n for n in USERS_CSV_NAMES if n in present), None)
    if users_csv is not None and pool is not None:
        lines = cross_check_user_table(pool, read_user_table(folder.child(users_csv)))
        report.users_csv = "agrees with the metadata" if not lines else f"{len(lines)} difference(s)"
        if lines:
            report.problem("per-user CSV", f"{users_csv} disagrees with the metadata: " + "; ".join(lines[:5]),
                           "regenerate it with `inat-fl stats` or check which metadata it was made from")  # fmt: skip
    prepared = [t for t in (pool, tables.get("val")) if t is not None]  # what a default prepare reads
    columns = [t.select(["image_id", "file_name", "user"]) for t in prepared]
    return pa.concat_tables(columns).unify_dictionaries() if columns else None


def _split_of(name: str) -> str:
    if name.endswith(".csv"):
        return "train_mini" if name.startswith("train_mini") else "train"
    return name.split(".", 1)[0]


def _reference(folder: storage.Location, splits: Mapping[str, str], report: CheckReport) -> dict[str, int]:
    """The counts to expect: the official ones, or a synthetic replica's (named in its JSON ``info``), whose
    ``train_mini`` users are known exactly too.
    """
    name = next((n for n in splits.values() if n.endswith(".json")), None)
    if name is None:
        return OFFICIAL_COUNTS
    with storage.open_binary(folder, name) as stream:
        head = stream.read(4096)
    match = _REPLICA.search(head)
    if match is None:
        return OFFICIAL_COUNTS
    from inat_hf.replica import build_replica  # only for a replica: its counts, exactly

    scale, seed = match.group(1).decode(), int(match.group(2))
    replica = build_replica(scale, seed)
    counts = replica.counts
    report.reference = f"synthetic replica (scale {scale!r}, seed {seed})"
    per_species = counts.train_mini_images // counts.species  # the same for every species, as in the official one
    return {
        "train images": counts.train_images,
        "train species": counts.species,
        "train users": counts.users,
        "train_mini images": counts.train_mini_images,
        "train_mini species": counts.species,
        "train_mini per-species min": per_species,
        "train_mini per-species max": per_species,
        "train_mini users": pc.count_distinct(replica.train_mini["rights_holder"]).as_py(),
        "val images": counts.val_images,
    }


def _count(report: CheckReport, what: str, found: int, expected: Mapping[str, int], detail: str = "") -> None:
    """Record one count; a count without a reference (``expected`` lacks it) is shown, not compared."""
    want = expected.get(what)
    report.counts.append({"what": what, "found": int(found), "expected": want, "ok": want is None or found == want})
    if want is not None and found != want:
        report.problem(
            "counts",
            f"{what}: {found:,} found, {want:,} expected ({found - want:+,}){detail}",
            "the copy is incomplete or not the 2021 release: fetch the metadata again (inat2021 *.json.tar.gz)",
        )


def _count_pool(report: CheckReport, split: str, table: pa.Table, expected: Mapping[str, int]) -> None:
    """Species and users of one train pool; for ``train_mini``, also its images per species (50 each)."""
    species = pc.value_counts(pc.drop_null(table["species_id"]))
    ids, per = species.field("values").to_numpy(), species.field("counts").to_numpy()
    _count(report, f"{split} species", ids.size, expected)
    codes = user_codes(table)
    _count(report, f"{split} users", int(np.unique(codes[codes >= 0]).size), expected)
    if f"{split} per-species min" not in expected or not ids.size:
        return
    order = np.argsort(ids)
    ids, per = ids[order], per[order]
    for what, bound in (("min", int(per.min())), ("max", int(per.max()))):
        want = expected[f"{split} per-species {what}"]
        odd = np.flatnonzero(per < want if what == "min" else per > want)[:5]
        detail = "; e.g. " + ", ".join(f"species {ids[i]} has {per[i]:,}" for i in odd) if odd.size else ""
        _count(report, f"{split} per-species {what}", bound, expected, detail)


def sample_rows(images: pa.Table, sample: int, seed: int = 0) -> pa.Table:
    """``sample`` rows spread over the users: one image of each of as many users as possible, then more.

    Users are taken in a seeded random order, and each user's images too (vectorised).
    """
    rng = np.random.default_rng(seed)
    users = user_codes(images)
    order = np.lexsort((rng.random(images.num_rows), users))
    ranks = np.empty(images.num_rows, dtype=np.int64)
    sorted_users = users[order]
    first = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    ranks[order] = np.arange(images.num_rows) - np.repeat(first, np.diff(np.r_[first, images.num_rows]))
    picked = np.lexsort((rng.random(images.num_rows), ranks))[: min(sample, images.num_rows)]
    return images.take(pa.array(np.sort(picked)))


def _check_images(loc: storage.Location, images: pa.Table, sample: int, seed: int, report: CheckReport) -> None:
    rows = sample_rows(images, sample, seed)
    names = rows["file_name"].to_pylist()
    start = time.perf_counter()
    fetched = storage.fetch_many(loc, names, on_error="return")
    missing, corrupt = [], []
    for name, data in zip(names, fetched, strict=True):
        if isinstance(data, StorageAuthError):
            raise data
        if not isinstance(data, bytes):
            missing.append(name)
        elif (reason := check_image(data) or _decode(data)) is not None:
            corrupt.append(f"{name} ({reason})")
    seconds = time.perf_counter() - start
    decoded = len(names) - len(missing) - len(corrupt)
    rate = len(names) / seconds if seconds > 0 else 0.0
    total = images.num_rows
    projected = total / rate if rate else None
    report.images = {
        "sampled": len(names),
        "decoded": decoded,
        "missing": len(missing),
        "corrupt": len(corrupt),
        "seconds": seconds,
        "rate": rate,
        "total_images": total,
        "projected_seconds": projected,
        "dask_seconds": {str(w): projected / w for w in REFERENCE_WORKERS} if projected is not None else {},
        "examples": (missing + corrupt)[:10],
    }
    if missing:
        report.problem("images", f"{len(missing)} of {len(names)} sampled images are missing under {loc.url}, e.g. "
                       f"{missing[:3]}", "point --images-dir (builder: images_dir) at the folder holding train/ and "
                       "val/, or extract the missing archive with `inat-fl extract`")  # fmt: skip
    if corrupt:
        report.problem("images", f"{len(corrupt)} of {len(names)} sampled images are corrupt, e.g. {corrupt[:3]}",
                       "fetch them again, or prepare with on_bad_image='skip' (rows left out, counted)")  # fmt: skip


def _duration(seconds: float) -> str:
    """``seconds`` for people: s, min or h."""
    if seconds < 120:
        return f"{seconds:,.1f} s"
    return f"{seconds / 60:,.1f} min" if seconds < 7200 else f"{seconds / 3600:,.1f} h"


def _decode(data: bytes) -> str | None:
    """Why the image cannot be decoded in full (``None`` if it can)."""
    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        return f"cannot be decoded: {err}"
    return None
