"""The 10,000 iNat 2021 category records of the replica, every rank filled in (fixed, independent of seed).

How the taxonomy is made
------------------------
* Species, genus and epithet: the real 10,000 species in real id order (``inat_hf/data/inat2021_species.csv``).
* Kingdom, phylum, class: the real 51 classes with their real id ranges (``CLASS_TABLE``), so the
  supercategory species counts are the real ones (Plants 4,271, Insects 2,526, Birds 1,486, ...).
* Orders and families: real where known (``ORDER_PINS``/``FAMILY_PINS``: the 40 real records, the anchors of
  the tfds dummy files, the read parts of the real list, and families evident from the genus sequence), the
  rest synthesised so that every rule of the real list holds:

  - ids are sorted by ``Kingdom_Phylum_Class_Order_Family_Genus_epithet`` (ignoring the hybrid sign "×", as
    the real list does for ``Malus ×domestica``), so every taxon is a contiguous run of ids, nested in its
    parent, and names rise along ids inside each parent;
  - each alphabetical descent of ``Genus_epithet`` between neighbours is therefore a family (or higher)
    boundary; further family boundaries (to reach exactly 1,103) split the longest runs of genera at their
    widest alphabetical gap; further orders (to reach exactly 273) split the orders with most families;
  - a synthesised name comes from a type genus of the taxon (stem + ``idae`` for animal families, ``aceae``
    for plant and fungal ones; ``iformes`` for vertebrate orders, ``optera`` for insect orders, ``ida`` for
    other animal orders, ``ales`` for plant and fungal orders); where no genus of the taxon gives a name that
    sorts between its neighbours, a Greek/Latin prefix is put in front (``Pseudo``, ``Hemi``, ...).

* Common names: real for ids 0-39 and the anchors, otherwise "<adjective from the epithet> <noun of the
  class>" where the epithet has a known meaning, else the scientific name (as real category 2 does).
"""

from __future__ import annotations

import bisect
import csv
import functools
import heapq
import io
import itertools
import math
import zlib
from dataclasses import dataclass, field
from importlib import resources

from inat_hf.replica import taxonomy_data as data
from inat_hf.replica.taxon_names import Pool, name_sequence, stem

N_SPECIES = 10_000
N_ORDERS = 273
N_FAMILIES = 1_103

_VERTEBRATES = frozenset({"Actinopterygii", "Amphibia", "Aves", "Elasmobranchii", "Mammalia", "Reptilia"})


def sort_key(text: str) -> str:
    """Return the string the real ids are sorted by (the hybrid sign "×" is ignored)."""
    return text.replace("×", "")


def _suffix(rank: str, kingdom: str, klass: str) -> str:
    if rank == "family":
        return "idae" if kingdom == "Animalia" else "aceae"
    if kingdom != "Animalia":
        return "ales"
    if klass in _VERTEBRATES:
        return "iformes"
    return "optera" if klass == "Insecta" else "ida"


@functools.cache
def species_table() -> tuple[tuple[str, str, str], ...]:
    """Return (name, genus, specific_epithet) of the 10,000 species in id order."""
    text = resources.files("inat_hf").joinpath("data/inat2021_species.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    if [int(r["id"]) for r in rows] != list(range(N_SPECIES)):
        raise ValueError("inat2021_species.csv must list ids 0..9999 in order")
    return tuple((r["name"], r["genus"], r["specific_epithet"]) for r in rows)


def _parse_pins(text: str) -> dict[str, list[tuple[str | None, str, str]]]:
    """Parse "Class: Name First[-Last], ..." lines into {class: [(name or None, first genus, last genus)]}."""
    pins: dict[str, list[tuple[str | None, str, str]]] = {}
    joined = text.replace("\n ", " ")
    for line in filter(None, (raw.strip() for raw in joined.splitlines())):
        klass, _, body = line.partition(":")
        for item in body.split(","):
            name, genera = item.split()
            first, _, last = genera.partition("-")
            pins.setdefault(klass.strip(), []).append((None if name == "-" else name, first, last or first))
    return pins


@dataclass
class _Layout:
    """Where the order and family boundaries are, and which names are pinned to real ones."""

    genus: list[str]
    key: list[str]
    class_ranges: list[tuple[int, int]]
    run_starts: set[int]
    order_starts: dict[int, str | None] = field(default_factory=dict)  # start id -> real name or None
    family_pins: dict[int, tuple[int, str]] = field(default_factory=dict)  # start id -> (end id, real name)
    no_cut: set[int] = field(default_factory=set)  # ids that must not start a family (inside a pinned one)
    pools: dict[int, Pool] = field(default_factory=dict)

    def pool(self, klass: int) -> Pool:
        """Return the sorted stems of the genera of a class (names for taxa named after absent genera)."""
        if klass not in self.pools:
            a, b = self.class_ranges[klass]
            self.pools[klass] = Pool(sorted({stem(g) for g in self.genus[a:b]}))
        return self.pools[klass]

    def class_index(self, i: int) -> int:
        return next(k for k, (a, b) in enumerate(self.class_ranges) if a <= i < b)

    def span(self, klass: int, first: str, last: str) -> tuple[int, int]:
        a, b = self.class_ranges[klass]
        lo = next(i for i in range(a, b) if self.genus[i] == first)
        hi = max(i for i in range(a, b) if self.genus[i] == last)
        return lo, hi + 1


def _layout_with_pins() -> _Layout:
    table = species_table()
    genus = [g for _, g, _ in table]
    starts = [c[0] for c in data.CLASS_TABLE] + [N_SPECIES]
    layout = _Layout(
        genus=genus,
        key=[sort_key(f"{g}_{e}") for _, g, e in table],
        class_ranges=list(itertools.pairwise(starts)),
        run_starts={0} | {p for p in range(1, N_SPECIES) if genus[p] != genus[p - 1]},
    )
    if not set(starts[:-1]) <= layout.run_starts:
        raise ValueError("a genus straddles a class boundary")
    index = {c[3]: k for k, c in enumerate(data.CLASS_TABLE)}
    layout.order_starts = dict.fromkeys(starts[:-1])
    for klass, items in _parse_pins(data.ORDER_PINS).items():
        order_starts = [layout.span(index[klass], first, first)[0] for _, first, _ in items]
        if order_starts[0] != starts[index[klass]] or order_starts != sorted(set(order_starts)):
            raise ValueError(f"the order pins of {klass} must start at the class and rise")
        layout.order_starts.update(zip(order_starts, (name for name, _, _ in items), strict=True))
    for klass, items in _parse_pins(data.FAMILY_PINS).items():
        for name, first, last in items:
            lo, hi = layout.span(index[klass], first, last)
            layout.family_pins[lo] = (hi, name or "")
            layout.no_cut.update(range(lo + 1, hi))
    return layout


def _required_family_cuts(layout: _Layout) -> set[int]:
    descents = {p for p in range(1, N_SPECIES) if layout.key[p] <= layout.key[p - 1]}
    pinned_ends = {end for end, _ in layout.family_pins.values() if end < N_SPECIES}
    cuts = set(layout.order_starts) | descents | set(layout.family_pins) | pinned_ends
    if cuts & layout.no_cut:
        raise ValueError(f"a pinned family spans a required boundary at {sorted(cuts & layout.no_cut)[:5]}")
    return cuts


def _add_orders(layout: _Layout, family_cuts: set[int], target: int) -> None:
    """Split the orders with the most families until there are ``target`` orders (new ones are unnamed)."""
    while len(layout.order_starts) < target:
        bounds = [*sorted(layout.order_starts), N_SPECIES]
        spans = [(sum(a < p < b for p in family_cuts), a, b) for a, b in itertools.pairwise(bounds)]
        count, a, b = max(spans)
        if count == 0:
            raise ValueError("no order left to split")
        middle = (a + b) / 2
        split = min((p for p in family_cuts if a < p < b), key=lambda p: (abs(p - middle), p))
        layout.order_starts[split] = None


def _alphabet_code(genus: str) -> int:
    letters = (genus.lower() + "aaaa")[:4]
    return sum((ord(c) - 96 if c.isalpha() else 0) * 27 ** (3 - k) for k, c in enumerate(letters))


def _family_items(layout: _Layout, cuts: list[int], start: int, end: int) -> list[tuple[str | None, list[str]]]:
    """Return (pinned name or None, genera) of each family of the order [start, end)."""
    lo, hi = bisect.bisect_left(cuts, start), bisect.bisect_left(cuts, end)
    bounds = [*cuts[lo:hi], end]
    return [(_pinned_family(layout, x, y), layout.genus[x:y]) for x, y in itertools.pairwise(bounds)]


def _naming_cost(layout: _Layout, cuts: list[int], span: tuple[int, int], suffix: str, pool: Pool) -> float:
    try:
        items = _family_items(layout, cuts, *span)
        return name_sequence(items, suffix, set(), pool, commit=False)[1]
    except ValueError:
        return math.inf


def _add_families(layout: _Layout, family_cuts: set[int], target: int) -> None:
    """Split the segment with the most genera until ``target`` families.

    A segment is split at its widest alphabetical gap among the places that keep the family names of its
    order rising without more prefixed names (or, failing that, the fewest more).
    """
    runs = sorted(layout.run_starts)
    order_bounds = [*sorted(layout.order_starts), N_SPECIES]

    def size(a: int, b: int) -> int:
        return bisect.bisect_left(runs, b) - bisect.bisect_left(runs, a)

    base_costs: dict[int, float] = {}  # order start -> naming cost of its families as they are now
    heap = [(-size(a, b), a, b) for a, b in itertools.pairwise([*sorted(family_cuts), N_SPECIES])]
    heapq.heapify(heap)
    while len(family_cuts) < target:
        if not heap:
            raise ValueError("no segment left to split into families")
        _, a, b = heapq.heappop(heap)
        lo, hi = bisect.bisect_right(runs, a), bisect.bisect_left(runs, b)
        candidates = [p for p in runs[lo:hi] if p not in layout.no_cut]
        k = bisect.bisect_right(order_bounds, a) - 1
        o_start, o_end = order_bounds[k], order_bounds[k + 1]
        klass_index = layout.class_index(a)
        kingdom, _, klass = data.CLASS_TABLE[klass_index][1:]
        suffix = _suffix("family", kingdom, klass)
        pool = layout.pool(klass_index)
        cuts = sorted(family_cuts)
        if o_start not in base_costs:
            base_costs[o_start] = _naming_cost(layout, cuts, (o_start, o_end), suffix, pool)
        base = base_costs[o_start]

        def score(p: int, lo: int = lo, hi: int = hi) -> float:
            j = bisect.bisect_left(runs, p)
            gap = _alphabet_code(layout.genus[p]) - _alphabet_code(layout.genus[p - 1])
            return gap * min(j - lo + 1, hi - j) ** 0.3

        best: tuple[float, int] | None = None
        for p in sorted(candidates, key=lambda p: (-score(p), p))[:5]:
            cost = _naming_cost(layout, sorted([*cuts, p]), (o_start, o_end), suffix, pool)
            if cost < math.inf and (best is None or cost < best[0]):
                best = (cost, p)
            if cost <= base:
                break
        if best is None:
            continue
        base_costs[o_start], split = best
        family_cuts.add(split)
        heapq.heappush(heap, (-size(a, split), a, split))
        heapq.heappush(heap, (-size(split, b), split, b))


def _assign_names(layout: _Layout, family_cuts: set[int]) -> tuple[list[str], list[str]]:
    """Return the order and family name of every species id."""
    order_of = [""] * N_SPECIES
    family_of = [""] * N_SPECIES
    used_orders = {n for n in layout.order_starts.values() if n}
    used_families = {name for _, name in layout.family_pins.values()}
    order_bounds = [*sorted(layout.order_starts), N_SPECIES]
    cuts = sorted(family_cuts)
    for k, (a, b) in enumerate(layout.class_ranges):
        kingdom, _, klass = data.CLASS_TABLE[k][1:]
        pool = layout.pool(k)
        orders = [(s, e) for s, e in itertools.pairwise(order_bounds) if a <= s < b]
        items = [(layout.order_starts[s], layout.genus[s:e]) for s, e in orders]
        names, _ = name_sequence(items, _suffix("order", kingdom, klass), used_orders, pool)
        for (s, e), name in zip(orders, names, strict=True):
            order_of[s:e] = [name] * (e - s)
            family_suffix = _suffix("family", kingdom, klass)
            fnames, _ = name_sequence(_family_items(layout, cuts, s, e), family_suffix, used_families, pool)
            bounds = [*(c for c in cuts if s <= c < e), e]
            for (x, y), fname in zip(itertools.pairwise(bounds), fnames, strict=True):
                family_of[x:y] = [fname] * (y - x)
    return order_of, family_of


def _pinned_family(layout: _Layout, start: int, end: int) -> str | None:
    pin = layout.family_pins.get(start)
    if pin is None:
        return None
    if pin[0] != end:
        raise ValueError(f"pinned family {pin[1]} ends at {pin[0]}, not {end}")
    return pin[1]


def _supercategory(kingdom: str, phylum: str, klass: str) -> str:
    return (
        data.SUPERCATEGORY_OF_KINGDOM.get(kingdom)
        or data.SUPERCATEGORY_OF_PHYLUM.get(phylum)
        or data.SUPERCATEGORY_OF_CLASS.get(klass, "Animalia")
    )


def _common_name(i: int, name: str, epithet: str, kingdom: str, klass: str, family: str) -> str:
    if i < len(data.FIRST40_COMMON_NAMES):
        return data.FIRST40_COMMON_NAMES[i]
    if i in data.ANCHOR_COMMON_NAMES:
        return data.ANCHOR_COMMON_NAMES[i]
    word = epithet.lstrip("×").lower()
    stems = [s for s in data.EPITHET_ADJECTIVES if word.startswith(s)]
    if not stems:
        return name
    nouns = data.CLASS_NOUNS.get(klass, data.DEFAULT_NOUNS[kingdom])
    noun = nouns[zlib.crc32(family.encode()) % len(nouns)]
    return f"{data.EPITHET_ADJECTIVES[max(stems, key=len)]} {noun}"


@functools.cache
def _categories() -> tuple[dict[str, object], ...]:
    layout = _layout_with_pins()
    family_cuts = _required_family_cuts(layout)
    _add_orders(layout, family_cuts, N_ORDERS)
    _add_families(layout, family_cuts, N_FAMILIES)
    order_of, family_of = _assign_names(layout, family_cuts)
    records = []
    for i, (name, genus, epithet) in enumerate(species_table()):
        _, kingdom, phylum, klass = data.CLASS_TABLE[layout.class_index(i)]
        ranks = (kingdom, phylum, klass, order_of[i], family_of[i], genus, epithet)
        records.append(
            {
                "id": i,
                "name": name,
                "common_name": _common_name(i, name, epithet, kingdom, klass, family_of[i]),
                "supercategory": _supercategory(kingdom, phylum, klass),
                "kingdom": kingdom,
                "phylum": phylum,
                "class": klass,
                "order": order_of[i],
                "family": family_of[i],
                "genus": genus,
                "specific_epithet": epithet,
                "image_dir_name": f"{i:05d}_" + "_".join(ranks),
            }
        )
    return tuple(records)


def species_categories() -> list[dict[str, object]]:
    """Return the 10,000 category records in id order (fresh dicts; the build is cached)."""
    return [dict(record) for record in _categories()]
