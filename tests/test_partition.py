"""Partition schemes and filters: invariants on parametrised grids, and bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from inat_hf.partition import DROPPED, dirichlet, filters, geo, get_partitioner, iid, user

N = 5_000


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(123)
    users = rng.zipf(1.6, N) % 400
    labels = rng.integers(0, 50, N)
    lat = rng.normal(40, 15, N).clip(-90, 90)
    lon = rng.normal(-90, 40, N).clip(-180, 180)
    lat[rng.random(N) < 0.05] = np.nan
    return {"user_codes": users, "labels": labels, "latitude": lat, "longitude": lon, "num_rows": N}


SCHEMES = [
    ("user", {}),
    ("user", {"group_size": 7}),
    ("geo100", {}),
    ("geo1k", {}),
    ("dirichlet", {"num_partitions": 20, "alpha": 0.3, "min_partition_size": 20}),
    ("dirichlet", {"num_partitions": 5, "alpha": 100.0, "min_partition_size": 0}),
    ("iid", {"num_partitions": 30}),
]


def _check_compact(assignment: np.ndarray) -> None:
    kept = assignment[assignment != DROPPED]
    assert assignment.dtype == np.int64
    assert assignment.min() >= DROPPED
    # Client ids are 0..C-1 and no client is empty; every row is in at most one client by construction.
    assert np.array_equal(np.unique(kept), np.arange(kept.max() + 1))


@pytest.mark.parametrize(("name", "params"), SCHEMES)
def test_same_seed_same_result_and_compact_ids(arrays, name, params):
    part = get_partitioner(name)
    first = part(arrays, rng=np.random.default_rng(7), **params)
    again = part(arrays, rng=np.random.default_rng(7), **params)
    assert first.shape == (N,)
    assert np.array_equal(first, again)
    _check_compact(first)


@pytest.mark.parametrize("name", ["dirichlet", "iid"])
def test_random_schemes_depend_on_the_seed(arrays, name):
    part = get_partitioner(name)
    params = {"num_partitions": 10, "alpha": 0.5, "min_partition_size": 5}
    a = part(arrays, rng=np.random.default_rng(1), **params)
    b = part(arrays, rng=np.random.default_rng(2), **params)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", ["user", "geo300"])
def test_deterministic_schemes_ignore_row_order(arrays, name):
    part = get_partitioner(name)
    perm = np.random.default_rng(3).permutation(N)
    shuffled = {k: (v[perm] if isinstance(v, np.ndarray) else v) for k, v in arrays.items()}
    assert np.array_equal(
        part(arrays, rng=np.random.default_rng(0))[perm], part(shuffled, rng=np.random.default_rng(0))
    )


def test_user_is_one_client_per_distinct_user(arrays):
    codes = arrays["user_codes"]
    assignment = user(codes)
    assert assignment.max() + 1 == np.unique(codes).size
    for client in range(0, assignment.max() + 1, 37):
        assert np.unique(codes[assignment == client]).size == 1
    # Natural ids are numbered in sorted order of the users.
    firsts = [codes[assignment == c][0] for c in range(assignment.max() + 1)]
    assert firsts == sorted(firsts)


def test_user_groups_merge_consecutive_users(arrays):
    codes = arrays["user_codes"]
    grouped = user(codes, group_size=10)
    assert grouped.max() + 1 == -(-np.unique(codes).size // 10)
    assert np.array_equal(grouped, user(codes) // 10)


def test_user_drops_rows_without_user():
    assignment = user(np.array([3, -1, 3, 9]))
    assert assignment.tolist() == [0, DROPPED, 0, 1]


@pytest.mark.parametrize("cap", [50, 100, 1000])
def test_geo_cells_respect_the_cap_and_drop_unlocated(arrays, cap):
    assignment = geo(arrays["latitude"], arrays["longitude"], max_cell_size=cap)
    unlocated = np.isnan(arrays["latitude"])
    assert np.all(assignment[unlocated] == DROPPED)
    assert np.all(assignment[~unlocated] >= 0)
    assert np.bincount(assignment[~unlocated]).max() <= cap


def test_geo_identical_points_stay_together():
    lat = np.full(30, 12.5)
    lon = np.full(30, 100.25)
    assert np.unique(geo(lat, lon, max_cell_size=10)).tolist() == [0]


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_dirichlet_meets_min_partition_size(arrays, alpha):
    assignment = dirichlet(
        arrays["labels"], num_partitions=25, alpha=alpha, min_partition_size=40, rng=np.random.default_rng(0)
    )
    assert np.bincount(assignment).min() >= 40
    assert assignment.max() == 24


def test_dirichlet_small_alpha_is_skewed_large_alpha_is_not(arrays):
    def mean_classes(alpha):
        a = dirichlet(
            arrays["labels"], num_partitions=10, alpha=alpha, min_partition_size=0, rng=np.random.default_rng(0)
        )
        return np.mean([np.unique(arrays["labels"][a == c]).size for c in range(10)])

    assert mean_classes(0.05) < 25 < mean_classes(1000.0)


def test_dirichlet_gives_up_after_bounded_retries(arrays):
    with pytest.raises(ValueError, match=r"min_partition_size=240 rows in max_retries=3"):
        dirichlet(
            arrays["labels"],
            num_partitions=20,
            alpha=0.01,
            min_partition_size=240,
            max_retries=3,
            rng=np.random.default_rng(0),
        )


def test_iid_is_balanced_shuffled_and_label_neutral(arrays):
    labels = np.sort(arrays["labels"])  # sorted input: contiguous shards would be very skewed
    assignment = iid(N, num_partitions=10, rng=np.random.default_rng(0))
    sizes = np.bincount(assignment)
    assert sizes.max() - sizes.min() <= 1
    overall = np.bincount(labels, minlength=50) / N
    for client in range(10):
        mine = np.bincount(labels[assignment == client], minlength=50) / sizes[client]
        assert 0.5 * np.abs(mine - overall).sum() < 0.15  # total variation to the global histogram


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: dirichlet(a["labels"], num_partitions=0, alpha=1.0, rng=np.random.default_rng()), "num_partitions"),
        (lambda a: dirichlet(a["labels"], num_partitions=5, alpha=0.0, rng=np.random.default_rng()), "alpha"),
        (
            lambda a: dirichlet(
                a["labels"], num_partitions=5, alpha=1.0, min_partition_size=-1, rng=np.random.default_rng()
            ),
            "min_partition_size",
        ),
        (lambda a: iid(10, num_partitions=11, rng=np.random.default_rng()), "num_partitions=11"),
        (lambda a: user(a["user_codes"], group_size=0), "group_size"),
        (lambda a: geo(a["latitude"], a["longitude"], max_cell_size=0), "max_cell_size"),
        (lambda a: filters.drop_small_clients(np.zeros(3, np.int64), -2), "min_client_size"),
        (lambda a: filters.keep_largest_clients(np.zeros(3, np.int64), 0), "max_clients"),
        (lambda a: filters.sample_clients(np.zeros(3, np.int64), 1.5, np.random.default_rng()), "client_fraction"),
        (lambda a: filters.holdout_rows(np.zeros(3, np.int64), 1.0, np.random.default_rng()), "test_fraction"),
        (lambda a: get_partitioner("voronoi"), r"unknown scheme 'voronoi'; choose from user, dirichlet, iid, geo"),
    ],
)
def test_bad_parameters_name_the_parameter(arrays, call, message):
    with pytest.raises(ValueError, match=message):
        call(arrays)


def test_filters(arrays):
    assignment = user(arrays["user_codes"])
    sizes = filters.client_sizes(assignment)
    small = filters.renumber(filters.drop_small_clients(assignment, 20))
    assert filters.client_sizes(small).min() >= 20
    assert (small >= 0).sum() == sizes[sizes >= 20].sum()
    top = filters.renumber(filters.keep_largest_clients(assignment, 5))
    assert sorted(filters.client_sizes(top).tolist()) == sorted(np.sort(sizes)[-5:].tolist())
    half = filters.sample_clients(assignment, 0.5, np.random.default_rng(0))
    assert np.unique(half[half >= 0]).size == round(np.unique(assignment).size * 0.5)


def test_holdout_rows_are_per_client(arrays):
    assignment = user(arrays["user_codes"])
    is_test = filters.holdout_rows(assignment, 0.25, np.random.default_rng(0))
    sizes = filters.client_sizes(assignment)
    tests = np.bincount(assignment[is_test], minlength=sizes.size)
    assert np.array_equal(tests, np.round(sizes * 0.25).astype(int))
    held = filters.holdout_clients(assignment, 0.1, np.random.default_rng(0))
    assert held.size == round(sizes.size * 0.1)


@pytest.mark.parametrize(
    "keys",
    [
        np.array([5, 3, 3, 9, 0, 5], dtype=np.int64),  # dense: numbered by counting
        np.array([7, 7, 7], dtype=np.int32),
        np.array([2**40, 3, 2**40, 11], dtype=np.int64),  # sparse: sorted
        np.array([-4, 2, -4, 0], dtype=np.int64),  # negative: sorted
        np.array([3, 1, 2], dtype=np.uint64),
        np.array(["b", "a", "b"]),
        np.zeros(0, dtype=np.int64),
    ],
)
def test_natural_ids_numbers_keys_in_sorted_order(keys):
    from inat_hf.partition import natural_ids

    expected = np.unique(keys, return_inverse=True)[1].reshape(-1)
    got = natural_ids(keys)
    assert got.dtype == np.int64 and got.tolist() == expected.tolist()


def test_client_ids_are_the_sorted_distinct_ids():
    assignment = np.array([4, -1, 0, 4, 9, 0, -1], dtype=np.int64)
    assert filters.client_ids(assignment).tolist() == [0, 4, 9]
    assert filters.client_ids(np.full(3, DROPPED)).tolist() == []
