"""The baselines grid (``inat-fl baselines``): data configs x algorithms under one budget.

:mod:`~inat_hf.train.baselines.grid` says what a grid is (:class:`Grid`, :class:`Budget`, the cells);
:mod:`~inat_hf.train.baselines.run` runs it (:func:`run_grid`); :mod:`inat_hf.analysis.baselines` renders the
results (table, curves, the card's section). Needs the ``train`` and ``flower`` extras.
"""

from inat_hf.train.baselines.grid import ALGORITHMS, DEFAULT_DATA, Budget, Cell, DataCell, Grid
from inat_hf.train.baselines.run import run_grid

__all__ = ["ALGORITHMS", "DEFAULT_DATA", "Budget", "Cell", "DataCell", "Grid", "run_grid"]
