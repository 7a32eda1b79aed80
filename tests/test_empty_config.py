"""A config that keeps no rows says why, in one line naming the config, the rows in and the reason, from every
entry point (the builder, export, prepare, stats, card), before any image is fetched or any file written."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from inat_hf import EmptyConfigError, load_metadata
from inat_hf.cli import main
from inat_hf.config import config_for
from inat_hf.manifest import build_manifest
from inat_hf.prepare import prepare
from inaturalist_fl import INaturalistFL


def geo_on_csv(rows: int) -> str:
    return (
        rf"family_geo1k: keeps 0 of {rows:,} train rows: the processed CSV \(training_image_info\.csv\) has no "
        r"latitude/longitude, which the geo1k scheme needs; use train\.json, whose images have locations, or a "
        r"scheme without locations \(user, dirichlet, iid\)$"
    )


@pytest.fixture(scope="module")
def too_small(tiny_replica) -> tuple[int, str]:
    """A ``min_client_size`` that keeps no user of the tiny replica, and the message it must give: the users and
    the largest one's images counted here from ``train.json`` itself."""
    doc = json.loads((Path(tiny_replica.url) / "train.json").read_text())
    per_user = collections.Counter(image["rights_holder"] for image in doc["images"])
    largest = max(per_user.values())
    message = (
        rf"family_user: keeps 0 of {len(doc['images']):,} train rows: min_client_size={largest + 1:,} keeps 0 of "
        rf"{len(per_user):,} clients \(the largest has {largest:,} rows\)$"
    )
    return largest + 1, message


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def one_error_line(err: str, command: str, pattern: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(f"inat-fl {command}: error: {pattern}", lines[0]), lines[0]


def test_builder(tiny_csv_replica, tiny_replica, too_small, tmp_path):
    rows = tiny_replica.counts.train_images
    with pytest.raises(EmptyConfigError, match=geo_on_csv(rows)) as info:
        INaturalistFL(
            config_name="family_geo1k", data_dir=tiny_csv_replica.url, cache_dir=str(tmp_path)
        ).download_and_prepare()
    assert "\n" not in str(info.value)
    size, message = too_small
    with pytest.raises(EmptyConfigError, match=message):
        builder = INaturalistFL(
            config_name="family_user", data_dir=tiny_replica.url, cache_dir=str(tmp_path), min_client_size=size
        )
        builder.download_and_prepare()
    assert not any(p.suffix in (".arrow", ".parquet") for p in files_under(tmp_path))  # no manifest, no example


def test_export_stops_before_writing_any_config(tiny_csv_replica, tiny_replica, tmp_path, capsys):
    out = tmp_path / "export"
    argv = ["export", str(out), "--data-dir", tiny_csv_replica.url, "--cache-dir", str(tmp_path / "cache")]
    assert main([*argv, "--config", "family_user", "--config", "family_geo1k"]) == 2
    one_error_line(capsys.readouterr().err, "export", geo_on_csv(tiny_replica.counts.train_images))
    assert files_under(out) == []  # family_user, the first config, was not written either


def test_prepare_synchronous_stops_before_any_task(tiny_csv_replica, tiny_replica, too_small, tmp_path, capsys):
    out = tmp_path / "prepared"
    options = {"cache_dir": str(tmp_path / "cache"), "scheduler": "synchronous", "progress": None}
    with pytest.raises(EmptyConfigError, match=geo_on_csv(tiny_replica.counts.train_images)):
        prepare(str(out), tiny_csv_replica.url, ["family_user", "family_geo1k"], images_dir=tiny_replica.url, **options)
    assert files_under(out) == []  # no image fetched, no file, no report
    size, message = too_small
    argv = ["prepare", str(out), "--data-dir", tiny_replica.url, "--scheduler", "synchronous"]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache"), "--set", f"min_client_size={size}"]) == 2
    one_error_line(capsys.readouterr().err, "prepare", message)
    assert files_under(out) == []


def test_stats(tiny_replica, tiny_csv_replica, too_small, tmp_path, capsys):
    size, message = too_small
    out = tmp_path / "stats"
    argv = ["stats", "family_user", "--data-dir", tiny_replica.url, "--out", str(out), "--cache-dir", str(tmp_path)]
    assert main([*argv, "--set", f"min_client_size={size}"]) == 2
    one_error_line(capsys.readouterr().err, "stats", message)
    assert not out.exists()
    argv = [
        "stats",
        "family_geo1k",
        "--data-dir",
        tiny_csv_replica.url,
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path),
    ]
    assert main(argv) == 2
    one_error_line(capsys.readouterr().err, "stats", geo_on_csv(tiny_replica.counts.train_images))
    assert not out.exists()


def test_card(tiny_csv_replica, tiny_replica, tmp_path, capsys):
    card = tmp_path / "card" / "README.md"
    argv = ["card", "--data-dir", tiny_csv_replica.url, "--out", str(card), "--cache-dir", str(tmp_path / "cache")]
    assert main([*argv, "--config", "family_user", "--config", "family_geo1k"]) == 2
    one_error_line(capsys.readouterr().err, "card", geo_on_csv(tiny_replica.counts.train_images))
    assert files_under(card.parent) == []


# --- the other reasons, on the manifest that every entry point builds ------------------------------------------


def _without(tiny_replica, tmp_path: Path, *keys: str) -> str:
    """The tiny replica's train.json with ``keys`` removed from every image."""
    doc = json.loads((Path(tiny_replica.url) / "train.json").read_text())
    for image in doc["images"]:
        for key in keys:
            image.pop(key, None)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_every_reason_names_the_config_and_the_rows(tiny_replica, tmp_path):
    rows = tiny_replica.counts.train_images
    official = load_metadata(tiny_replica.url)
    cases = [
        (official, config_for("family_iid", num_partitions=1000), rf"family_iid: keeps 0 of {rows} train rows: "
         rf"num_partitions=1000 is more than the {rows} rows$"),
        (official, config_for("family_user", train_split="train_mini"), r"family_user: keeps 0 of 0 train_mini "
         r"rows: the metadata holds no 'train_mini' rows \(load it with train_split='train_mini'\)$"),
        (load_metadata(_without(tiny_replica, tmp_path, "rights_holder")), config_for("order_user"),
         rf"order_user: keeps 0 of {rows} train rows: no labelled row has a user \(rights_holder\), which the user "
         r"scheme needs$"),
        (load_metadata(_without(tiny_replica, tmp_path, "latitude", "longitude")), config_for("class_geo300"),
         rf"class_geo300: keeps 0 of {rows} train rows: none of the {rows} labelled rows has a latitude/longitude, "
         r"which the geo300 scheme needs; use a scheme without locations \(user, dirichlet, iid\)$"),
    ]  # fmt: skip
    for images, config, message in cases:
        with pytest.raises(EmptyConfigError, match=message):
            build_manifest(images, config)


def test_a_csv_without_official_folders_gives_no_family(tiny_csv_replica, tiny_replica, tmp_path):
    text = (Path(tiny_csv_replica.url) / "training_image_info.csv").read_text()
    moved = re.sub(r",train/\d{5}_[^/,]+/", ",photos/", text)  # no file in its official folder
    (tmp_path / "training_image_info.csv").write_text(moved)
    images = load_metadata(str(tmp_path))
    rows = tiny_replica.counts.train_images
    message = (
        rf"^family_user: keeps 0 of {rows} train rows: the processed CSV \(training_image_info\.csv\) gives no "
        r"family: its file names are not in the official folders \(train/<image_dir_name>/\.\.\.\) and it has no "
        r"'family' column; use train\.json$"
    )
    with pytest.raises(EmptyConfigError, match=message):
        build_manifest(images, config_for("family_user"))
    assert build_manifest(images, config_for("order_user")).num_clients == tiny_replica.counts.users
