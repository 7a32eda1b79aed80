"""Stream a split of the replica as an official-format iNat 2021 JSON file (orjson, chunk by chunk).

Layout, as in the real ``train.json``/``val.json``: top-level keys ``info, images, categories, annotations,
licenses`` in that order; image records with keys ``id, width, height, file_name, license, rights_holder,
date, latitude, longitude, location_uncertainty`` (nulls as ``null``); annotations ``{id, image_id,
category_id}`` with ``id == image_id``.

The trap, on purpose: annotations are written in a different (shuffled) order from the images, so a
loader that pairs ``images[i]`` with ``annotations[i]`` gets wrong labels and must join on ``image_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO

import numpy as np
import orjson
import pyarrow as pa

from inat_hf import storage

IMAGE_KEYS = (
    "id", "width", "height", "file_name", "license", "rights_holder", "date", "latitude", "longitude",
    "location_uncertainty",
)  # fmt: skip
CHUNK = 50_000


def _image_chunks(table: pa.Table) -> Iterator[bytes]:
    for start in range(0, table.num_rows, CHUNK):
        part = table.slice(start, CHUNK)
        columns = [part.column(key).to_pylist() for key in IMAGE_KEYS]
        yield orjson.dumps([dict(zip(IMAGE_KEYS, row, strict=True)) for row in zip(*columns, strict=True)])[1:-1]


def _annotation_chunks(table: pa.Table, order: np.ndarray) -> Iterator[bytes]:
    ids = table.column("id").to_numpy()[order]
    categories = table.column("category_id").to_numpy()[order]
    for start in range(0, len(ids), CHUNK):
        part = zip(ids[start : start + CHUNK].tolist(), categories[start : start + CHUNK].tolist(), strict=True)
        yield orjson.dumps([{"id": i, "image_id": i, "category_id": c} for i, c in part])[1:-1]


def _joined(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for k, chunk in enumerate(chunks):
        if chunk:
            yield (b"," if k else b"") + chunk


def split_chunks(
    table: pa.Table,
    header: Mapping[str, object],
    annotation_order: np.ndarray,
    tick: Callable[[int], None] = lambda rows: None,
) -> Iterator[bytes]:
    """The bytes of one split file, chunk by chunk (``tick(rows)`` after each chunk of image records)."""
    yield b'{"info":' + orjson.dumps(header["info"]) + b',"images":['
    for k, chunk in enumerate(_joined(_image_chunks(table))):
        yield chunk
        tick(min(table.num_rows, (k + 1) * CHUNK))
    yield b'],"categories":' + orjson.dumps(header["categories"]) + b',"annotations":['
    yield from _joined(_annotation_chunks(table, annotation_order))
    yield b'],"licenses":' + orjson.dumps(header["licenses"]) + b"}"


def write_split(
    loc: storage.Location,
    relative: str,
    table: pa.Table,
    header: Mapping[str, object],
    annotation_order: np.ndarray,
    tick: Callable[[int], None] = lambda rows: None,
) -> int:
    """Write one split file and return its size in bytes.

    ``header`` holds ``info``, ``categories`` and ``licenses``; ``annotation_order`` is a permutation of the
    rows giving the order of the annotations; ``tick(rows)`` is called after each chunk of image records.
    """
    written = 0
    with storage.open_output(loc, relative) as out:
        for chunk in split_chunks(table, header, annotation_order, tick):
            out.write(chunk)
            written += len(chunk)
    return written


def same_split(
    loc: storage.Location,
    relative: str,
    table: pa.Table,
    header: Mapping[str, object],
    annotation_order: np.ndarray,
) -> bool:
    """Whether the file at ``relative`` holds exactly the bytes :func:`write_split` would write (read as a
    stream and compared chunk by chunk; the first difference stops the read).
    """
    with storage.open_binary(loc, relative) as existing:
        for chunk in split_chunks(table, header, annotation_order):
            if _read_exactly(existing, len(chunk)) != chunk:
                return False
        return existing.read(1) == b""


def _read_exactly(handle: BinaryIO, size: int) -> bytes:
    parts, left = [], size
    while left > 0 and (part := handle.read(left)):
        parts.append(part)
        left -= len(part)
    return b"".join(parts)
