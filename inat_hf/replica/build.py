"""The replica itself: :func:`build_replica` (in memory) and :func:`write_sample` (the official layout, any
fsspec URL). The model is described in :mod:`inat_hf.replica`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inat_hf import storage
from inat_hf.replica import jpeg_files, json_writer, model
from inat_hf.replica.taxonomy import species_categories as _categories
from inat_hf.taxonomy import RANKS

LICENSES: tuple[dict[str, object], ...] = (
    {"id": 0, "name": "Attribution-NonCommercial License", "url": "http://creativecommons.org/licenses/by-nc/4.0/"},
    {"id": 1, "name": "Attribution License", "url": "http://creativecommons.org/licenses/by/4.0/"},
    {"id": 2, "name": "Attribution-NonCommercial-ShareAlike License", "url": "http://creativecommons.org/licenses/by-nc-sa/4.0/"},
    {"id": 3, "name": "Attribution-ShareAlike License", "url": "http://creativecommons.org/licenses/by-sa/4.0/"},
    {"id": 4, "name": "Attribution-NoDerivs License", "url": "http://creativecommons.org/licenses/by-nd/4.0/"},
    {"id": 5, "name": "Attribution-NonCommercial-NoDerivs License", "url": "http://creativecommons.org/licenses/by-nc-nd/4.0/"},
    {"id": 6, "name": "Public Domain Dedication", "url": "http://creativecommons.org/publicdomain/zero/1.0/"},
)  # fmt: skip
IMAGE_SCHEMA = pa.schema(
    [
        ("id", pa.int64()), ("width", pa.int64()), ("height", pa.int64()), ("file_name", pa.string()),
        ("license", pa.int64()), ("rights_holder", pa.string()), ("date", pa.string()),
        ("latitude", pa.float64()), ("longitude", pa.float64()), ("location_uncertainty", pa.int64()),
        ("category_id", pa.int64()),
    ]
)  # fmt: skip


TINY_SIDE = 32
"""The longer side of the tiny images (``tiny_images=True``, the ``tiny`` scale's default)."""
MAX_IMAGE_SIDE = 4096
"""The largest ``image_side`` accepted."""
MINI_PER_SPECIES = 50
"""Images per species in the official ``train_mini`` (500,000 images for 10,000 species)."""


@dataclass(frozen=True)
class Scale:
    """How big a replica is. Add one to :data:`SCALES` to make a new size available by name.

    ``species_step``: every k-th species id is kept (1 = all 10,000); ``count_scale``: fraction of each
    species' full train count kept (at least 1 image); ``users``: distinct rights holders in train;
    ``val_per_species``: val images per species; ``tiny_images``: default for JPEG sides of at most 32 px
    (:data:`TINY_SIDE`).
    """

    name: str
    species_step: int
    count_scale: float
    users: int
    val_per_species: int
    tiny_images: bool = False

    @property
    def mini_per_species(self) -> int:
        """Images per species in ``train_mini``: 50 at full scale, ``ceil(50 * count_scale)`` below (at least 1)."""
        return max(1, math.ceil(MINI_PER_SPECIES * self.count_scale))

    def __post_init__(self) -> None:
        if not 1 <= self.species_step <= 10_000:
            raise ValueError(f"Scale.species_step must be in 1..10000, got {self.species_step}")
        if not 0 < self.count_scale <= 1:
            raise ValueError(f"Scale.count_scale must be in (0, 1], got {self.count_scale}")
        if self.users < 1 or self.val_per_species < 0:
            raise ValueError("Scale.users must be >= 1 and Scale.val_per_species >= 0")


SCALES: dict[str, Scale] = {
    "full": Scale("full", species_step=1, count_scale=1.0, users=158_873, val_per_species=10),
    "medium": Scale("medium", species_step=25, count_scale=0.25, users=1_600, val_per_species=5, tiny_images=True),
    "small": Scale("small", species_step=100, count_scale=0.1, users=165, val_per_species=3),
    "tiny": Scale("tiny", species_step=500, count_scale=0.025, users=10, val_per_species=2, tiny_images=True),
}


@dataclass(frozen=True)
class SampleCounts:
    """What a test must see after loading a written replica (``jpegs_written`` is 0 for metadata only)."""

    scale: str
    seed: int
    train_images: int
    val_images: int
    users: int  # distinct rights_holder in train
    species: int  # distinct species in train
    rank_counts: dict[str, int]  # distinct names per rank in train, kingdom..species
    train_null_locations: int
    jpegs_written: int = 0
    train_mini_images: int = 0  # the train_mini subset: mini_per_species images of each species
    jpegs_present: int = 0  # JPEGs found complete (a resumed write_sample) and left as they were
    jpeg_bytes: int = 0  # bytes of every JPEG of the replica, written or present


@dataclass(frozen=True)
class Replica:
    """An in-memory replica: official-schema image tables (plus ``category_id``) and their header.

    ``train_mini`` is a subset of ``train`` (the same records: id, user, location, date) with file names
    under ``train_mini/``, as in the official ``train_mini.json``.
    """

    categories: list[dict[str, object]]
    train: pa.Table
    val: pa.Table
    train_mini: pa.Table
    counts: SampleCounts
    licenses: list[dict[str, object]]
    info: dict[str, object]
    seed: int = 0
    annotation_order: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def species_categories() -> list[dict[str, object]]:
    """Return the 10,000 official category records (all 12 fields, id order; cached, fresh copies)."""
    return _categories()


def get_scale(name: str) -> Scale:
    """Return the scale called ``name`` or raise ``ValueError`` naming the choices."""
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; choose from {', '.join(sorted(SCALES))}")
    return SCALES[name]


def _info(scale: Scale, seed: int) -> dict[str, object]:
    return {
        "year": 2021,
        "version": "2021",
        "description": (
            f"SYNTHETIC replica of iNaturalist 2021 (inaturalist-fl sample, scale={scale.name}, seed={seed})"
        ),
        "contributor": "inaturalist-fl (synthetic data; no real observation)",
        "url": "https://github.com/visipedia/inat_comp/tree/master/2021",
        "date_created": "2021-03-01 00:00:00",
    }


def _split_table(
    split: str, first_id: int, species: np.ndarray, user: np.ndarray, users: model.Users,
    side: int | None, streams: list[np.random.Generator],
) -> pa.Table:  # fmt: skip
    n = len(species)
    width, height = model.image_sizes(n, side, streams[0])
    lat, lon, uncertainty = model.locations(user, users, streams[1])
    dir_names = pa.array([c["image_dir_name"] for c in _categories()])
    file_name = pc.binary_join_element_wise(
        f"{split}/", pc.take(dir_names, pa.array(species)), "/", model.uuid4_strings(n, streams[2]), ".jpg", ""
    )
    columns = {
        "id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
        "width": pa.array(width),
        "height": pa.array(height),
        "file_name": file_name,
        "license": pa.array(model.licenses(user, users, streams[3])),
        "rights_holder": pc.take(pa.array(users.names, pa.string()), pa.array(user)),
        "date": model.dates(lat, streams[4]),
        "latitude": pa.array(lat, from_pandas=True),
        "longitude": pa.array(lon, from_pandas=True),
        "location_uncertainty": pa.array(uncertainty, mask=uncertainty == -1),
        "category_id": pa.array(species.astype(np.int64)),
    }
    return pa.table(columns, schema=IMAGE_SCHEMA)


def mini_subset(train: pa.Table, species: np.ndarray, per_species: int, rng: np.random.Generator) -> pa.Table:
    """The ``train_mini`` records: ``per_species`` train rows of each species drawn at random (in id order),
    each record kept as it is (id, user, location, date, ...) with its file name moved to ``train_mini/``.
    """
    order = np.lexsort((rng.random(len(species)), species))  # each species' rows in random order
    first = np.flatnonzero(np.r_[True, species[order][1:] != species[order][:-1]])
    rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    drawn = train.take(pa.array(np.sort(order[rank < per_species])))
    moved = pc.replace_substring_regex(drawn["file_name"], "^train/", "train_mini/")
    return drawn.set_column(drawn.schema.get_field_index("file_name"), "file_name", moved)


def _rank_counts(species: np.ndarray) -> dict[str, int]:
    categories = _categories()
    present = [categories[i] for i in np.unique(species)]
    return {rank: len({c["name" if rank == "species" else rank] for c in present}) for rank in RANKS}


def image_side_of(spec: Scale, tiny_images: bool | None, image_side: int | None) -> int | None:
    """The longer side of the replica's images: ``image_side``, else :data:`TINY_SIDE` with tiny images,
    else None (realistic sizes, mostly 500 px). Raises ValueError for a side out of range or in conflict.
    """
    if image_side is None:
        return TINY_SIDE if (spec.tiny_images if tiny_images is None else tiny_images) else None
    if not 8 <= image_side <= MAX_IMAGE_SIDE:
        raise ValueError(f"image_side={image_side!r} is invalid; allowed: 8 to {MAX_IMAGE_SIDE} pixels (e.g. 32)")
    if tiny_images is False or (tiny_images and image_side != TINY_SIDE):
        raise ValueError(f"image_side={image_side} and tiny_images={tiny_images} disagree; give one of them")
    return image_side


def build_replica(
    scale: str = "small", seed: int = 0, *, tiny_images: bool | None = None, image_side: int | None = None
) -> Replica:
    """Build a replica in memory (numpy/pyarrow columns, no I/O).

    Parameters
    ----------
    scale : str
        A name in :data:`SCALES` (``"full"``, ``"small"``, ``"tiny"``).
    seed : int
        Seeds users, the image assignment and every image field; categories and counts are fixed.
    tiny_images : bool, optional
        JPEG sides of at most 32 px (the records' width/height follow); default: the scale's.
    image_side : int, optional
        The longer side of the images, 8 to 4096 px (90% of them; the others between half of it and it),
        e.g. 32 for millions of small, learnable JPEGs; the records' width/height follow. ``tiny_images``
        is ``image_side=32``.

    Returns
    -------
    Replica
        ``train``/``val`` tables in the official image schema plus ``category_id``; ``counts`` with
        ``jpegs_written=0``.
    """
    spec = get_scale(scale)
    side = image_side_of(spec, tiny_images, image_side)
    root = np.random.SeedSequence([seed, zlib.crc32(spec.name.encode())])
    streams = [np.random.default_rng(s) for s in root.spawn(16)]
    species_ids = np.arange(0, 10_000, spec.species_step)
    full = model.full_train_counts()[species_ids]
    counts = full if spec.count_scale == 1 else np.maximum(1, np.round(full * spec.count_scale)).astype(np.int64)
    train_species = np.repeat(species_ids, counts)
    position = np.repeat(np.arange(len(species_ids)) / len(species_ids), counts)
    sizes = model.user_sizes(spec.users, int(counts.sum()), streams[5])
    users = model.make_users(sizes, streams[6])
    train_user = model.assign_users(position, sizes, streams[7])
    val_species = np.repeat(species_ids, spec.val_per_species)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k = np.repeat(np.arange(len(species_ids)), spec.val_per_species)
    val_user = train_user[starts[k] + np.floor(streams[8].random(len(k)) * counts[k]).astype(np.int64)]
    train = _split_table("train", 0, train_species, train_user, users, side, streams[0:5])
    val = _split_table("val", train.num_rows, val_species, val_user, users, side, streams[9:14])
    mini_stream = np.random.default_rng(root.spawn(1)[0])  # the 17th child: the first 16 draw as before
    train_mini = mini_subset(train, train_species, min(spec.mini_per_species, int(counts.min())), mini_stream)
    result_counts = SampleCounts(
        scale=spec.name,
        seed=seed,
        train_images=train.num_rows,
        val_images=val.num_rows,
        users=len(np.unique(train_user)),
        species=len(species_ids),
        rank_counts=_rank_counts(train_species),
        train_null_locations=train.column("latitude").null_count,
        train_mini_images=train_mini.num_rows,
    )
    return Replica(
        categories=_categories(),
        train=train,
        val=val,
        train_mini=train_mini,
        counts=result_counts,
        licenses=[dict(x) for x in LICENSES],
        info=_info(spec, seed),
        seed=seed,
        annotation_order={
            "train": streams[15].permutation(train.num_rows),
            "val": streams[15].permutation(val.num_rows),
            "train_mini": mini_stream.permutation(train_mini.num_rows),
        },
    )


def _progress(enabled: bool) -> Callable[[str, int, int], None]:
    """A one-line progress report on stderr (only when asked for)."""
    start = time.monotonic()

    def show(what: str, total: int, done: int) -> None:
        if enabled:
            sys.stderr.write(f"\r[inat_hf.sample] {what}: {done:,}/{total:,} ({time.monotonic() - start:.0f} s)   ")
            sys.stderr.flush()

    return show


def _write_metadata(loc: storage.Location, replica: Replica, progress: bool) -> bool:
    """Write ``train.json``, ``val.json`` and ``train_mini.json``, leaving a file that already holds exactly
    these bytes (so a rerun keeps its modification time, and the manifests cached on it); return whether
    the JPEGs already there may be kept: no metadata file was there with other bytes (another replica).
    """
    report = _progress(progress)
    header = {"info": replica.info, "categories": replica.categories, "licenses": replica.licenses}
    same = True
    for split, table in (("train", replica.train), ("val", replica.val), ("train_mini", replica.train_mini)):
        order, label = replica.annotation_order[split], f"{split}.json"
        if storage.exists(loc, label):
            if json_writer.same_split(loc, label, table, header, order):
                continue
            same = False
        json_writer.write_split(loc, label, table, header, order, functools.partial(report, label, table.num_rows))
    if progress:
        sys.stderr.write("\n")
    return same


def write_sample(
    url: str,
    *,
    scale: str = "small",
    seed: int = 0,
    metadata_only: bool = False,
    tiny_images: bool | None = None,
    image_side: int | None = None,
    processes: int | None = None,
    storage_options: Mapping[str, object] | None = None,
    progress: bool = False,
) -> SampleCounts:
    """Write a replica to any fsspec URL (through :mod:`inat_hf.storage`) and return what was written.

    Writes ``train.json``, ``val.json`` and ``train_mini.json`` (streamed in chunks) and, unless
    ``metadata_only``, every ``train/<image_dir_name>/<uuid>.jpg``, ``val/...`` and ``train_mini/...`` JPEG
    (a train_mini JPEG has the bytes of its train image). Resumable: files already complete with the same
    bytes are left as they are (the JSON files are compared; a JPEG is complete once under its name), so a
    rerun after a kill writes only the rest, and a second run writes nothing. If a JSON file there holds
    another replica, everything is written again.

    Parameters
    ----------
    url : str
        The root folder, e.g. ``"/tmp/inat"``, ``"memory://inat"`` or ``"az://container/inat"``.
    scale, seed, tiny_images, image_side
        As for :func:`build_replica`.
    metadata_only : bool
        Write the three JSON files only.
    processes : int, optional
        Draw and write the JPEGs in this many worker processes (default: threads in this process);
        :mod:`inat_hf.replica.jpeg_files`.
    storage_options : Mapping, optional
        fsspec options (credentials), passed to :func:`inat_hf.storage.resolve`.
    progress : bool
        Show progress on stderr (for the JPEGs: files/s and the time left).
    """
    replica = build_replica(scale, seed, tiny_images=tiny_images, image_side=image_side)
    loc = storage.resolve(url, storage_options)
    keep = _write_metadata(loc, replica, progress)
    if metadata_only:
        return replica.counts
    splits = [("train", replica.train), ("val", replica.val), ("train_mini", replica.train_mini)]
    done = jpeg_files.write_jpegs(loc, splits, replica.seed, resume=keep, processes=processes, progress=progress)
    return dataclasses.replace(
        replica.counts,
        jpegs_written=done.written,
        jpegs_present=done.present,
        jpeg_bytes=done.bytes_written + done.bytes_present,
    )
