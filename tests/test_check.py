"""``inat-fl check``: a clean replica, missing and corrupt images, metadata whose counts differ, the per-user
CSV, images apart from the metadata, and a wrong key on Azurite."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from test_secrets import FAKE_KEY, Scanner, bad_connection_string

from inat_hf.cli import main
from inat_hf.metadata import load_metadata
from inat_hf.metadata.users import user_table, write_user_table
from inat_hf.realcopy.check import OFFICIAL_COUNTS, USERS_CSV, check_data, sample_rows
from inat_hf.replica import write_sample

TINY = {"train images": 131, "train species": 20, "train users": 10, "train_mini images": 40,
        "train_mini species": 20, "train_mini users": 8, "train_mini per-species min": 2,
        "train_mini per-species max": 2, "val images": 40}  # fmt: skip
MINI = {k: v for k, v in TINY.items() if not k.startswith("train ")}
"""A copy holding train_mini and val: train_mini's own counts (the replica's 2 per species, as 50 officially)."""


@pytest.fixture
def copy(tiny_replica, tmp_path) -> Path:
    """A writable copy of the tiny replica."""
    return Path(shutil.copytree(tiny_replica.url, tmp_path / "copy"))


def test_clean_replica_passes(tiny_replica, capsys):
    assert main(["check", tiny_replica.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["problems"] == []
    assert report["reference"] == "synthetic replica (scale 'tiny', seed 0)"
    assert {c["what"]: c["found"] for c in report["counts"]} == TINY and all(c["ok"] for c in report["counts"])
    assert [f["name"] for f in report["files"]] == ["train.json", "train_mini.json", "val.json"]
    assert report["images"]["sampled"] == report["images"]["decoded"] == 171  # train + val: what a prepare reads
    assert report["images"]["total_images"] == 171 and report["images"]["rate"] > 0
    assert set(report["images"]["dask_seconds"]) == {"8", "32"}
    assert main(["check", tiny_replica.url, "--sample", "20"]) == 0
    text = capsys.readouterr().out
    assert "20/20 sampled images fetched and decoded" in text and "no problem found" in text


def test_the_sample_is_spread_over_the_users(tiny_replica):
    images = load_metadata(tiny_replica.url)
    picked = sample_rows(images, 10)
    assert picked.num_rows == 10 and len(set(picked["user"].to_pylist())) == 10  # one image of each of 10 users
    assert sample_rows(images, 10).equals(picked) and sample_rows(images, 500).num_rows == images.num_rows


def test_missing_and_corrupt_images_are_flagged(copy, capsys):
    files = sorted((copy / "train").rglob("*.jpg"))
    for path in files[:3]:
        path.unlink()
    for path in files[3:5]:
        path.write_bytes(path.read_bytes()[:200])  # cut short
    assert main(["check", str(copy), "--sample", "1000", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["images"]["missing"] == 3 and report["images"]["corrupt"] == 2
    assert report["images"]["decoded"] == 171 - 5
    areas = [(p["area"], p["message"]) for p in report["problems"]]
    assert [a for a, _ in areas] == ["images", "images"]
    assert "3 of 171 sampled images are missing" in areas[0][1] and "2 of 171 sampled images are corrupt" in areas[1][1]
    assert all(p["fix"] for p in report["problems"])


def test_metadata_whose_counts_differ(copy, capsys):
    data = json.loads((copy / "train.json").read_text())
    dropped = {image["id"] for image in data["images"][:5]}
    data["images"] = data["images"][5:]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in dropped]
    (copy / "train.json").write_text(json.dumps(data))
    (copy / "train_mini.json").unlink()
    report = check_data(str(copy), sample=0)
    found = {c["what"]: (c["found"], c["ok"]) for c in report.counts}
    assert found["train images"] == (126, False) and found["val images"] == (40, True)
    assert "train_mini images" not in found  # not present: not counted
    counts = [p.message for p in report.problems if p.area == "counts"]
    assert counts[0] == "train images: 126 found, 131 expected (-5)"
    assert not report.ok and report.images == {}
    data["info"]["description"] = "iNaturalist 2021"  # not the replica: the official counts are the reference
    (copy / "train.json").write_text(json.dumps(data))
    official = check_data(str(copy), sample=0)
    assert official.reference == "official iNat 2021"
    assert {c["what"]: c["expected"] for c in official.counts} == {
        k: v for k, v in OFFICIAL_COUNTS.items() if not k.startswith("train_mini")
    }
    assert len([p for p in official.problems if p.area == "counts"]) == 4
    assert main(["check", str(copy), "--sample", "0"]) == 1
    assert "4 problem(s)" in capsys.readouterr().out


def test_per_user_csv_is_cross_checked(copy):
    table = user_table(load_metadata(str(copy)))
    write_user_table(table, str(copy / USERS_CSV))
    assert check_data(str(copy), sample=0).users_csv == "agrees with the metadata"
    rows = (copy / USERS_CSV).read_text().splitlines()
    (copy / USERS_CSV).write_text("\n".join(rows[:-1]) + "\n")  # one user less
    report = check_data(str(copy), sample=0)
    assert report.users_csv == "1 difference(s)" and [p.area for p in report.problems] == ["per-user CSV"]
    assert "1 user(s) in the images table but not in the user table" in report.problems[0].message


def test_images_apart_and_missing_metadata(tiny_replica, tmp_path):
    meta = tmp_path / "meta"
    meta.mkdir()
    for name in ("train.json", "val.json"):
        shutil.copy2(Path(tiny_replica.url) / name, meta / name)
    assert not check_data(str(meta), sample=10).ok  # the images are not there
    report = check_data(str(meta), images_dir=tiny_replica.url, sample=10)
    assert report.ok and report.images["decoded"] == 10 and report.images_dir == tiny_replica.url
    empty = check_data(str(tmp_path / "nothing"), sample=10)
    assert [p.area for p in empty.problems] == ["metadata"] and "check the URL" in empty.problems[0].fix


@pytest.mark.azurite
def test_wrong_key_on_azurite_is_a_credential_problem(azurite, az_container, tiny_replica, tmp_path, capfd,
                                                      monkeypatch):  # fmt: skip
    url, options = f"{az_container.url}/inat/2021", az_container.storage_options
    write_sample(url, scale="tiny", seed=0, storage_options=options)
    good = check_data(url, storage_options=options, sample=20)
    assert good.ok and good.images["decoded"] == 20, good.problems
    bad = {"connection_string": bad_connection_string(azurite, "fake account key")}
    report = check_data(url, storage_options=bad, sample=20)
    assert [p.area for p in report.problems] == ["credentials"]
    assert "access denied" in report.problems[0].message and az_container.url in report.problems[0].message
    assert "AZURE_STORAGE_CONNECTION_STRING" in report.problems[0].fix
    images_only = check_data(tiny_replica.url, images_dir=url, image_storage_options=bad, sample=20)
    assert [p.area for p in images_only.problems] == ["credentials"] and images_only.counts  # metadata was fine
    scan = Scanner([FAKE_KEY, bad["connection_string"], azurite.account_key])
    for item in (report, images_only, good):
        scan.text("report", "check report", json.dumps(item.to_dict()) + item.format())
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", bad["connection_string"])
    assert main(["check", url, "--sample", "5"]) == 1
    captured = capfd.readouterr()
    assert "[credentials]" in captured.out
    scan.output(captured)


@pytest.fixture
def mini_copy(tiny_replica, tmp_path) -> Path:
    """A copy of the tiny replica holding only train_mini and val (metadata and images)."""
    root, copy = Path(tiny_replica.url), tmp_path / "mini"
    copy.mkdir()
    for name in ("train_mini.json", "val.json"):
        shutil.copy2(root / name, copy / name)
    for folder in ("train_mini", "val"):
        shutil.copytree(root / folder, copy / folder)
    return copy


def test_clean_train_mini_copy_passes_against_its_own_counts(mini_copy, capsys):
    assert main(["check", str(mini_copy), "--json", "--sample", "30"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["problems"] == []
    assert [f["name"] for f in report["files"]] == ["train_mini.json", "val.json"]
    assert {c["what"]: (c["found"], c["expected"]) for c in report["counts"]} == {k: (v, v) for k, v in MINI.items()}
    assert report["images"]["decoded"] == 30 and report["images"]["total_images"] == 80  # train_mini + val
    assert main(["check", str(mini_copy), "--sample", "0"]) == 0
    text = capsys.readouterr().out
    assert "train_mini per-species min" in text and "train users" not in text and "no problem found" in text


def _write(path: Path, data: dict, images: list[dict], species: dict[int, int]) -> Counter[int]:
    """Write ``data`` with these image records, each annotated with its species; return images per species."""
    first = data["annotations"][0]
    annotations = [{**first, "id": im["id"], "image_id": im["id"], "category_id": species[im["id"]]} for im in images]
    path.write_text(json.dumps({**data, "images": images, "annotations": annotations}))
    return Counter(species[im["id"]] for im in images)


def test_damaged_train_mini_copy_fails_naming_what_is_wrong(mini_copy, capsys):
    path = mini_copy / "train_mini.json"
    data = json.loads(path.read_text())
    species = {a["image_id"]: a["category_id"] for a in data["annotations"]}
    images = data["images"]
    first, second = species[images[0]["id"]], species[images[-1]["id"]]
    twin = {**images[-1], "id": 10**9}  # a second record of the last image: its species gets 3
    per = _write(path, data, [*images[1:], twin], {**species, 10**9: second})  # and the first species 1
    assert per[first] == 1 and per[second] == 3 and sum(per.values()) == 40
    report = check_data(str(mini_copy), sample=0)
    found = {c["what"]: (c["found"], c["ok"]) for c in report.counts}
    assert found["train_mini images"] == (40, True) and found["train_mini species"] == (20, True)  # totals agree
    assert found["train_mini per-species min"] == (1, False) and found["train_mini per-species max"] == (3, False)
    assert [p.message for p in report.problems] == [
        f"train_mini per-species min: 1 found, 2 expected (-1); e.g. species {first} has 1",
        f"train_mini per-species max: 3 found, 2 expected (+1); e.g. species {second} has 3",
    ]
    per = _write(path, data, images[:-4], species)  # rows removed: the last 2 species lose both images
    assert len(per) == 18 and set(per.values()) == {2}
    assert main(["check", str(mini_copy), "--sample", "0"]) == 1
    text = capsys.readouterr().out
    assert "3 problem(s)" in text and "[counts] train_mini images: 36 found, 40 expected (-4)" in text
    assert "[counts] train_mini species: 18 found, 20 expected (-2)" in text
    assert "[counts] train_mini users: 7 found, 8 expected (-1)" in text  # a user had only those images


def test_train_mini_against_the_official_counts(mini_copy):
    for name in ("train_mini.json", "val.json"):
        data = json.loads((mini_copy / name).read_text())
        data["info"]["description"] = "iNaturalist 2021"  # not the replica: the official counts are the reference
        (mini_copy / name).write_text(json.dumps(data))
    report = check_data(str(mini_copy), sample=0)
    assert report.reference == "official iNat 2021"
    expected = {c["what"]: c["expected"] for c in report.counts}
    assert expected == {
        "train_mini images": 500_000,
        "train_mini species": 10_000,
        "train_mini users": None,  # no published count: shown, not compared
        "train_mini per-species min": 50,
        "train_mini per-species max": 50,
        "val images": 100_000,
    }
    assert [p.message.split(":")[0] for p in report.problems] == [
        "train_mini images",
        "train_mini species",
        "train_mini per-species min",
        "train_mini per-species max",
        "val images",
    ]
    assert "train users" not in report.format() and "(no published count: shown, not compared)" in report.format()
