"""Metadata ingestion: official JSON (plain, gz, tar.gz), processed CSV, validation and its report."""

from __future__ import annotations

import copy
import gzip
import io
import json
import re
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import inat_hf.metadata.json_stream as official_json
from inat_hf import MetadataError, load_metadata, metadata_report
from inat_hf.schema import IMAGE_COLUMNS
from inat_hf.taxonomy import RANKS

REFERENCE = Path(__file__).resolve().parent / "data" / "tfds_dummy"


def _dummy(name: str = "train") -> dict:
    return json.loads((REFERENCE / f"{name}.json").read_text())


def _write(path: Path, doc: dict | str) -> str:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def _species_by_id(table: pa.Table) -> dict[int, str]:
    return dict(zip(table["image_id"].to_pylist(), table["species"].to_pylist(), strict=True))


def test_tfds_dummy_files_join_by_id_not_by_path():
    # In these real records category ids 0..2 do not match the 5-digit prefix of the file name.
    train = load_metadata(str(REFERENCE / "train.json"))
    assert train.column_names == list(IMAGE_COLUMNS)
    assert _species_by_id(train) == {0: "Ameiurus nebulosus", 1: "Marmota flaviventris", 2: "Dipsosaurus dorsalis"}
    row = train.filter(pc.equal(train["image_id"], 1)).to_pylist()[0]
    assert {r: row[r] for r in RANKS} == {
        "kingdom": "Animalia",
        "phylum": "Chordata",
        "class": "Mammalia",
        "order": "Rodentia",
        "family": "Sciuridae",
        "genus": "Marmota",
        "species": "Marmota flaviventris",
    }
    assert row["user"] == "Michelle S. Koo" and row["species_id"] == 1
    assert row["date"].isoformat() == "2010-07-06T22:17:00+00:00"
    users = set(train["user"].to_pylist())
    assert "105615097470186309865" in users  # a 21-digit numeric account id stays a string

    val = load_metadata(str(REFERENCE / "val.json"))
    expected = {}
    doc = _dummy("val")
    names = {c["id"]: c["name"] for c in doc["categories"]}
    for ann in doc["annotations"]:
        expected[ann["image_id"]] = names[ann["category_id"]]
    assert _species_by_id(val) == expected
    assert set(val["split"].to_pylist()) == {"val"}


def test_position_trap_shuffled_annotations(tmp_path):
    doc = _dummy()
    doc["annotations"] = list(reversed(doc["annotations"]))
    doc["images"] = doc["images"][1:] + doc["images"][:1]
    table = load_metadata(_write(tmp_path / "train.json", doc))
    assert _species_by_id(table) == {0: "Ameiurus nebulosus", 1: "Marmota flaviventris", 2: "Dipsosaurus dorsalis"}


def test_compressed_files_give_the_same_table(tmp_path):
    raw = (REFERENCE / "train.json").read_bytes()
    (tmp_path / "train.json.gz").write_bytes(gzip.compress(raw))
    with tarfile.open(tmp_path / "train.json.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("train.json")
        info.size = len(raw)
        archive.addfile(info, io.BytesIO(raw))
    plain = load_metadata(str(REFERENCE / "train.json"))
    for name in ("train.json.gz", "train.json.tar.gz"):
        assert load_metadata(str(tmp_path / name)).equals(plain)


def test_public_test_has_no_labels(tmp_path):
    doc = _dummy("val")
    del doc["annotations"]
    table = load_metadata(_write(tmp_path / "public_test.json", doc))
    assert table.num_rows == len(doc["images"])
    assert table["species"].null_count == table.num_rows
    assert set(table["split"].to_pylist()) == {"public_test"}


def test_small_chunks_parse_identically(tmp_path, monkeypatch):
    path = _write(tmp_path / "train.json", json.dumps(_dummy(), indent=3))
    whole = load_metadata(path)
    monkeypatch.setattr(official_json, "CHUNK_BYTES", 7)
    assert load_metadata(path).equals(whole)


# --- bad input -------------------------------------------------------------------------------------------


def _mutated(mutate) -> dict:
    doc = copy.deepcopy(_dummy())
    mutate(doc)
    return doc


BAD_DOCS = {
    "missing_file_name": (lambda d: d["images"][1].pop("file_name"), r"images\[1\] has no 'file_name'"),
    "duplicate_id": (lambda d: d["images"][2].update(id=0), r"image id 0 occurs more than once"),
    "unknown_category": (
        lambda d: d["annotations"][0].update(category_id=777),
        r"annotated with category_id 777, which is not among the 3 categories",
    ),
    "unknown_image": (
        lambda d: d["annotations"].append({"id": 9, "image_id": 99, "category_id": 1}),
        r"annotations\[3\]\.image_id = 99 is not the id of any image",
    ),
    "no_annotation": (lambda d: d["annotations"].pop(1), r"image id 1 \(images\[1\]\) has no annotation"),
    "non_numeric_width": (lambda d: d["images"][0].update(width="wide"), r"images\[0\]\.width = 'wide'"),
    "absurd_height": (lambda d: d["images"][2].update(height=10**12), r"images\[2\]\.height"),
    "category_without_name": (lambda d: d["categories"][1].pop("name"), r"categories\[1\] \(id 1\) field 'name'"),
    "image_not_object": (lambda d: d["images"].__setitem__(0, [1, 2]), r"images\[0\] is \[1, 2\], not an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCS))
def test_bad_records_raise_naming_file_and_field(tmp_path, case):
    mutate, message = BAD_DOCS[case]
    path = _write(tmp_path / "train.json", _mutated(mutate))
    with pytest.raises(MetadataError, match=message) as info:
        load_metadata(path)
    assert "train.json" in str(info.value)


@pytest.mark.parametrize(
    ("case", "reason", "skipped"),
    [
        ("missing_file_name", "missing_file_name", 1),
        ("duplicate_id", "duplicate_image_id", 2),
        ("unknown_category", "unknown_category", 1),
        ("no_annotation", "no_annotation", 1),
        ("non_numeric_width", "invalid_width", 1),
        ("absurd_height", "invalid_height", 1),
        ("image_not_object", "not_an_object", 1),
    ],
)
def test_skip_policy_accounts_for_every_row(tmp_path, case, reason, skipped):
    mutate, _ = BAD_DOCS[case]
    doc = _mutated(mutate)
    table = load_metadata(_write(tmp_path / "train.json", doc), on_invalid="skip")
    report = metadata_report(table).files[0]
    assert report.skipped == {reason: skipped}
    assert report.rows_in == len(doc["images"]) == report.rows_out + report.rows_skipped
    assert table.num_rows == report.rows_out


def test_locations_and_dates_are_nulled_and_counted(tmp_path):
    def mutate(doc):
        doc["images"][0].update(latitude=123.0)
        doc["images"][1].update(longitude="east")
        doc["images"][2].update(date="yesterday", latitude=None)

    table = load_metadata(_write(tmp_path / "train.json", _mutated(mutate)))
    assert table.num_rows == 3
    assert table["latitude"].null_count == 3 and table["longitude"].null_count == 3
    report = metadata_report(table).files[0]
    assert report.nulled == {"invalid_date": 1, "invalid_latitude": 1, "invalid_longitude": 1}
    assert report.null_location == 3
    assert table["date"].null_count == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"images": [{"id": 0, "width": 5', r"not valid JSON .*truncated"),
        ("", r"not valid JSON"),
        ("[1, 2]", r"top level is a JSON list"),
        ('{"images": [], "categories": []} trailing', r"not valid JSON"),
        ('{"annotations": [], "categories": []}', r"no 'images' array"),
        ('{"images": []}', r"no 'categories' array"),
    ],
)
def test_broken_json_raises(tmp_path, text, message):
    with pytest.raises(MetadataError, match=message):
        load_metadata(_write(tmp_path / "train.json", text))


def test_truncated_gzip_raises(tmp_path):
    data = gzip.compress((REFERENCE / "train.json").read_bytes())
    (tmp_path / "train.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(MetadataError, match=r"train.json.gz: cannot decompress"):
        load_metadata(str(tmp_path / "train.json.gz"))


def test_on_invalid_is_checked():
    with pytest.raises(ValueError, match=r"on_invalid='ignore'; choose from error, skip"):
        load_metadata(str(REFERENCE / "train.json"), on_invalid="ignore")


def test_data_folder_without_metadata(tmp_path):
    with pytest.raises(MetadataError, match=r"no metadata for split 'train': looked for train.json"):
        load_metadata(str(tmp_path))


# --- processed CSV ---------------------------------------------------------------------------------------


def _csv_from(table: pa.Table, drop: tuple[str, ...] = (), index_column: bool = True) -> str:
    """training_image_info.csv as a pandas DataFrame.to_csv would write it, from an images table."""
    header = ["image_id", "user", "width", "height", "file_name", "phylum", "class", "order", "species", "notes"]
    header = [h for h in header if h not in drop]
    lines = [",".join(([""] if index_column else []) + header)]
    for i, row in enumerate(table.to_pylist()):
        row = {**row, "notes": "extra column", "file_name": row["file_name"]}
        cells = [f'"{row[h]}"' if h in ("user", "notes") else str(row[h]) for h in header]
        lines.append(",".join(([str(i)] if index_column else []) + cells))
    return "\n".join(lines) + "\n"


def test_processed_csv_matches_official_json(tmp_path):
    official = load_metadata(str(REFERENCE / "train.json"))
    path = tmp_path / "training_image_info.csv"
    path.write_text(_csv_from(official))
    table = load_metadata(str(path))
    assert table.column_names == list(IMAGE_COLUMNS)
    for column in ("image_id", "user", "width", "height", "file_name", *RANKS):
        assert table[column].to_pylist() == official[column].to_pylist(), column
    # Every rank and the category id come from the official folder of each file name: the real category ids
    # (the dummy file's ids 0..2 are not), and the family the CSV has no column for.
    assert table["species_id"].to_pylist() == [2912, 4831, 5015]
    assert table["family"].to_pylist() == ["Ictaluridae", "Sciuridae", "Iguanidae"]
    assert metadata_report(table).files[0].nulled == {}
    # A data folder with only the CSV loads it as the train split.
    assert load_metadata(str(tmp_path))["image_id"].to_pylist() == official["image_id"].to_pylist()


def test_processed_csv_without_official_folders_falls_back_to_the_species_list(tmp_path):
    official = load_metadata(str(REFERENCE / "train.json"))
    path = tmp_path / "training_image_info.csv"
    text = _csv_from(official)
    moved = re.sub(r",train/\d{5}_[^/,]+/", ",photos/", text)  # files not in their official folders
    assert moved.count(",photos/") == 3
    path.write_text(moved.replace("Marmota flaviventris", "4831"))  # a species as its category id
    table = load_metadata(str(path))
    assert table["species_id"].to_pylist() == [2912, 4831, 5015]
    assert table["genus"].to_pylist() == official["genus"].to_pylist()
    assert table["kingdom"].to_pylist() == official["kingdom"].to_pylist()
    assert table["family"].null_count == table.num_rows  # not derivable from a species name: null, and counted
    assert metadata_report(table).files[0].nulled == {"no_family": 3}
    path.write_text(moved.replace("Ameiurus nebulosus", "Ameiurus imaginarius"))
    with pytest.raises(MetadataError, match=r"species 'Ameiurus imaginarius' is not one of the 10,000"):
        load_metadata(str(path))


@pytest.mark.parametrize(
    ("old", "new", "reason", "message"),
    [
        ("Ameiurus nebulosus", "Ameiurus imaginarius", "species_differs_from_folder", r"column 'species' is 'Ameiurus "
         r"imaginarius' but the file name's folder '02912_Animalia_.*_Ameiurus_nebulosus' says 'Ameiurus nebulosus'"),
        (",Siluriformes,", ",Rodentia,", "order_differs_from_folder", r"row 1: column 'order' is 'Rodentia' but"),
        ("Ameiurus nebulosus", "4831", "species_differs_from_folder", r"column 'species' is '4831' but"),
        ("02912_Animalia", "02913_Animalia", "unknown_category", r"folder '02913_Animalia_.*' is not an official"),
        ("02912_Animalia", "02912_Plantae", "unknown_category", r"folder '02912_Plantae_.*' is not an official"),
    ],
)  # fmt: skip
def test_processed_csv_disagreeing_with_its_folder_is_never_settled_silently(tmp_path, old, new, reason, message):
    path = tmp_path / "training_image_info.csv"
    text = _csv_from(load_metadata(str(REFERENCE / "train.json")))
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(MetadataError, match=message):
        load_metadata(str(path))
    table = load_metadata(str(path), on_invalid="skip")
    report = metadata_report(table).files[0]
    assert report.skipped == {reason: 1} and report.rows_in == 3 == report.rows_out + 1
    assert table["species_id"].to_pylist() == [4831, 5015]


def test_processed_csv_species_as_id_and_empty_rank_cells_agree_with_the_folder(tmp_path):
    official = load_metadata(str(REFERENCE / "train.json"))
    text = _csv_from(official).replace("Ameiurus nebulosus", "2912").replace(",Siluriformes,", ",,")
    path = tmp_path / "training_image_info.csv"
    path.write_text(text)
    table = load_metadata(str(path))
    assert table["species"].to_pylist() == official["species"].to_pylist()
    assert table["order"].to_pylist() == official["order"].to_pylist()


@pytest.mark.parametrize(
    ("old", "new", "reason", "message"),
    [
        (",500,500,", ",500,big,", "invalid_height", r"column 'height' holds 'big'"),
        ("Ameiurus_nebulosus/", "Ameiurus-nebulosus/", "missing_family", None),
    ],
)
def test_processed_csv_bad_values(tmp_path, old, new, reason, message):
    path = tmp_path / "training_image_info.csv"
    text = _csv_from(load_metadata(str(REFERENCE / "train.json")))
    assert old in text
    path.write_text(text.replace(old, new, 1))
    if message is None:  # a folder that is not the official one: the species list, the family null
        table = load_metadata(str(path))
        assert table["family"].to_pylist() == [None, "Sciuridae", "Iguanidae"]
        assert metadata_report(table).files[0].nulled == {"no_family": 1}
        return
    with pytest.raises(MetadataError, match=message):
        load_metadata(str(path))
    table = load_metadata(str(path), on_invalid="skip")
    report = metadata_report(table).files[0]
    assert report.skipped == {reason: 1} and report.rows_in == 3 == report.rows_out + 1


def test_fast_path_with_non_ascii_and_fallback_part_way(tmp_path, monkeypatch):
    doc = _dummy()
    doc["images"][0]["rights_holder"] = "José Pérez Ñúñez"  # multi-byte: orjson reports character positions
    doc["images"][2]["rights_holder"] = 'tricky}, {"id": 5} ]'  # a cut inside a string
    path = _write(tmp_path / "train.json", json.dumps(doc, ensure_ascii=False))
    whole = load_metadata(path)
    assert whole["user"].to_pylist()[0] == "José Pérez Ñúñez"
    monkeypatch.setattr(official_json, "CHUNK_BYTES", 7)
    assert load_metadata(path).equals(whole)
    # With a single try per cut the fast path gives up after streaming some slices: no row twice.
    monkeypatch.setattr(official_json, "_MAX_CUT_TRIES", 1)
    again = load_metadata(path)
    assert again.equals(whole) and again.num_rows == 3


def test_a_folder_of_symbolic_links_is_read_as_its_targets(tiny_replica, tmp_path):
    """Metadata files linked into a folder (a common way to share one copy) are found, with their targets'
    size and time in the fingerprint; a broken link is not a file."""
    linked = tmp_path / "linked"
    linked.mkdir()
    for name in ("train.json", "val.json"):
        (linked / name).symlink_to(Path(tiny_replica.url, name))
    (linked / "train_mini.json").symlink_to(tmp_path / "gone.json")  # broken: not listed as a file
    assert load_metadata(str(linked)).equals(load_metadata(tiny_replica.url))

    from inat_hf import storage
    from inat_hf.storage.tokens import list_names

    names = list_names(storage.resolve(str(linked)))
    assert sorted(names) == ["train.json", "val.json"]
    assert names["train.json"].split(":")[0] == str(Path(tiny_replica.url, "train.json").stat().st_size)
