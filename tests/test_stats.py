"""Partition statistics, plots, the per-user table and the ``inat-fl stats`` command."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from PIL import Image

from inat_hf import storage
from inat_hf.analysis.plots import label_matrix, plot_client_sizes, plot_label_heatmap
from inat_hf.analysis.stats import compute_stats, format_stats, label_skew, train_rows
from inat_hf.cli import main
from inat_hf.config import config_for
from inat_hf.errors import MetadataError
from inat_hf.manifest import Manifest, build_manifest
from inat_hf.metadata import load_metadata
from inat_hf.metadata.users import (
    USER_COLUMNS,
    cross_check_user_table,
    read_user_table,
    user_table,
    write_user_table,
)

# --- a hand-made manifest with known answers --------------------------------------------------------------
# train: client 0 labels [0, 0, 1, 1], client 1 [0], client 2 [2, 2, 2]; client 3 is held out (2 test rows);
# one validation row; three dropped rows. Global train label distribution q = [3/8, 2/8, 3/8, 0].
# TV: client 0 = 0.5 * (|.5 - .375| + |.5 - .25| + .375) = 0.375; client 1 = 1 - 3/8; client 2 = 1 - 3/8.
HAND_TV = [0.375, 0.625, 0.625]


def hand_made_manifest() -> Manifest:
    table = pa.table(
        {
            "client_id": pa.array([0, 0, 0, 0, 1, 2, 2, 2, 3, 3, -1], type=pa.int64()),
            "split": ["train"] * 8 + ["test"] * 2 + ["validation"],
            "label": pa.array([0, 0, 1, 1, 0, 2, 2, 2, 3, 3, 1], type=pa.int32()),
        }
    )
    clients = pa.table(
        {
            "client_id": pa.array([0, 1, 2, 3], type=pa.int64()),
            "train_offset": pa.array([0, 4, 5, 8], type=pa.int64()),
            "train_length": pa.array([4, 1, 3, 0], type=pa.int64()),
            "test_offset": pa.array([8, 8, 8, 8], type=pa.int64()),
            "test_length": pa.array([0, 0, 0, 2], type=pa.int64()),
            "heldout": [False, False, False, True],
        }
    )
    dropped = pa.table(
        {
            "image_id": pa.array([100, 101, 102], type=pa.int64()),
            "split": ["train"] * 3,
            "reason": ["client_too_small", "client_too_small", "no_user"],
        }
    )
    return Manifest(table, clients, dropped, ("a", "b", "c", "d"), "hand")


def test_hand_made_manifest_known_answers() -> None:
    stats = compute_stats(hand_made_manifest(), "family_user")
    assert (stats.num_clients, stats.heldout_clients, stats.train_clients) == (4, 1, 3)
    assert (stats.num_labels, stats.labels_in_train) == (4, 3)
    assert stats.examples == {"train": 8, "test": 2, "validation": 1}
    assert stats.dropped == {"client_too_small": 2, "no_user": 1}
    size = stats.client_size
    assert (size.min, size.median, size.max) == (1, 3, 4)
    assert size.p10 == pytest.approx(1.4) and size.p90 == pytest.approx(3.8) and size.mean == pytest.approx(8 / 3)
    classes = stats.classes_per_client
    assert (classes.min, classes.median, classes.max) == (1, 1, 2)
    assert classes.mean == pytest.approx(4 / 3)
    assert stats.label_skew_tv == pytest.approx(sum(HAND_TV) / 3)
    assert stats.label_skew_tv_weighted == pytest.approx(0.5)  # (4 * .375 + 1 * .625 + 3 * .625) / 8


def test_label_skew_per_client() -> None:
    clients, labels = train_rows(hand_made_manifest())
    tv, classes, sizes = label_skew(clients, labels, num_clients=4, num_labels=4)
    assert tv[:3] == pytest.approx(HAND_TV)
    assert math.isnan(tv[3])
    assert classes.tolist() == [2, 1, 1, 0]
    assert sizes.tolist() == [4, 1, 3, 0]


def test_label_skew_is_zero_for_identical_clients_and_one_for_disjoint() -> None:
    same, _, _ = label_skew(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 0]), 2, 2)
    assert same.tolist() == [0.0, 0.0]
    disjoint, _, _ = label_skew(np.array([0, 1]), np.array([0, 1]), 2, 5)
    assert disjoint.tolist() == [0.5, 0.5]  # each client has half of the global mass on the other's label


@pytest.mark.parametrize(
    ("clients", "labels", "match"),
    [([0, 5], [0, 1], "client ids must lie in"), ([0, 1], [0, -1], "labels must lie in"), ([0], [0, 1], "shape")],
)
def test_label_skew_rejects_bad_ids(clients: list[int], labels: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        label_skew(np.array(clients), np.array(labels), 2, 3)


def test_format_and_to_dict() -> None:
    stats = compute_stats(hand_made_manifest(), "family_user")
    text = format_stats(stats)
    for needle in ("family_user", "client_too_small", "no_user", "1 / 1.4 / 3 / 3.8 / 4", "0.542", "0.500"):
        assert needle in text
    widths = {re.search(r"\S {2,}(?=\S)", line).end() for line in text.splitlines()}
    assert len(widths) == 1  # values start in one column
    assert json.loads(json.dumps(stats.to_dict())) == stats.to_dict()


def test_manifest_without_train_rows() -> None:
    manifest = hand_made_manifest()
    only_validation = pa.Table.from_batches([], schema=manifest.table.schema)
    empty = Manifest(only_validation, manifest.clients.slice(0, 0), manifest.dropped, ("a",), "")
    stats = compute_stats(empty)
    assert stats.train_clients == 0 and math.isnan(stats.label_skew_tv)
    assert stats.to_dict()["client_size"]["median"] is None
    assert "-" in format_stats(stats)


# --- the replica -------------------------------------------------------------------------------------------


def dense_label_counts(manifest: Manifest) -> np.ndarray:
    clients, labels = train_rows(manifest)
    counts = np.zeros((manifest.num_clients, len(manifest.label_names)))
    np.add.at(counts, (clients, labels), 1)
    return counts


def test_stats_on_tiny_replica_agree_with_dense(tiny_replica) -> None:
    images = load_metadata(tiny_replica.url)
    manifest = build_manifest(images, config_for("genus_user", test_fraction=0.2, holdout_client_fraction=0.2))
    stats = compute_stats(manifest)
    counts = dense_label_counts(manifest)
    sizes = counts.sum(axis=1)
    active = sizes > 0
    p = counts[active] / sizes[active, None]
    q = counts.sum(axis=0) / counts.sum()
    tv = 0.5 * np.abs(p - q).sum(axis=1)
    assert stats.label_skew_tv == pytest.approx(tv.mean())
    assert stats.label_skew_tv_weighted == pytest.approx(np.average(tv, weights=sizes[active]))
    assert stats.client_size.median == pytest.approx(np.median(sizes[active]))
    assert stats.client_size.p90 == pytest.approx(np.percentile(sizes[active], 90))
    assert stats.classes_per_client.mean == pytest.approx((counts[active] > 0).sum(axis=1).mean())
    assert stats.heldout_clients == int(manifest.clients["heldout"].to_numpy().sum()) > 0
    assert stats.examples["train"] == int(sizes.sum())
    assert sum(stats.examples.values()) == manifest.table.num_rows
    train_in = tiny_replica.counts.train_images
    assert stats.examples["train"] + stats.examples["test"] + sum(stats.dropped.values()) == train_in


def test_iid_partition_is_far_less_skewed_than_users(small_metadata) -> None:
    images = load_metadata(small_metadata.url)
    by_user = compute_stats(build_manifest(images, config_for("family_user")))
    iid = compute_stats(build_manifest(images, config_for("family_iid", num_partitions=20)))
    assert iid.label_skew_tv < by_user.label_skew_tv / 2
    assert iid.label_skew_tv_weighted < by_user.label_skew_tv_weighted / 2
    assert by_user.label_skew_tv > 0.5


# --- plots ------------------------------------------------------------------------------------------------


def _png(path: Path | bytes) -> tuple[int, int]:
    import io

    with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def test_plots_are_valid_pngs(small_metadata, tmp_path: Path) -> None:
    manifest = build_manifest(load_metadata(small_metadata.url), config_for("species_user"))
    plot_client_sizes(manifest, tmp_path / "sizes.png", config_name="species_user")
    plot_label_heatmap(manifest, tmp_path / "heat.png", top_clients=30, top_labels=40, config_name="species_user")
    width, height = _png(tmp_path / "sizes.png")
    assert 600 <= width <= 3000 and 300 <= height <= 2000
    width, height = _png(tmp_path / "heat.png")
    assert 800 <= width <= 4000 and 600 <= height <= 4000


def test_plot_to_an_fsspec_url() -> None:
    manifest = hand_made_manifest()
    plot_label_heatmap(manifest, "memory://stats-test/heat.png", config_name="hand")
    plot_client_sizes(manifest, "memory://stats-test/sizes.png")
    location = storage.resolve("memory://stats-test")
    assert min(_png(storage.read_bytes(location, "heat.png"))) > 100
    assert min(_png(storage.read_bytes(location, "sizes.png"))) > 100


def test_label_matrix_picks_the_largest_clients_and_commonest_labels(small_metadata) -> None:
    manifest = build_manifest(load_metadata(small_metadata.url), config_for("family_user"))
    fractions, clients, labels, sizes = label_matrix(manifest, top_clients=5, top_labels=7)
    counts = dense_label_counts(manifest)
    all_sizes = counts.sum(axis=1)
    assert fractions.shape == (5, 7)
    assert sizes.tolist() == sorted(all_sizes, reverse=True)[:5]
    assert counts.sum(axis=0)[labels].tolist() == sorted(counts.sum(axis=0), reverse=True)[:7]
    assert fractions == pytest.approx(counts[np.ix_(clients, labels)] / all_sizes[clients, None])
    with pytest.raises(ValueError, match="top_clients"):
        label_matrix(manifest, top_clients=0)


# --- the per-user table --------------------------------------------------------------------------------------


def naive_user_table(images: pa.Table) -> dict[str, tuple[int, ...]]:
    sets: dict[str, list] = defaultdict(lambda: [0, set(), set(), set(), set()])
    for row in images.filter(pc.equal(images["split"], "train")).to_pylist():
        entry = sets[row["user"]]
        entry[0] += 1
        for i, rank in enumerate(("phylum", "class", "order", "species"), start=1):
            entry[i].add(row[rank])
    return {user: (e[0], *(len(s) for s in e[1:])) for user, e in sets.items()}


def test_user_table_matches_a_naive_count(tiny_replica) -> None:
    images = load_metadata(tiny_replica.url)
    table = user_table(images)
    assert table.column_names == list(USER_COLUMNS)
    assert table["user"].to_pylist() == sorted(table["user"].to_pylist())
    got = {row["user"]: tuple(row[c] for c in USER_COLUMNS[1:]) for row in table.to_pylist()}
    assert got == naive_user_table(images)
    assert sum(table["images"].to_pylist()) == tiny_replica.counts.train_images
    assert table.num_rows == tiny_replica.counts.users


def test_user_table_round_trip_and_cross_check(tiny_replica, tmp_path: Path) -> None:
    images = load_metadata(tiny_replica.url)
    table = user_table(images)
    url = str(tmp_path / "images_and_categories_per_users.csv")
    write_user_table(table, url)
    back = read_user_table(url)
    assert back.equals(table)
    assert cross_check_user_table(images, back) == []

    altered = back.to_pylist()
    altered[2]["species"] += 1
    lost = altered.pop(0)["user"]
    problems = cross_check_user_table(images, pa.Table.from_pylist(altered, schema=back.schema))
    assert len(problems) == 2
    assert "in the images table but not in the user table" in problems[0] and repr(lost) in problems[0]
    assert repr(altered[1]["user"]) in problems[1] and "species" in problems[1]

    stranger = pa.concat_tables([back, pa.table({c: [("nobody" if c == "user" else 1)] for c in USER_COLUMNS})])
    (problem,) = cross_check_user_table(images, stranger.cast(back.schema))
    assert "in the user table but not in the images table" in problem and "'nobody'" in problem


def test_read_user_table_tolerates_index_and_name_variants(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(
        ",rights_holder,num_images,Number of phylum,n_classes,order,categories\n"
        "0,bob,3,1,2,2,3\n1,alice,1,1,1,1,1\n2,007,2,1,1,1,2\n"
    )
    table = read_user_table(str(path))
    assert table.column_names == list(USER_COLUMNS)
    assert table["user"].to_pylist() == ["007", "alice", "bob"]  # user names stay strings
    assert table["images"].to_pylist() == [2, 1, 3]
    assert table["classes"].to_pylist() == [1, 1, 2]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("user,images,phyla,classes,species\nbob,1,1,1,1\n", r"users\.csv.*\['orders'\] missing.*Fix"),
        ("user,images,phyla,classes,orders,species\nbob,1,1,one,1,1\n", r"users\.csv.*not a readable.*Fix"),
        ("user,images,phyla,classes,orders,species\nbob,1,1,,1,1\n", r"users\.csv.*'classes' has 1 empty"),
        ("user,images,phyla,classes,orders,species\nbob,-1,1,1,1,1\n", r"users\.csv.*'images' has negative"),
        ("user,images,phyla,classes,orders,species\nbob,1,1,1,1,1\nbob,2,1,1,1,1\n", r"\['bob'\].*more than once"),
        ("user,n_images,images,phyla,classes,orders,species\nbob,1,1,1,1,1,1\n", r"all look like 'images'"),
    ],
)
def test_read_user_table_rejects_bad_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "users.csv"
    path.write_text(text)
    with pytest.raises(MetadataError, match=match):
        read_user_table(str(path))


# --- the command line ----------------------------------------------------------------------------------------


def test_cli_stats_end_to_end(tiny_replica, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "stats"
    argv = ["stats", "family_user", "--data-dir", tiny_replica.url, "--out", str(out)]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--set", "test_fraction=0.25", "--set", "max_clients=none"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    names = ("stats.json", "client_sizes.png", "label_heatmap.png", "images_and_categories_per_users.csv")
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert str(out / "client_sizes.png") in printed and str(out / "label_heatmap.png") in printed
    assert "label skew (TV to global)" in printed and "family_user" in printed
    report = json.loads((out / "stats.json").read_text())
    assert report["config_name"] == "family_user"
    assert report["config_fields"]["test_fraction"] == 0.25 and report["config_fields"]["max_clients"] is None
    manifest = build_manifest(load_metadata(tiny_replica.url), config_for("family_user", test_fraction=0.25))
    expected = compute_stats(manifest, "family_user").to_dict()
    assert {k: v for k, v in report.items() if k not in ("config_fields", "fingerprint")} == {
        k: v for k, v in expected.items() if k != "fingerprint"
    }
    assert report["examples"]["test"] > 0
    for name in ("client_sizes.png", "label_heatmap.png"):
        assert min(_png(out / name)) > 200
    users = read_user_table(str(out / "images_and_categories_per_users.csv"))
    assert cross_check_user_table(load_metadata(tiny_replica.url), users) == []


def test_cli_stats_rejects_bad_overrides(tiny_replica, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["stats", "family_user", "--data-dir", tiny_replica.url, "--out", str(tmp_path / "o")]
    assert main([*argv, "--cache-dir", str(tmp_path / "c"), "--set", "min_client_size=-3"]) == 2
    assert "min_client_size" in capsys.readouterr().err
    assert main([*argv, "--set", "min_client_size"]) == 2
    assert "--set 'min_client_size': expected FIELD=VALUE" in capsys.readouterr().err
