"""Names for synthesised taxa that rise along ids (used by :mod:`inat_hf.replica.taxonomy`).

A name comes from a type genus: its Latin stem plus the rank's suffix (``Araneus`` -> ``Araneidae``).
Sibling taxa must have rising names, so a dynamic programme picks, for each taxon, the cheapest candidate
that keeps the sequence rising: a genus of the taxon (cost 0), another genus of the class (1; real names
too come from genera outside the data set), a Greek/Latin prefix plus a genus of the taxon (2), or a
compound after the previous pinned name (4).
"""

from __future__ import annotations

import bisect
import functools
import itertools

_ENDINGS = (
    ("ops", "op"), ("ix", "ic"), ("ex", "ic"), ("ax", "ac"), ("yx", "yc"), ("us", ""), ("um", ""), ("is", ""),
    ("es", ""), ("os", ""), ("on", ""), ("as", ""), ("er", "r"), ("a", ""), ("e", ""), ("i", ""), ("o", ""),
    ("y", ""),
)  # fmt: skip
_PREFIXES = (
    "Acro", "Amphi", "Archi", "Brachy", "Cteno", "Cyclo", "Dino", "Epi", "Eu", "Glypto", "Hemi", "Hetero", "Holo",
    "Iso", "Lepto", "Macro", "Mega", "Meta", "Micro", "Neo", "Ortho", "Oxy", "Para", "Poly", "Pro", "Proto",
    "Pseudo", "Rhyncho", "Steno", "Sym", "Tetra", "Tricho", "Xeno", "Zygo",
)  # fmt: skip


@functools.cache
def stem(genus: str) -> str:
    """Return the Latin stem of a genus name, the base of a family or order name (``Araneus`` -> ``Arane``)."""
    name = genus.replace("-", "")
    for ending, replacement in _ENDINGS:
        if name.endswith(ending) and len(name) - len(ending) >= 3:
            return name[: len(name) - len(ending)] + replacement
    return name


class Pool:
    """A sorted list of genus stems, hashed by identity so that candidate lists can be cached."""

    def __init__(self, stems: list[str]) -> None:
        self.stems = stems


def candidates(
    genera: list[str], suffix: str, used: set[str], bounds: tuple[str, str | None], pool: Pool
) -> list[tuple[str, int]]:
    """(name, cost) candidates inside ``bounds`` for a taxon of ``genera``, leaving out names ``used``."""
    options = _all_candidates(tuple(dict.fromkeys(genera)), suffix, bounds, pool)
    return [(n, c) for n, c in options if n not in used]


@functools.cache
def _all_candidates(
    genera: tuple[str, ...], suffix: str, bounds: tuple[str, str | None], pool: Pool
) -> tuple[tuple[str, int], ...]:
    """Return (name, cost) candidates for a taxon whose name must fall inside ``bounds``.

    Cost 0: from a genus of the taxon (a type genus); 1: from another genus of the class (real names also
    come from genera outside the data set); 2: a prefixed type-genus name; 4: a compound after ``bounds[0]``.
    """
    low, high = bounds
    stems = list(dict.fromkeys(stem(g) for g in genera))
    names = {s + suffix: 0 for s in stems}
    lo = bisect.bisect_right(pool.stems, low[: len(low) - len(suffix)] if low else "")
    hi = bisect.bisect_left(pool.stems, high) if high else len(pool.stems)
    step = max(1, (hi - lo) // 24)
    for s in pool.stems[lo:hi:step]:
        names.setdefault(s + suffix, 1)
    for s in stems[:2]:
        for prefix in _PREFIXES:
            names.setdefault(prefix + s.lower() + suffix, 2)
        if low:
            names.setdefault(low[: len(low) - len(suffix)] + "o" + s.lower() + suffix, 4)
    return tuple(sorted(names.items()))


def name_sequence(
    items: list[tuple[str | None, list[str]]], suffix: str, used: set[str], pool: Pool, *, commit: bool = True
) -> tuple[list[str], int]:
    """Name sibling taxa so that names rise along ids, using as few prefixed names as possible.

    ``items`` are (pinned name or None, genera) in id order. A dynamic programme over the candidate names of
    each taxon finds the cheapest strictly rising choice (pinned names are the only candidate of a taxon).
    """
    layers: list[list[tuple[str, int, int]]] = []  # per taxon: (name, total cost, index into previous layer)
    previous: list[tuple[str, int, int]] = [("", 0, -1)]
    low = ""
    for j, (pinned, genera) in enumerate(items):
        if pinned:
            options = [(pinned, 0)]
            low = pinned
        else:
            high = next((p for p, _ in items[j + 1 :] if p), None)
            options = candidates(genera, suffix, used, (low, high), pool)
        names = [p[0] for p in previous]
        # running minimum of (cost, index) over previous[: k + 1]
        best_prefix = list(itertools.accumulate(((p[1], k) for k, p in enumerate(previous)), min))
        layer = []
        for name, cost in options:
            k = bisect.bisect_left(names, name) - 1
            if k >= 0:
                layer.append((name, best_prefix[k][0] + cost, best_prefix[k][1]))
        if not layer:
            raise ValueError(f"no rising {suffix} names for {[p for p, _ in items if p]} near {genera[:3]}")
        layers.append(layer)
        previous = layer
    chosen = min(range(len(previous)), key=lambda k: (previous[k][1], previous[k][0]))
    result = []
    for layer in reversed(layers):
        name, _, back = layer[chosen]
        result.append(name)
        chosen = back
    result.reverse()
    if commit:
        used.update(result)
    return result, min(p[1] for p in previous)
