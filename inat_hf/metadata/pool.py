"""Which Arrow memory pool the bulk table work (the metadata load, the manifest build) allocates from.

The work makes a few hundred allocations of megabytes each (Arrow blocks, whole columns, ``take`` results)
and frees most of them soon after. Arrow's default pool on Linux wheels, mimalloc, asks the kernel for
transparent huge pages for such memory; where physical memory is fragmented, as on long-running hosts and
VMs, each huge-page fault compacts memory first, and that cost is paid in system time. Measured on the
project's 2-core VM (``BENCHMARKS.md``, "Metadata at the speed of the file"): the whole ``family_user``
manifest of the full replica built in 3.8-4.1 s with mimalloc (2.7-3.0 s of it system time) and in 1.7-1.9 s
with the C library's allocator; the metadata load in 4.7-4.9 s against 4.4-4.5 s.

So :func:`bulk_allocations` makes the system allocator Arrow's default for the duration of that work, and
restores the previous default afterwards. Buffers remember their pool, so tables made inside outlive the
block safely. It changes nothing when the user chose a pool (the ``ARROW_DEFAULT_MEMORY_POOL`` environment
variable, Arrow's own setting) or set ``INAT_FL_ARROW_POOL=default``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

POOL_ENV = "INAT_FL_ARROW_POOL"
"""``system`` (default): bulk work allocates from the C library's allocator; ``default``: from Arrow's default."""

_lock = threading.Lock()
_depth = 0
_saved: pa.MemoryPool | None = None


def bulk_pool() -> pa.MemoryPool | None:
    """The pool for bulk table work, or ``None`` to keep Arrow's default (see the module docstring)."""
    choice = os.environ.get(POOL_ENV, "system")
    if choice not in ("system", "default"):
        raise ValueError(f"{POOL_ENV}={choice!r}; choose from system, default")
    if choice == "default" or os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return None
    return pa.system_memory_pool()


@contextmanager
def bulk_allocations() -> Iterator[None]:
    """Arrow allocations in this block (any thread) come from :func:`bulk_pool`; nested and concurrent blocks
    share one switch, and the default in place before the first is restored after the last.
    """
    global _depth, _saved
    pool = bulk_pool()
    if pool is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _saved = pa.default_memory_pool()
            pa.set_memory_pool(pool)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                pa.set_memory_pool(_saved)
                _saved = None
