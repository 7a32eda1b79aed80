"""Old module paths of the package, kept importable: each one warns and hands over its new module.

``inat_hf.clients`` became :mod:`inat_hf.federated.clients` (with :mod:`~inat_hf.federated.stream` and
:mod:`~inat_hf.federated.dataset_state`), ``inat_hf.flower`` :mod:`inat_hf.federated.partitioner`, and so on
(:data:`MOVED`). :func:`install` (called once by ``inat_hf/__init__.py``) puts a finder on ``sys.meta_path``
that answers for the old names only: importing one raises a ``DeprecationWarning`` that names the new path,
and gives the new module itself (one new module) or a module holding the public names of all of them (a
module split in several). Nothing else in the package imports an old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence

MOVED: dict[str, tuple[str, ...]] = {
    "inat_hf.clients": ("inat_hf.federated.clients", "inat_hf.federated.stream", "inat_hf.federated.dataset_state"),
    "inat_hf.flower": ("inat_hf.federated.partitioner",),
    "inat_hf.examples": ("inat_hf.manifest.examples",),
    "inat_hf.stats": ("inat_hf.analysis.stats",),
    "inat_hf.plots": ("inat_hf.analysis.plots",),
    "inat_hf.summary": ("inat_hf.analysis.summary",),
    "inat_hf.check": ("inat_hf.realcopy.check",),
    "inat_hf.extract": ("inat_hf.realcopy.extract",),
    "inat_hf.demo": ("inat_hf.cli.demo",),
    "inat_hf.train.flower_apps": ("inat_hf.train.flower.apps",),
    "inat_hf.train.flower_server": ("inat_hf.train.flower.server",),
    "inat_hf.train.datasource": ("inat_hf.train.data",),
    "inat_hf.replica.names": ("inat_hf.replica.user_names",),
    "inat_hf.replica.naming": ("inat_hf.replica.taxon_names",),
    "inat_hf.hub.export": ("inat_hf.export.files", "inat_hf.export.images", "inat_hf.hub.folder"),
}
"""Old module name -> the module(s) that now hold its names, in lookup order."""


def _public(module: types.ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [name for name in vars(module) if not name.startswith("_")]


def _merged(old: str, modules: Sequence[types.ModuleType]) -> types.ModuleType:
    """One module with the names of ``modules`` (the first that has a name wins), for a split module."""
    merged = types.ModuleType(old, f"Moved: the names of {old} now live in {', '.join(m.__name__ for m in modules)}.")
    names: list[str] = []
    for module in reversed(modules):  # the first module's names win
        for name, value in vars(module).items():
            if not name.startswith("__"):
                setattr(merged, name, value)
    for module in modules:
        names += [name for name in _public(module) if name not in names]
    merged.__all__ = names  # type: ignore[attr-defined]
    return merged


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, targets: tuple[str, ...]) -> None:
        self.targets = targets

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module: types.ModuleType) -> None:
        old = module.__name__
        new = " / ".join(self.targets)
        # stacklevel 2: the importing line (warnings skips importlib's own frames)
        warnings.warn(f"{old} moved to {new}; import from there", DeprecationWarning, stacklevel=2)
        modules = [importlib.import_module(target) for target in self.targets]
        sys.modules[old] = modules[0] if len(modules) == 1 else _merged(old, modules)


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the old module names of :data:`MOVED` (and nothing else)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """A spec that loads the new module(s) of ``fullname``, if it is an old name; else None."""
        targets = MOVED.get(fullname)
        if targets is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(targets))


def install() -> None:
    """Put :class:`MovedFinder` on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())  # before any finder that might find a stale copy
