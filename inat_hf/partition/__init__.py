"""Partition schemes by name: pure functions over numpy arrays, one client id per row (``-1`` = dropped).

>>> from inat_hf.partition import get_partitioner
>>> part = get_partitioner("geo1k")          # geo with max_cell_size=1000
>>> part.inputs
('latitude', 'longitude')

Schemes: ``user`` (natural: one client per ``rights_holder``, or ``group_size`` users per client),
``geo<N>`` (``geo100``, ``geo300``, ``geo1k``, ``geo3k``, ``geo10k``, ``geo30k``, or any ``geo<int>[k]``:
adaptive spatial cells of at most N images), ``dirichlet`` (label skew), ``iid``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from inat_hf.partition import filters
from inat_hf.partition.schemes import DROPPED, dirichlet, geo, iid, natural_ids, user

__all__ = [
    "DROPPED",
    "SCHEMES",
    "Partitioner",
    "dirichlet",
    "filters",
    "geo",
    "get_partitioner",
    "iid",
    "natural_ids",
    "user",
]


@dataclass(frozen=True)
class Partitioner:
    """A scheme bound to its name: which input arrays it needs and which parameters it takes.

    Attributes
    ----------
    name : str
    function : callable
        The pure function (:mod:`inat_hf.partition.schemes`).
    inputs : tuple of str
        Names of the arrays it takes, in order: ``user_codes``, ``labels``, ``latitude``, ``longitude`` or
        ``num_rows``.
    params : tuple of str
        Keyword parameters it accepts (besides ``rng``).
    fixed : dict
        Parameters fixed by the name (``geo1k`` -> ``max_cell_size=1000``).
    """

    name: str
    function: Callable[..., NDArray[np.int64]]
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, arrays: Mapping[str, Any], *, rng: np.random.Generator, **params: Any) -> NDArray[np.int64]:
        """Run the scheme on ``arrays`` (by input name), with the parameters it accepts taken from ``params``."""
        missing = [name for name in self.inputs if name not in arrays]
        if missing:
            raise ValueError(f"scheme {self.name!r} needs the input(s) {missing}")
        kwargs = {k: v for k, v in params.items() if k in self.params and k not in self.fixed}
        return self.function(*(arrays[name] for name in self.inputs), **kwargs, **self.fixed, rng=rng)


SCHEMES: dict[str, Partitioner] = {
    "user": Partitioner("user", user, ("user_codes",), ("group_size",)),
    "dirichlet": Partitioner(
        "dirichlet", dirichlet, ("labels",), ("num_partitions", "alpha", "min_partition_size", "max_retries")
    ),
    "iid": Partitioner("iid", iid, ("num_rows",), ("num_partitions",)),
    "geo": Partitioner("geo", geo, ("latitude", "longitude"), ("max_cell_size", "max_depth")),
}
"""The registered schemes. ``geo<N>`` names resolve to ``geo`` with ``max_cell_size`` fixed."""

GEO_SIZES = ("geo100", "geo300", "geo1k", "geo3k", "geo10k", "geo30k")
"""The Geo-N splits of Hsu, Qi and Brown (2020)."""

_GEO_NAME = re.compile(r"geo(\d+)(k?)")


def get_partitioner(name: str) -> Partitioner:
    """The partitioner registered under ``name`` (``user``, ``dirichlet``, ``iid``, ``geo``, ``geo<N>[k]``).

    Raises
    ------
    ValueError
        ``name`` is not a scheme.
    """
    if name in SCHEMES:
        return SCHEMES[name]
    match = _GEO_NAME.fullmatch(name)
    if match:
        size = int(match.group(1)) * (1000 if match.group(2) else 1)
        if size > 0:
            base = SCHEMES["geo"]
            return Partitioner(name, base.function, base.inputs, base.params, {"max_cell_size": size})
    choices = ", ".join([*SCHEMES, *GEO_SIZES])
    raise ValueError(f"unknown scheme {name!r}; choose from {choices} (or geo<N>, geo<N>k)")
