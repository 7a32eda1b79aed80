"""Manifest rows -> example dicts, with the image bytes fetched concurrently.

Rows are taken in groups of at most :data:`GROUP_ROWS` (a large client spans several groups, in order).
While one group's examples are yielded, the next :data:`FETCH_AHEAD` groups' images are already being
fetched in background threads (``storage.fetch_many``: concurrent, bounded retries), so storage is kept
busy across group (and shard) boundaries. A missing or unreadable image follows the ``on_bad_image``
policy: ``"error"`` raises :class:`BadImageError` naming the file and the reason; ``"skip"`` leaves the
row out and reports it to ``on_skip(image_id, file_name, reason)``, so that rows in = examples out +
skipped, always.

What counts as a bad image (:func:`check_image`): an empty file, bytes without an image signature, a
header that Pillow cannot parse, or a JPEG cut short (no end-of-image marker and not decodable). Image
data that is damaged in the middle of a complete JPEG is not detected: that would need a full decode of
every image at prepare time.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from inat_hf import storage
from inat_hf.errors import InatError, StorageAuthError
from inat_hf.schema import EXAMPLE_COLUMNS, Policy, check_policy

GROUP_ROWS = 256
"""Most rows whose images are fetched together (one ``fetch_many`` call)."""
FETCH_AHEAD = 2
"""Groups being fetched while one group is yielded (at most ``(FETCH_AHEAD + 1) * GROUP_ROWS`` images held)."""
FETCH_WORKERS = 32
"""Requests in flight per group."""

_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"RIFF", b"BM")
_JPEG_END = b"\xff\xd9"

SkipHook = Callable[[int, str, str], None]


class BadImageError(InatError, ValueError):
    """An image is missing, empty, corrupt or outside the data folder (with ``on_bad_image="error"``)."""


def example_key(row: dict[str, Any]) -> str:
    """The stable key of an example: its client and image id, ``"{client_id}/{image_id}"``."""
    return f"{row['client_id']}/{row['image_id']}"


def check_image(data: bytes) -> str | None:
    """Why ``data`` is not a usable image (``None`` if it is): empty, not an image, corrupt or truncated.

    Parses the headers with Pillow (no decode). A JPEG that does not end with its end-of-image marker
    is decoded in full, and is bad if that fails (a file cut short).
    """
    if not data:
        return "empty file"
    if not data.startswith(_IMAGE_MAGIC):
        return "not an image file (unknown signature)"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()  # headers only (PNG: also the chunk checksums)
            truncated_jpeg = image.format == "JPEG" and not data.rstrip(b"\0\r\n").endswith(_JPEG_END)
        if truncated_jpeg:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        return f"corrupt image ({type(err).__name__}: {err})"
    return None


def resize_image(data: bytes, max_side: int) -> bytes:
    """Shrink an image so that its longer side is at most ``max_side`` (JPEG, quality 90); else unchanged."""
    with Image.open(io.BytesIO(data)) as image:
        if max(image.size) <= max_side:
            return data
        image = image.convert("RGB")
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
        return out.getvalue()


def _safe_relative(file_name: str | None) -> str | None:
    """The file name if it names a file inside the data folder, else ``None``."""
    if not file_name:
        return None
    parts = file_name.replace("\\", "/").split("/")
    if file_name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        return None
    return file_name


def _fetch(loc: storage.Location, names: list[str]) -> list[bytes | str]:
    """Image bytes, or the reason they could not be had, per file name."""
    safe = [_safe_relative(n) for n in names]
    wanted = [n for n in safe if n is not None]
    fetched = iter(storage.fetch_many(loc, wanted, max_workers=FETCH_WORKERS, on_error="return") if wanted else [])
    out: list[bytes | str] = []
    for name in safe:
        if name is None:
            out.append("file name escapes the data folder")
            continue
        result = next(fetched)
        if isinstance(result, StorageAuthError):  # the credentials, not this image: never skip it as bad
            raise result
        out.append(f"unreadable ({result})" if isinstance(result, storage.StorageError) else result)
    return out


def iter_fetched(
    names: pa.ChunkedArray | pa.Array,
    loc: storage.Location,
    *,
    group_rows: int = GROUP_ROWS,
    fetch_ahead: int = FETCH_AHEAD,
) -> Generator[tuple[int, list[bytes | str]], None, None]:
    """Yield ``(start, images)`` for consecutive groups of ``names``: each image's bytes, or why it could not
    be had, while the next ``fetch_ahead`` groups are fetched in background threads.

    Parameters
    ----------
    names : pyarrow.Array or ChunkedArray
        File names relative to ``loc``, in row order.
    loc : storage.Location
        The data folder.
    group_rows : int
        Files fetched together (one ``storage.fetch_many`` call).
    fetch_ahead : int
        Groups fetched in the background while one group is consumed (0: fetch each group when needed).
    """
    group_rows = max(1, group_rows)
    pool = ThreadPoolExecutor(max(1, fetch_ahead), thread_name_prefix="inat-prefetch")
    queue: deque[tuple[int, Future[list[bytes | str]]]] = deque()
    todo = iter(range(0, len(names), group_rows))

    def submit_next() -> None:
        start = next(todo, None)
        if start is not None:
            queue.append((start, pool.submit(_fetch, loc, names.slice(start, group_rows).to_pylist())))

    try:
        for _ in range(max(1, fetch_ahead)):
            submit_next()
        while queue:
            start, future = queue.popleft()
            submit_next()
            yield start, future.result()
    finally:  # closed early (an error, or a consumer that stopped): drop the fetches not yet started
        pool.shutdown(wait=False, cancel_futures=True)


def vet_image(
    image: bytes | str,
    file_name: str,
    image_id: int,
    loc: storage.Location,
    on_bad_image: Policy,
    max_image_side: int | None = None,
) -> tuple[bytes | None, str | None]:
    """Apply the bad-image policy to one fetched image: ``(bytes, None)`` for a usable image (shrunk to
    ``max_image_side`` if given), ``(None, reason)`` for a bad one with ``on_bad_image="skip"``.

    Raises
    ------
    BadImageError
        With ``on_bad_image="error"``: the URL of the file, the reason and the image id.
    """
    reason = image if isinstance(image, str) else check_image(image)
    if reason is not None:
        if on_bad_image == "error":
            raise BadImageError(
                f"{loc.url}/{file_name}: {reason} (image id {image_id}). Fix the file, "
                "or prepare with on_bad_image='skip' to leave such rows out (they are listed)."
            )
        return None, reason
    data = image if isinstance(image, bytes) else b""  # a str is a reason, handled above
    if max_image_side is not None:
        data = resize_image(data, max_image_side)
    return data, None


def iter_examples(
    rows: pa.Table,
    loc: storage.Location | None,
    *,
    on_bad_image: Policy = "error",
    max_image_side: int | None = None,
    on_skip: SkipHook | None = None,
    group_rows: int = GROUP_ROWS,
    fetch_ahead: int = FETCH_AHEAD,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(key, example)`` for manifest ``rows`` in order, fetching images group by group.

    Parameters
    ----------
    rows : pyarrow.Table
        Manifest rows (whole clients, in order; any number of chunks).
    loc : storage.Location or None
        The data folder the ``file_name`` values are relative to; ``None`` gives examples without images.
    on_bad_image : {"error", "skip"}
        Raise :class:`BadImageError` at the first bad image, or leave its row out.
    max_image_side : int, optional
        Shrink larger images to this longer side.
    on_skip : callable, optional
        Called with (image_id, file_name, reason) for each skipped row.
    group_rows : int
        Rows fetched together.
    fetch_ahead : int
        Groups fetched in the background while one group is yielded (0: fetch each group when needed).

    Raises
    ------
    BadImageError
        With ``on_bad_image="error"``: the URL of the file, the reason and the image id.
    """
    on_bad_image = check_policy("on_bad_image", on_bad_image)
    group_rows = max(1, group_rows)
    if loc is None:
        for start in range(0, rows.num_rows, group_rows):
            for row in rows.slice(start, group_rows).select(EXAMPLE_COLUMNS).to_pylist():
                yield example_key(row), row
        return
    fetched = iter_fetched(rows.column("file_name"), loc, group_rows=group_rows, fetch_ahead=fetch_ahead)
    try:
        for start, images in fetched:
            group = rows.slice(start, group_rows).select(EXAMPLE_COLUMNS).to_pylist()
            for row, image in zip(group, images, strict=True):
                data, reason = vet_image(image, row["file_name"], row["image_id"], loc, on_bad_image, max_image_side)
                if data is None:
                    if on_skip is not None:
                        on_skip(row["image_id"], row["file_name"], reason or "")
                    continue
                row["image"] = {"bytes": data, "path": row["file_name"]}
                yield example_key(row), row
    finally:
        fetched.close()
