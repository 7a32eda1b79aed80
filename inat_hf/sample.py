"""The synthetic replica under its first name: every public name of :mod:`inat_hf.replica`, importable as
``inat_hf.sample`` (``from inat_hf.sample import write_sample``). New code imports :mod:`inat_hf.replica`.
"""

from typing import Any

from inat_hf import replica

__all__ = list(replica.__all__)


def __getattr__(name: str) -> Any:
    """The replica's public names, looked up there (so nothing is listed twice)."""
    if name in __all__:
        return getattr(replica, name)
    raise AttributeError(f"module 'inat_hf.sample' has no attribute {name!r} (the replica is inat_hf.replica)")


def __dir__() -> list[str]:
    return sorted(__all__)
