"""Slices of a large JSON array of flat objects, parsed by Arrow's JSON reader (the fast path of
:mod:`inat_hf.metadata.json_stream`).

A slice runs from the start of one element to the ``}`` of a later one. It is copied once, each ``},``
in the copy becomes ``}`` + line break (one object per line, what Arrow reads), and Arrow parses it with
its multithreaded reader. Nothing here has to be right about where strings are: a cut, a line break or an
array end found inside a string leaves a line that ends inside that string, which Arrow refuses, and the
caller then parses the slice with orjson (exact messages). Arrow also reads objects that are not
separated by a comma (``}{``); counting the lines catches that, and the slice goes to orjson too.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

THREADS = False
"""Whether Arrow parses one slice on several threads (no: :mod:`json_stream` parses several slices at once)."""

_SEPARATOR = re.compile(rb"\}[ \t\n\r]*,[ \t\n\r]*\{")
_WHITESPACE = b" \t\n\r"
_CLOSE, _COMMA, _NEWLINE = ord("}"), ord(","), ord("\n")
_SCRATCH = threading.local()


def find_slice(data: bytes, start: int, size: int) -> tuple[int, int, bool] | None:
    """Where the slice of about ``size`` bytes from ``start`` ends; ``None`` if no end is in sight.

    Returns ``(last, after, closed)``: the slice is ``data[start:last + 1]`` (``data[last]`` is ``}``),
    ``after`` is the position just after the ``,`` (or the array's ``]``) that follows it, and ``closed``
    tells whether the array ends there. The cut is the first ``},`` at or after ``start + size``, unless
    an array end (``}``, optional whitespace, ``]``) comes first.
    """
    cut = data.find(b"},", min(start + size, len(data)))
    closing = _array_end(data, start, cut if cut >= 0 else len(data))
    if closing is not None:
        return closing[0], closing[1], True
    return None if cut < 0 else (cut, cut + 2, False)


def _array_end(data: bytes, start: int, limit: int) -> tuple[int, int] | None:
    """The first ``}`` followed by whitespace and ``]`` in ``data[start:limit]``: (its ``}``, after ``]``)."""
    at = data.find(b"]", start, limit)
    while at >= 0:
        brace = at - 1
        while brace >= start and data[brace] in _WHITESPACE:
            brace -= 1
        if brace >= start and data[brace] == _CLOSE:
            return brace, at + 1
        at = data.find(b"]", at + 1, limit)
    return None


def parse_slice(data: bytes, start: int, last: int, schema: pa.Schema) -> pa.Table | None:
    """Parse ``data[start:last + 1]`` (``{...}, {...}, ...``) with Arrow; ``None`` if it refuses.

    Parameters
    ----------
    data : bytes
        The whole file.
    start, last : int
        The slice's first byte (a ``{``) and last byte (a ``}``).
    schema : pyarrow.Schema
        The fields and types to read (keys outside it are ignored).

    Returns
    -------
    pyarrow.Table or None
        One row per object, or ``None`` when Arrow refuses the slice or finds more objects than lines.
    """
    size = last + 1 - start
    piece, braces = _scratch(size)
    piece[:] = np.frombuffer(data, dtype=np.uint8, count=size, offset=start)
    np.equal(piece[:-1], _CLOSE, out=braces[: size - 1])
    at = np.flatnonzero(braces[: size - 1])
    separators = at[piece[at + 1] == _COMMA] + 1
    piece[separators] = _NEWLINE
    table = _read(pa.py_buffer(piece), schema)  # Arrow copies what it reads: the scratch can be reused
    if table is not None and table.num_rows == separators.size + 1:
        return table
    # Whitespace around the commas ("} ,{"): one pass of a regular expression on the original bytes.
    text, count = _SEPARATOR.subn(b"}\n{", data[start : last + 1])
    table = _read(pa.py_buffer(text), schema)
    return table if table is not None and table.num_rows == count + 1 else None


def _scratch(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Buffers of the calling thread for a slice of ``size`` bytes (reused: fresh 16 MB arrays cost page faults)."""
    held = getattr(_SCRATCH, "bytes", None)
    if held is None or held.size < size:
        _SCRATCH.bytes = np.empty(max(size, 2 * (0 if held is None else held.size)), dtype=np.uint8)
        _SCRATCH.flags = np.empty(_SCRATCH.bytes.size, dtype=bool)
    return _SCRATCH.bytes[:size], _SCRATCH.flags


def _read(buffer: pa.Buffer, schema: pa.Schema) -> pa.Table | None:
    """Arrow's JSON reader on one slice, as one block (one chunk per column) unless :data:`THREADS`."""
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    block = 1 << 22 if THREADS else max(1 << 20, buffer.size + 1)
    try:
        return pajson.read_json(
            pa.BufferReader(buffer),
            parse_options=options,
            read_options=pajson.ReadOptions(block_size=block, use_threads=THREADS),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
