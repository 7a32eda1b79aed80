"""The baselines grid (``inat-fl baselines``): data configs x algorithms under one budget.

:mod:`~inat_hf.train.baselines.grid` says what a grid is (:class:`Grid`, :class:`Budget`, the cells; no torch,
the command line reads it); :mod:`~inat_hf.train.baselines.run` runs it (:func:`run_grid`, imported on first
use: it needs the ``train`` and ``flower`` extras); :mod:`inat_hf.analysis.baselines` renders the results
(table, curves, the card's section).
"""

from typing import Any

from inat_hf.train.baselines.grid import ALGORITHMS, DEFAULT_DATA, Budget, Cell, DataCell, Grid

__all__ = ["ALGORITHMS", "DEFAULT_DATA", "Budget", "Cell", "DataCell", "Grid", "run_grid"]


def __getattr__(name: str) -> Any:
    if name == "run_grid":
        from inat_hf.train.baselines.run import run_grid

        return run_grid
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
