"""Fast, memory-lean reading of the official COCO-style iNat 2021 JSON files.

``train.json`` is about 1 GB. Parsing it whole into Python objects (``json.load``) takes four to five times
its size in memory. Here the top-level object is walked by a small scanner, and each large array
(``images``, ``annotations``) is cut into slices of about :data:`CHUNK_BYTES`, parsed by Arrow's JSON
reader (:mod:`inat_hf.metadata.arrow_slices`) straight into typed columns, :data:`SLICES_AHEAD` slices at
a time on worker threads, and handed to the sink in file order. No Python object is made per record. Peak
memory is the file's bytes, the columns, and the slices in flight.

Correctness does not rest on the scanner: a slice Arrow refuses (a cut inside a string, a value of the
wrong type, anything unusual) is parsed again with ``orjson``, and its records become columns one by one,
so that the error names the record and the field. A slice is cut at a ``}`` followed by ``,`` or ``]``;
a cut that falls inside a string can never parse (the left part ends inside that string), so the orjson
path tries the next cut. Anything the fast path cannot handle (arrays of non-objects, invalid JSON) falls
back to one ``orjson.loads`` of the whole file, which either succeeds or gives the parser's message and
position in a :class:`~inat_hf.errors.MetadataError`.
"""

from __future__ import annotations

import codecs
import os
import re
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from inat_hf.errors import MetadataError
from inat_hf.metadata.arrow_slices import find_slice, parse_slice

CHUNK_BYTES = 16 * 2**20
"""Approximate size of one parsed slice of a large array."""
SLICES_AHEAD = max(2, min(4, os.cpu_count() or 1))
"""Slices parsed at once: one per core, at least two (parsing overlaps the column work), at most four (each
slice in flight holds a copy of its bytes and its table)."""

_MAX_CUT_TRIES = 16
_WS = re.compile(rb"[ \t\n\r]*")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SCALAR = re.compile(rb"-?[0-9][0-9.eE+\-]*|true|false|null")
_OBJECT_END = re.compile(rb"\}[ \t\n\r]*[,\]]")

ChunkSink = Callable[[list[Any] | pa.Table, int], None]
"""Receives one parsed slice of an array (a list of elements, or an Arrow table when the slice was parsed
with the array's schema) and the index of its first element."""
SinkFactory = Callable[[], dict[str, ChunkSink]]
"""Makes fresh sinks: called again (dropping what the first ones received) if the fast path gives up."""


class _FastPathFailed(Exception):
    """The scanner met something it does not handle; fall back to a whole-file parse."""


@dataclass
class OfficialDocument:
    """The top-level values of an official file; large arrays were streamed to sinks, not kept here."""

    values: dict[str, Any] = field(default_factory=dict)
    streamed: dict[str, int] = field(default_factory=dict)
    """Number of elements streamed to each sink, by key."""


def parse_document(
    data: bytes, make_sinks: SinkFactory, source: str, schemas: Mapping[str, pa.Schema] | None = None
) -> OfficialDocument:
    """Parse an official JSON document, streaming the arrays named in ``sinks`` slice by slice.

    Parameters
    ----------
    data : bytes
        The whole file.
    make_sinks : callable
        Returns, for each top-level key whose value is a large array, a function called with each slice
        (a list of parsed elements) and the index of the slice's first element. A sink may raise
        ``MetadataError``. If the fast path gives up part-way, ``make_sinks`` is called again and the whole
        file is parsed once more into the new sinks, so the caller must start afresh with each call.
    source : str
        The file's redacted URL, for error messages.
    schemas : dict of str to pyarrow.Schema, optional
        For arrays of flat objects: the fields and types to read. A slice is then first parsed by Arrow's
        multithreaded JSON reader (objects one per line, keys outside the schema ignored) and handed to
        the sink as a table; a slice Arrow refuses (a type mismatch, an odd layout, a cut inside a string)
        is parsed by orjson and handed over as a list, so that the sink can say exactly what is wrong.

    Returns
    -------
    OfficialDocument
        The other top-level values, and how many elements each sink received. If a key of ``sinks`` has a
        value that is not an array, the value is returned in ``values`` and the sink is not called.

    Raises
    ------
    MetadataError
        The file is not UTF-8, not valid JSON (truncated, garbage), its top level is not an object, or a top-level key
        occurs twice (found by the scanner; a file parsed whole keeps the last value, as JSON parsers do).
    """
    _check_utf8(data, source)
    try:
        return _parse_fast(data, make_sinks(), schemas or {}, source)
    except _FastPathFailed:
        pass
    return _parse_whole(data, make_sinks(), source)


def _check_utf8(data: bytes, source: str) -> None:
    """Raise :class:`MetadataError` if ``data`` is not UTF-8 (JSON must be; Arrow's reader does not check).

    One vectorised pass over the bytes, without copying them (a 1 GB file takes about 0.1 s).
    """
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    try:
        pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data)).validate(full=True)
        return
    except pa.ArrowInvalid:
        pass
    decoder, step = codecs.getincrementaldecoder("utf-8")(), 1 << 20
    for start in range(0, len(data), step):  # only on the error path: find the first bad byte
        try:
            decoder.decode(data[start : start + step], final=start + step >= len(data))
        except UnicodeDecodeError as err:
            raise MetadataError(
                f"{source}: not UTF-8 text (byte {start + err.start - len(decoder.getstate()[0])}: {err.reason}); "
                "JSON files are UTF-8. Fix: download the file again."
            ) from None
    raise MetadataError(f"{source}: not UTF-8 text; JSON files are UTF-8. Fix: download the file again.")


def _parse_whole(data: bytes, sinks: dict[str, ChunkSink], source: str) -> OfficialDocument:
    try:
        top = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        hint = " The file looks truncated: download it again." if _at_end(data, err.pos) else ""
        raise MetadataError(f"{source}: not valid JSON ({err.msg} at character {err.pos}).{hint}") from None
    if not isinstance(top, dict):
        raise MetadataError(
            f"{source}: the top level is a JSON {type(top).__name__}, not an object with 'images', "
            "'annotations' and 'categories'. Fix: point to the official train.json/val.json."
        )
    doc = OfficialDocument()
    for key, value in top.items():
        if key in sinks and isinstance(value, list):
            for start in range(0, len(value), 100_000):
                sinks[key](value[start : start + 100_000], start)
            doc.streamed[key] = len(value)
        else:
            doc.values[key] = value
    return doc


def _at_end(data: bytes, pos: int) -> bool:
    """Whether a parse error at character ``pos`` is at the end of the (UTF-8) data: a truncated file.

    Counts characters without decoding a copy of the data (it may be a gigabyte of garbage).
    """
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    characters = pc.utf8_length(pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data)))[0].as_py()
    tail = data[-4096:]
    return pos >= characters - (len(tail) - len(tail.rstrip())) - 1


def _skip_ws(data: bytes, pos: int) -> int:
    match = _WS.match(data, pos)
    return match.end() if match else pos


def _parse_fast(
    data: bytes, sinks: dict[str, ChunkSink], schemas: Mapping[str, pa.Schema], source: str
) -> OfficialDocument:
    doc = OfficialDocument()
    seen: set[str] = set()
    pos = _skip_ws(data, 0)
    if data[pos : pos + 1] != b"{":
        raise _FastPathFailed
    pos = _skip_ws(data, pos + 1)
    if data[pos : pos + 1] == b"}":
        return _finish(data, pos + 1, doc)
    while True:
        key_match = _STRING.match(data, pos)
        if key_match is None:
            raise _FastPathFailed
        key = _loads(key_match.group())
        if key in seen:  # a sink already holds the first array's rows: never merge two arrays
            raise MetadataError(
                f"{source}: the key {key[:60]!r} occurs more than once at the top level; the file is corrupt. "
                "Fix: download it again."
            )
        seen.add(key)
        pos = _skip_ws(data, key_match.end())
        if data[pos : pos + 1] != b":":
            raise _FastPathFailed
        pos = _skip_ws(data, pos + 1)
        if key in sinks and data[pos : pos + 1] == b"[":
            doc.streamed[key], pos = _stream_array(data, pos, sinks[key], schemas.get(key))
        else:
            value, pos = _parse_small_value(data, pos)
            doc.values[key] = value
        pos = _skip_ws(data, pos)
        sep = data[pos : pos + 1]
        if sep == b"}":
            return _finish(data, pos + 1, doc)
        if sep != b",":
            raise _FastPathFailed
        pos = _skip_ws(data, pos + 1)


def _finish(data: bytes, pos: int, doc: OfficialDocument) -> OfficialDocument:
    if _skip_ws(data, pos) != len(data):
        raise _FastPathFailed  # trailing garbage: let the whole-file parser report it
    return doc


def _loads(text: bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _FastPathFailed from None


def _parse_small_value(data: bytes, pos: int) -> tuple[Any, int]:
    """Parse a value that is not a streamed array: strings, scalars, objects and arrays of modest size."""
    head = data[pos : pos + 1]
    if head == b'"':
        match = _STRING.match(data, pos)
        if match is None:
            raise _FastPathFailed
        return _loads(match.group()), match.end()
    if head in (b"{", b"["):
        end = data.find(b"}" if head == b"{" else b"]", pos)
        if end >= 0:  # usually the first closer ends the value (no nesting): one parse
            try:
                return orjson.loads(data[pos : end + 1]), end + 1
            except orjson.JSONDecodeError:
                pass
        end = _container_end(data, pos)  # else one parse finds where it ends, whatever the nesting
        return _loads(data[pos:end]), end
    match = _SCALAR.match(data, pos)
    if match is None:
        raise _FastPathFailed
    return _loads(match.group()), match.end()


def _container_end(data: bytes, pos: int) -> int:
    """The position just after the object or array that starts at ``data[pos]``, or where it may end.

    orjson parses the value in place (no copy) and stops at what follows it ("content after document"),
    whose position gives the end; the caller parses the span, which fails (and the whole file is parsed
    instead) if this was any other error. Linear in the value's size, whatever its nesting.
    """
    view = memoryview(data)[pos:]
    try:
        orjson.loads(view)
        return len(data)
    except orjson.JSONDecodeError as err:
        characters = err.pos  # orjson counts characters, not bytes
    head = bytes(view[: 4 * characters])  # at most 4 bytes per character
    size = characters if head[:characters].isascii() else len(head.decode("utf-8", "ignore")[:characters].encode())
    return pos + len(head[:size].rstrip(b" \t\n\r"))


def _stream_array(data: bytes, pos: int, sink: ChunkSink, schema: pa.Schema | None) -> tuple[int, int]:
    """Parse the array of objects starting at ``data[pos] == '['`` in slices; return (count, end).

    With a ``schema``, up to :data:`SLICES_AHEAD` slices are parsed by Arrow in worker threads (Arrow and
    numpy release the GIL) while the finished ones go to the sink in order, so parsing uses every core
    and overlaps the column work.
    """
    pos = _skip_ws(data, pos + 1)
    if data[pos : pos + 1] == b"]":
        return 0, pos + 1
    count = 0
    with ThreadPoolExecutor(SLICES_AHEAD, thread_name_prefix="inat-json") as pool:
        ahead = _Ahead(pool, data, schema, pos)
        while True:
            elements, end, closed = ahead.take(pos)
            following = _skip_ws(data, end)
            ahead.plan(following, closed)
            sink(elements, count)
            count += len(elements)
            if closed:
                return count, end
            pos = following


class _Ahead:
    """The slices submitted to Arrow ahead of the one being consumed: (start, future) in file order."""

    def __init__(self, pool: ThreadPoolExecutor, data: bytes, schema: pa.Schema | None, start: int) -> None:
        self.pool, self.data, self.schema = pool, data, schema
        self.queue: deque[tuple[int, Future]] = deque()
        self.next: int | None = start if schema is not None else None
        self._fill()

    def _fill(self) -> None:
        while self.next is not None and len(self.queue) < SLICES_AHEAD:
            start, cut = self.next, find_slice(self.data, self.next, CHUNK_BYTES)
            if cut is None:  # no end in sight: the orjson path takes it from here
                self.next = None
                return
            last, after, closed = cut
            job = self.pool.submit(_parse_slice, self.data, start, last, self.schema, after, closed)
            self.queue.append((start, job))
            self.next = None if closed else _skip_ws(self.data, after)

    def take(self, start: int) -> tuple[Any, int, bool]:
        """The slice from ``start``: Arrow's table, or (if it refused or was not asked) the orjson path's list."""
        if self.queue and self.queue[0][0] == start:
            table, after, closed = self.queue.popleft()[1].result()
            if table is not None:
                return table, after, closed
        return _next_slice(self.data, start)

    def plan(self, following: int, closed: bool) -> None:
        """Keep the queue going from ``following``; start afresh if it does not begin there."""
        head = self.queue[0][0] if self.queue else self.next
        if closed or head != following:
            for _, future in self.queue:
                future.cancel()
            self.queue.clear()
            self.next = None if closed or self.schema is None else following
        self._fill()


def _parse_slice(data: bytes, start: int, last: int, schema: pa.Schema, after: int, closed: bool) -> tuple:
    return parse_slice(data, start, last, schema), after, closed


def _next_slice(data: bytes, start: int) -> tuple[list[Any], int, bool]:
    """Parse the elements from ``start`` up to a cut about :data:`CHUNK_BYTES` further on, with orjson.

    Returns the elements, the position just after the ``,`` (or the array's ``]``) that follows the last
    one, and whether the array closed.
    """
    match = _OBJECT_END.search(data, min(start + CHUNK_BYTES, len(data)))
    if match is None:
        match = _last_cut(data, start)
    for _ in range(_MAX_CUT_TRIES):
        if match is None:
            raise _FastPathFailed
        wrapped = b"[" + data[start : match.start() + 1] + b"]"
        try:
            elements = orjson.loads(wrapped)
        except orjson.JSONDecodeError as err:
            closed = _array_closed_before(wrapped, err.pos)
            if closed is not None:
                # The array ended inside this slice: data index = wrapped index - 1 + start.
                return closed[0], start + closed[1] - 1, True
            match = _OBJECT_END.search(data, match.start() + 1)
            continue
        return elements, match.end(), match.group().endswith(b"]")
    raise _FastPathFailed


def _array_closed_before(wrapped: bytes, error_pos: int) -> tuple[list[Any], int] | None:
    """Elements of the array that closed before a parse error, and the byte index just after its ``]``.

    If the text before the parse error at character ``error_pos`` is a whole array (the source array
    closed inside the slice and what follows belongs to the next key), return its elements and the byte
    index in ``wrapped`` just after its ``]``. (orjson reports positions in characters, not bytes.)
    """
    try:
        head = wrapped.decode("utf-8")[:error_pos].encode("utf-8").rstrip()
    except UnicodeDecodeError:
        return None
    if not head.endswith(b"]"):
        return None
    try:
        elements = orjson.loads(head)
    except orjson.JSONDecodeError:
        return None
    return elements, len(head)


def _last_cut(data: bytes, start: int) -> re.Match[bytes] | None:
    """The last ``}`` followed by ``,`` or ``]`` at or after ``start`` (the final slice of the file)."""
    last = None
    for match in _OBJECT_END.finditer(data, start):
        last = match
    return last
