"""The generative model of the replica's image records (vectorised numpy; no I/O).

Per-species train counts (fixed, independent of the seed)
    Inside each supercategory, ``k`` species sit at the cap of 300 and the others get counts from 152 to
    299 (quantiles of ``152 + 147 * u**gamma``, with ``gamma`` solved so the totals match), with
    ``k = round((T - 218 n) / 82)`` for ``n`` species and ``T`` images (the real table), so that every
    supercategory total, and the grand total of 2,686,843, are exact and about 6,200 species are capped.
    Smaller scales take ``max(1, round(count * count_scale))`` of the chosen species.
Users
    ``users`` user sizes from a discretised log-normal (median ``USER_MEDIAN`` images, sigma
    ``USER_SIGMA``: most users have a handful of images, a few have thousands), rescaled to sum exactly to
    the number of train images. Each user has a home region (a mixture of observer hotspots, ``REGIONS``),
    1-3 taxonomic interests (centres on the taxonomic axis, drawn like a random image, with weights from a
    Dirichlet), a default licence; users picked in random order (none bigger than a quarter of the budget) until they
    hold ``P_OBSCURED_IMAGES`` of the images are "obscured" (never share a location).
Assignment (exact margins)
    Every train image slot gets the key ``taxonomic position of its species + tiny jitter``; every user slot
    (one per image the user took) gets ``one of the user's interest centres + N(0, INTEREST_SPREAD)``. Both
    are argsorted and paired, so per-species counts and per-user sizes are both exact while users stay
    taxonomically focused (non-IID labels). Val images (``val_per_species`` per species) take the user of
    a random train image of the same species.
Image fields
    width/height: longer side 500 px (90%; else 240-499), aspect ratio from 1:1, 4:3, 3:2, 16:9 or a
    random one, 75% landscape (with an image side ``S``, e.g. 32 for tiny JPEGs: longer side ``S`` (90%; else
    ``S // 2`` to ``S - 1``), the JPEGs drawn at that size). Licence: the user's default (90%) or
    another. Date: year 2008-2020 with weights growing 40% a year, season peaking in the local summer,
    daytime minutes (8% midnight, i.e. date only). Latitude/longitude: home + N(0, 0.6 deg) (7% of images
    are taken on a trip to another region), rounded to 5 decimals, null for obscured users and for 1.5% of
    other images. location_uncertainty: null for 45%, else a log-normal integer (median 30 m), with rare
    raw nonsense (-80, 106807033, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inat_hf.replica import user_names

SUPERCATEGORY_TRAIN: dict[str, int] = {
    "Plants": 1_148_702, "Insects": 663_682, "Birds": 414_847, "Fungi": 90_048, "Reptiles": 86_830,
    "Mammals": 68_917, "Ray-finned Fishes": 45_166, "Amphibians": 46_252, "Mollusks": 44_670,
    "Arachnids": 40_687, "Animalia": 37_042,
}  # fmt: skip
CAP, FLOOR, REST_MEAN = 300, 152, 218
USER_MEDIAN, USER_SIGMA = 3.0, 1.9
INTEREST_SPREAD = 0.012
P_OBSCURED_IMAGES, P_NULL_IMAGE, P_TRIP = 0.025, 0.015, 0.07
# (latitude, longitude, sd latitude, sd longitude, weight) of observer hotspots
REGIONS = np.array([
    (36.5, -120.0, 2.5, 2.5, 14), (41.5, -74.0, 2.5, 4.0, 12), (30.5, -95.0, 2.5, 5.0, 8),
    (47.5, -122.5, 1.5, 1.5, 5), (44.0, -88.0, 2.5, 5.0, 8), (20.0, -100.0, 3.0, 4.0, 6),
    (9.5, -84.0, 1.5, 1.5, 2), (-15.0, -52.0, 8.0, 8.0, 3), (50.0, 5.0, 3.5, 6.0, 9),
    (52.5, -1.5, 2.0, 2.0, 3), (42.0, 12.0, 3.0, 5.0, 3), (56.0, 40.0, 3.0, 10.0, 3),
    (-33.5, 20.0, 2.0, 4.0, 4), (-33.0, 150.0, 4.0, 3.0, 5), (-41.0, 174.0, 3.0, 2.0, 4),
    (35.0, 136.0, 3.0, 4.0, 2), (23.7, 121.0, 1.0, 0.7, 2), (20.0, 77.0, 6.0, 6.0, 2), (5.0, 105.0, 6.0, 8.0, 2),
])  # fmt: skip
RATIOS = np.array([1.0, 4 / 3, 3 / 2, 16 / 9])
RATIO_WEIGHTS = np.array([0.12, 0.45, 0.25, 0.06])  # the remaining 12%: a random ratio in [1, 2]
LICENSE_WEIGHTS = np.array([0.55, 0.15, 0.08, 0.04, 0.02, 0.06, 0.10])
NONSENSE_UNCERTAINTY = np.array([-80, -1, 0, 106_807_033, 4_294_967_295, 99_999_999])


def full_train_counts() -> np.ndarray:
    """Return the train image count of each of the 10,000 species (exact real totals, fixed)."""
    from inat_hf.replica.taxonomy import species_categories

    supercategory = np.array([c["supercategory"] for c in species_categories()])
    counts = np.zeros(len(supercategory), dtype=np.int64)
    rng = np.random.default_rng(20_210_301)
    for name, total in SUPERCATEGORY_TRAIN.items():
        ids = np.flatnonzero(supercategory == name)
        n = len(ids)
        capped = round((total - REST_MEAN * n) / (CAP - REST_MEAN))
        rest = _spread(n - capped, total - CAP * capped)
        values = np.concatenate([np.full(capped, CAP), rest])
        counts[ids] = rng.permutation(values)
    return counts


def _spread(n: int, total: int) -> np.ndarray:
    """Return ``n`` integers in [FLOOR, CAP - 1] summing to ``total``, spread like ``FLOOR + 147 u**gamma``."""
    u = (np.arange(n) + 0.5) / n
    lo, hi = 0.05, 20.0
    for _ in range(60):  # bisection on gamma for the mean
        gamma = (lo * hi) ** 0.5
        if (FLOOR + (CAP - 1 - FLOOR) * u**gamma).sum() > total:
            lo = gamma
        else:
            hi = gamma
    values = np.floor(FLOOR + (CAP - 1 - FLOOR) * u**gamma).astype(np.int64)
    values[0] = FLOOR
    while (deficit := total - int(values.sum())) != 0:
        room = np.flatnonzero(values < CAP - 1) if deficit > 0 else np.flatnonzero(values > FLOOR)
        if len(room) == 0:
            raise ValueError(f"cannot spread {total} images over {n} species")
        chosen = room[-min(abs(deficit), len(room)) :] if deficit > 0 else room[: min(-deficit, len(room))]
        values[chosen] += np.sign(deficit)
    return values


def user_sizes(n_users: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n_users`` positive sizes with a log-normal long tail, summing exactly to ``total``."""
    raw = USER_MEDIAN * np.exp(rng.normal(0.0, USER_SIGMA, n_users))
    sizes = np.maximum(1, np.floor(raw * (total / raw.sum()))).astype(np.int64)
    largest = np.argsort(-sizes, kind="stable")
    while (excess := int(sizes.sum()) - total) != 0:  # a few rounds at most
        k = min(n_users, abs(excess))
        step = np.sign(excess) * np.ones(k, dtype=np.int64)
        top = largest[:k]
        sizes[top] = np.maximum(1, sizes[top] - step)
    return sizes


@dataclass(frozen=True)
class Users:
    """Per-user attributes (index = user number)."""

    names: np.ndarray  # object array of unique rights_holder strings
    home: np.ndarray  # (n, 2) latitude, longitude of home
    region: np.ndarray  # hotspot index of home
    obscured: np.ndarray  # bool
    license: np.ndarray  # default licence id


def _obscured(sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pick users in random order while their images stay within ``P_OBSCURED_IMAGES`` of all images."""
    order = rng.permutation(len(sizes))
    budget = P_OBSCURED_IMAGES * sizes.sum()
    fits = np.cumsum(np.where(sizes[order] <= budget / 4, sizes[order], 0)) <= budget
    chosen = order[fits & (sizes[order] <= budget / 4)]
    obscured = np.zeros(len(sizes), dtype=bool)
    obscured[chosen] = True
    return obscured


def make_users(sizes: np.ndarray, rng: np.random.Generator) -> Users:
    """Return the attributes of ``len(sizes)`` users (``sizes``: their train image counts)."""
    n_users = len(sizes)
    weights = REGIONS[:, 4] / REGIONS[:, 4].sum()
    region = rng.choice(len(REGIONS), n_users, p=weights)
    home = REGIONS[region, :2] + rng.normal(size=(n_users, 2)) * REGIONS[region, 2:4]
    return Users(
        names=user_names.rights_holders(n_users, rng),
        home=home,
        region=region,
        obscured=_obscured(sizes, rng),
        license=rng.choice(len(LICENSE_WEIGHTS), n_users, p=LICENSE_WEIGHTS),
    )


def assign_users(species_position: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return the user of each image slot; exact per-species counts and per-user sizes (see module doc).

    ``species_position``: (n_images,) taxonomic position in [0, 1) of each image's species.
    """
    n_users, n_images = len(sizes), len(species_position)
    n_interests = rng.integers(1, 4, n_users)
    centres = species_position[rng.integers(0, n_images, (n_users, 3))]
    shares = rng.dirichlet(np.ones(3), n_users) * (np.arange(3) < n_interests[:, None])
    shares /= shares.sum(axis=1, keepdims=True)
    slot_user = np.repeat(np.arange(n_users), sizes)
    cumulative = np.cumsum(shares, axis=1)[slot_user]
    pick = (rng.random(len(slot_user))[:, None] > cumulative).sum(axis=1).clip(0, 2)
    user_key = centres[slot_user, pick] + rng.normal(0.0, INTEREST_SPREAD, len(slot_user))
    image_key = species_position + rng.random(n_images) * 1e-6
    assignment = np.empty(n_images, dtype=np.int64)
    assignment[np.argsort(image_key, kind="stable")] = slot_user[np.argsort(user_key, kind="stable")]
    return assignment


def image_sizes(n: int, side: int | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return (width, height) arrays: realistic aspect ratios, longer side usually 500 (``side``: usually
    ``side``, else ``side // 2`` to ``side - 1``; ``side=32`` gives the tiny images).
    """
    kind = rng.choice(len(RATIOS) + 1, n, p=np.append(RATIO_WEIGHTS, 1 - RATIO_WEIGHTS.sum()))
    ratio = np.where(kind < len(RATIOS), RATIOS[np.minimum(kind, len(RATIOS) - 1)], 1 + rng.random(n))
    longer = np.where(rng.random(n) < 0.9, 500, rng.integers(240, 500, n))
    if side is not None:
        longer = np.where(rng.random(n) < 0.9, side, rng.integers(side // 2, side, n))
    shorter = np.maximum(1, np.round(longer / ratio)).astype(np.int64)
    landscape = rng.random(n) < 0.75
    return np.where(landscape, longer, shorter), np.where(landscape, shorter, longer)


def dates(latitude: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """Return "YYYY-MM-DD HH:MM:00+00:00" strings, recent years and the local summer more likely."""
    n = len(latitude)
    years = np.arange(2008, 2021)
    weights = 1.4 ** (years - years[0])
    year = rng.choice(years, n, p=weights / weights.sum())
    summer = np.where(np.nan_to_num(latitude) < 0, 15, 196)  # mid-January south, mid-July north
    day = np.mod(np.round(summer + rng.normal(0, 70, n)), 365).astype(np.int64)
    minute = np.where(rng.random(n) < 0.08, 0, np.clip(rng.normal(13.5 * 60, 180, n), 0, 1439)).astype(np.int64)
    stamp = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]") + day
    stamp = stamp.astype("datetime64[m]") + minute
    return pc.strftime(pa.array(stamp.astype("datetime64[s]")), format="%Y-%m-%d %H:%M:00+00:00")


def locations(user: np.ndarray, users: Users, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return latitude, longitude (NaN = null) and location_uncertainty (-1 sentinel = null) per image."""
    n = len(user)
    centre = users.home[user].copy()
    trip = rng.random(n) < P_TRIP
    weights = REGIONS[:, 4] / REGIONS[:, 4].sum()
    away = rng.choice(len(REGIONS), int(trip.sum()), p=weights)
    centre[trip] = REGIONS[away, :2] + rng.normal(size=(len(away), 2)) * REGIONS[away, 2:4]
    lat = np.clip(centre[:, 0] + rng.normal(0, 0.6, n), -89.9, 89.9)
    lon = np.mod(centre[:, 1] + rng.normal(0, 0.6, n) + 180.0, 360.0) - 180.0
    hidden = users.obscured[user] | (rng.random(n) < P_NULL_IMAGE)
    lat, lon = np.round(lat, 5), np.round(lon, 5)
    lat[hidden] = np.nan
    lon[hidden] = np.nan
    uncertainty = np.round(np.exp(rng.normal(np.log(30), 1.6, n))).astype(np.int64)
    nonsense = rng.random(n) < 0.0005
    uncertainty[nonsense] = rng.choice(NONSENSE_UNCERTAINTY, int(nonsense.sum()))
    uncertainty[(rng.random(n) < 0.45) | hidden] = -1
    return lat, lon, uncertainty


def licenses(user: np.ndarray, users: Users, rng: np.random.Generator) -> np.ndarray:
    """Licence id of each image: mostly its user's own, else drawn from :data:`LICENSE_WEIGHTS`."""
    other = rng.choice(len(LICENSE_WEIGHTS), len(user), p=LICENSE_WEIGHTS)
    return np.where(rng.random(len(user)) < 0.9, users.license[user], other)


def uuid4_strings(n: int, rng: np.random.Generator) -> pa.Array:
    """Return ``n`` deterministic version-4 UUID strings (vectorised)."""
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = digits[raw >> 4]
    hexed[:, 1::2] = digits[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for start, stop, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        out[:, at : at + stop - start] = hexed[:, start:stop]
    return pa.array(out.view("S36").ravel()).cast(pa.string())
