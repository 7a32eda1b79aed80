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

        def put(data: bytes) -> None:
            nonlocal written
            out.write(data)
            written += len(data)

        put(b'{"info":' + orjson.dumps(header["info"]) + b',"images":[')
        for k, chunk in enumerate(_joined(_image_chunks(table))):
            put(chunk)
            tick(min(table.num_rows, (k + 1) * CHUNK))
        put(b'],"categories":' + orjson.dumps(header["categories"]) + b',"annotations":[')
        for chunk in _joined(_annotation_chunks(table, annotation_order)):
            put(chunk)
        put(b'],"licenses":' + orjson.dumps(header["licenses"]) + b"}")
    return written
