"""Hostile input: mutated metadata, bad images, absurd claims and a 100 MB garbage file.

Whatever the bytes, ``load_metadata`` either loads (and then accounts for every record: rows in = rows
out + skipped, per file) or raises the project's own :class:`~inat_hf.errors.MetadataError` (or a
:class:`~inat_hf.errors.StorageError`): never a raw ``KeyError``, ``IndexError``, ``TypeError``,
``UnicodeDecodeError``, ``ArrowInvalid``... The property tests start from real records (the TFDS dummy
file and the tiny replica) and mutate them with hypothesis; the explicit tests pin each bug those found.
Every checked case is recorded for ``RELIABILITY.md`` (``tests/reliability.py``).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability import record

import inat_hf.metadata.json_stream as official_json
from inat_hf import MetadataError, StorageError, load_metadata, metadata_report
from inat_hf.builder import skipped_rows
from inat_hf.manifest.examples import BadImageError
from inaturalist_fl import INaturalistFL

REFERENCE = Path(__file__).resolve().parent / "data" / "tfds_dummy"
ON_INVALID = ("error", "skip")
PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples every run, so RELIABILITY.md is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _short(text: str, limit: int = 110) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


_PYTEST_TMP = re.compile(r"/[^\s'\"]*?/pytest-\d+/[^/\s'\"]+/")


def _error(err: BaseException, limit: int = 110) -> str:
    """``Class: message`` on one line, temporary folders cut from paths (so RELIABILITY.md is stable)."""
    message = _PYTEST_TMP.sub("<tmp>/", str(err))
    return f"{type(err).__name__}: {_short(message, limit)}"


# --- real records to start from ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bases(tiny_replica) -> dict[str, dict]:
    """Official documents: the TFDS dummy train.json, and the first 12 images of the tiny replica's
    train.json with their annotations and categories (small, so that each example is quick)."""
    tiny = json.loads((Path(tiny_replica.url) / "train.json").read_text())
    images = tiny["images"][:12]
    ids = {image["id"] for image in images}
    annotations = [a for a in tiny["annotations"] if a["image_id"] in ids]
    used = {a["category_id"] for a in annotations}
    subset = {
        "info": tiny["info"],
        "images": images,
        "annotations": annotations,
        "categories": [c for c in tiny["categories"] if c["id"] in used],
    }
    return {"tfds_dummy": json.loads((REFERENCE / "train.json").read_text()), "tiny": subset}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


# --- loading and its invariants ---------------------------------------------------------------------------


@contextlib.contextmanager
def chunk_bytes(size: int | None) -> Iterator[None]:
    """Parse large arrays in slices of ``size`` bytes (``None``: the default), to reach the slicing code."""
    saved = official_json.CHUNK_BYTES
    official_json.CHUNK_BYTES = size or saved
    try:
        yield
    finally:
        official_json.CHUNK_BYTES = saved


def outcome(path: Path, on_invalid: str) -> pa.Table | type[BaseException]:
    """The loaded table (its invariants checked), or the class of the project error it raised.

    Any other exception propagates and fails the test.
    """
    try:
        table = load_metadata(str(path), on_invalid=on_invalid)
    except (MetadataError, StorageError) as err:
        return type(err)
    report = metadata_report(table)
    for file in report.files:
        assert file.rows_in == file.rows_out + file.rows_skipped, file
    assert table.num_rows == report.rows_out
    if on_invalid == "error":
        assert report.rows_skipped == 0, report
    table.validate(full=True)  # UTF-8 strings, offsets, dictionary indexes
    ids = table["image_id"].to_pylist()
    assert None not in ids and len(ids) == len(set(ids)), "image ids must be present and unique"
    table.to_pylist()  # every value converts to Python
    return table


def same(a: pa.Table | type, b: pa.Table | type) -> bool:
    if isinstance(a, pa.Table) and isinstance(b, pa.Table):
        return a.equals(b)
    return a is b


class Tally:
    """Outcomes of a property test, for its RELIABILITY.md row."""

    def __init__(self) -> None:
        self.files = 0
        self.loaded: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def add(self, on_invalid: str, result: pa.Table | type) -> None:
        if isinstance(result, pa.Table):
            self.loaded[on_invalid] += 1
            for file in metadata_report(result).files:
                self.reasons.update(file.skipped)
        else:
            self.errors[f"{on_invalid}:{result.__name__}"] += 1

    def observed(self) -> str:
        loaded = ", ".join(f"{k} {v}" for k, v in sorted(self.loaded.items()))
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items()))
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items()))
        return (
            f"{self.files} files; loaded with invariants holding: {loaded}; project errors: {errors}; "
            f"rows skipped by reason: {reasons}; no other exception"
        )


# --- mutations of official JSON -----------------------------------------------------------------------------

ARRAYS = ("images", "annotations", "categories")
FIELDS = ("id", "image_id", "category_id", "width", "height", "file_name", "license", "rights_holder", "date",
          "latitude", "longitude", "location_uncertainty", "name", "kingdom", "phylum", "class", "order",
          "family", "genus")  # fmt: skip
NASTY: tuple[Any, ...] = (None, "", "500px", "NaN", "Infinity", "1e999", "-0", "\u0000", "\U0001f4a5", "../x.jpg",
                          True, False, [], {}, [1, 2], {"$numberLong": "1"}, 10**9, -5, 0, 1, 2**31, 2**63,
                          2**64 - 1, -(2**63) - 1, 10**30, 1.5, 24.0, -1e308)  # fmt: skip
NON_UTF8 = (b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xc0\xaf")

values = st.one_of(st.sampled_from(NASTY), st.integers(), st.floats(), st.text(max_size=6))
index = st.integers(0, 10**6)
array = st.sampled_from(ARRAYS)
doc_ops = st.one_of(
    st.tuples(st.just("set"), array, index, st.sampled_from(FIELDS), values),
    st.tuples(st.just("delete"), array, index, st.sampled_from(FIELDS)),
    st.tuples(st.just("duplicate"), array, index),
    st.tuples(st.just("remove"), array, index),
    st.tuples(st.just("swap"), array, array),
    st.tuples(st.just("nest"), array, index, st.sampled_from(("list", "object"))),
    st.tuples(st.just("replace_array"), array, values),
    st.tuples(st.just("drop_key"), st.sampled_from((*ARRAYS, "info"))),
    st.tuples(st.just("shuffle"), array, st.integers(0, 2**16)),
    st.tuples(st.just("top_level"), st.sampled_from(("list", "string", "number"))),
)
fraction = st.floats(0, 1)
byte_ops = st.one_of(
    st.tuples(st.just("truncate"), fraction),
    st.tuples(st.just("insert"), fraction, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("insert"), fraction, st.sampled_from((b"}", b"]", b",", b'"', b"{", b"[", b"\\", b"NaN"))),
    st.tuples(st.just("replace"), fraction, st.sampled_from(NON_UTF8)),
    st.tuples(st.just("bom")),
    st.tuples(st.just("duplicate_key"), st.sampled_from(ARRAYS), st.sampled_from((b"[]", b'[{"id": 0}]', b"5"))),
)


def apply_doc_op(doc: Any, op: tuple) -> Any:
    """One structural mutation (indexes are taken modulo the array's length)."""
    kind, *args = op
    if kind == "top_level":
        return {"list": [doc], "string": "images", "number": 5}[args[0]]
    if not isinstance(doc, dict):
        return doc
    if kind == "drop_key":
        doc.pop(args[0], None)
        return doc
    if kind == "replace_array":
        doc[args[0]] = args[1]
        return doc
    if kind == "swap":
        doc[args[0]], doc[args[1]] = doc.get(args[1]), doc.get(args[0])
        return doc
    records = doc.get(args[0])
    if not isinstance(records, list) or not records:
        return doc
    i = args[1] % len(records)
    if kind == "shuffle":
        np.random.default_rng(args[1]).shuffle(records)
    elif kind == "duplicate":
        records.insert(i, json.loads(json.dumps(records[i])))
    elif kind == "remove":
        records.pop(i)
    elif kind == "nest":
        records[i] = [records[i]] if args[2] == "list" else {"record": records[i]}
    elif isinstance(records[i], dict):
        if kind == "set":
            records[i][args[2]] = args[3]
        elif kind == "delete":
            records[i].pop(args[2], None)
    return doc


def apply_byte_op(data: bytes, op: tuple) -> bytes:
    kind, *args = op
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "duplicate_key":  # a second top-level key of the same name, first in the object
        return b'{"' + args[0].encode() + b'": ' + args[1] + b", " + data[1:] if data.startswith(b"{") else data
    at = int(args[0] * len(data))
    if kind == "truncate":
        return data[:at]
    if kind == "insert":
        return data[:at] + args[1] + data[at:]
    return data[:at] + args[1] + data[at + 1 :]  # replace one byte


def serialise(doc: Any, style: str) -> bytes:
    if style == "indent":
        return json.dumps(doc, indent=1).encode()
    if style == "compact":
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps(doc, ensure_ascii=style != "unicode").encode()


def test_mutated_official_json_loads_or_raises_metadata_error(bases, workdir):
    tally = Tally()

    @PROPERTY_SETTINGS
    @given(
        base=st.sampled_from(sorted(bases)),
        ops=st.lists(doc_ops, max_size=4),
        raw_ops=st.lists(byte_ops, max_size=2),
        style=st.sampled_from(("ascii", "unicode", "indent", "compact")),
        slice_bytes=st.sampled_from((7, 300)),
    )
    def run(base: str, ops: list, raw_ops: list, style: str, slice_bytes: int) -> None:
        doc = json.loads(json.dumps(bases[base]))
        for op in ops:
            doc = apply_doc_op(doc, op)
        data = serialise(doc, style)
        for op in raw_ops:
            data = apply_byte_op(data, op)
        path = workdir / "train.json"
        path.write_bytes(data)
        results = {}
        for on_invalid in ON_INVALID:
            results[on_invalid] = outcome(path, on_invalid)
            with chunk_bytes(slice_bytes):  # the slicing scanner must agree with the one-slice parse
                assert same(results[on_invalid], outcome(path, on_invalid))
            tally.add(on_invalid, results[on_invalid])
        if isinstance(results["error"], pa.Table):  # nothing to skip: the same table
            assert same(results["error"], results["skip"])
        tally.files += 1

    run()
    assert tally.loaded["skip"] > 0 and tally.errors  # the mutations reach both outcomes
    record(
        "hostile input",
        "official JSON: hypothesis-mutated train.json (TFDS dummy and tiny replica records: fields deleted, "
        "retyped, duplicated, ids changed, arrays swapped/nested/replaced, truncated, garbage and non-UTF-8 "
        "bytes, BOM, duplicate keys), both on_invalid policies, parsed whole and in 7/300-byte slices",
        "loads with rows_in == rows_out + skipped per file, unique ids, valid UTF-8, the same table for any "
        "slice size; or MetadataError",
        tally.observed(),
    )


# --- mutations of the processed CSV ---------------------------------------------------------------------------

CSV_HEADER = ("", "image_id", "user", "width", "height", "file_name", "phylum", "class", "order", "species",
              "family", "latitude", "date", "notes")  # fmt: skip
CSV_NASTY = ("", "abc", "500px", "1.5", "-5", "0", "1000000000", "1" + "0" * 30, "NaN", "nan", "inf", "1e999", " 7 ",
             "+3", "0x10", "\u0000", "\U0001f4a5", '"', ",", "\n", "None", "null", "Lumbricus", "9999", "10000",
             "-0", "1e3", "\u0663", "9007199254740993")  # fmt: skip


@pytest.fixture(scope="module")
def csv_rows(tiny_replica) -> list[list[str]]:
    """training_image_info.csv rows (pandas layout: an index column first) of the replica's first 15 images."""
    table = load_metadata(str(Path(tiny_replica.url) / "train.json")).slice(0, 15)
    rows = []
    for i, row in enumerate(table.to_pylist()):
        cells = {**row, "": i, "notes": "extra column"}
        rows.append(["" if cells[h] is None else str(cells[h]) for h in CSV_HEADER])
    return rows


column = st.integers(0, len(CSV_HEADER) - 1)
csv_ops = st.one_of(
    st.tuples(st.just("cell"), index, column, st.one_of(st.sampled_from(CSV_NASTY), st.text(max_size=6))),
    st.tuples(st.just("drop_column"), column),
    st.tuples(st.just("duplicate_row"), index),
    st.tuples(st.just("swap_header"), column, column),
    st.tuples(st.just("rename_header"), column, st.sampled_from(("", "Unnamed: 0", "IMAGE_ID", "species ", "width"))),
    st.tuples(st.just("ragged"), index, st.booleans()),
    st.tuples(st.just("same_id"), index, index),
    st.tuples(st.just("empty_body")),
)
csv_byte_ops = st.one_of(
    st.tuples(st.just("truncate"), fraction),
    st.tuples(st.just("insert"), fraction, st.binary(min_size=1, max_size=6)),
    st.tuples(st.just("insert"), fraction, st.sampled_from((b'"', b"\n", b",", b"\r"))),
    st.tuples(st.just("replace"), fraction, st.sampled_from(NON_UTF8)),
    st.tuples(st.just("bom")),
)


def apply_csv_op(header: list[str], body: list[list[str]], op: tuple) -> None:
    kind, *args = op
    if kind == "drop_column" and args[0] < len(header):
        header.pop(args[0])
        for row in body:
            if args[0] < len(row):
                row.pop(args[0])
    elif kind == "swap_header" and max(args) < len(header):
        header[args[0]], header[args[1]] = header[args[1]], header[args[0]]
    elif kind == "rename_header" and args[0] < len(header):
        header[args[0]] = args[1]
    elif kind == "empty_body":
        body.clear()
    elif body:
        row = body[args[0] % len(body)]
        if kind == "cell" and args[1] < len(row):
            row[args[1]] = args[2]
        elif kind == "duplicate_row":
            body.insert(args[0] % len(body), list(row))
        elif kind == "ragged":
            row.append("extra") if args[1] else row.pop() if row else None
        elif kind == "same_id" and len(row) > 1 and len(body[args[1] % len(body)]) > 1:
            row[1] = body[args[1] % len(body)][1]


def test_mutated_processed_csv_loads_or_raises_metadata_error(csv_rows, workdir):
    tally = Tally()

    @PROPERTY_SETTINGS
    @given(
        ops=st.lists(csv_ops, min_size=1, max_size=4),
        raw_ops=st.lists(csv_byte_ops, max_size=2),
        newline=st.sampled_from(("\n", "\r\n")),
    )
    def run(ops: list, raw_ops: list, newline: str) -> None:
        header, body = list(CSV_HEADER), [list(row) for row in csv_rows]
        for op in ops:
            apply_csv_op(header, body, op)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(body)
        data = text.getvalue().encode()
        for op in raw_ops:
            data = apply_byte_op(data, op)
        path = workdir / "training_image_info.csv"
        path.write_bytes(data)
        results = {on_invalid: outcome(path, on_invalid) for on_invalid in ON_INVALID}
        for on_invalid, result in results.items():
            tally.add(on_invalid, result)
        if isinstance(results["error"], pa.Table):
            assert same(results["error"], results["skip"])
        tally.files += 1

    run()
    assert tally.loaded["skip"] > 0 and tally.errors
    record(
        "hostile input",
        "processed CSV: hypothesis-mutated training_image_info.csv (tiny replica rows: cells set to garbage, "
        "huge/NaN/fractional numbers, columns dropped/renamed/swapped, rows duplicated/ragged, ids repeated, "
        "truncated, garbage and non-UTF-8 bytes, BOM), both on_invalid policies",
        "loads with rows_in == rows_out + skipped, unique ids, valid UTF-8; or MetadataError",
        tally.observed(),
    )


# --- explicit cases: each bug the properties found ----------------------------------------------------------


def _official(tmp_path: Path, mutate, name: str = "train.json") -> Path:
    doc = json.loads((REFERENCE / "train.json").read_text())
    mutate(doc)
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _set_image(i: int, key: str, value: Any):
    return lambda doc: doc["images"][i].__setitem__(key, value)


@pytest.mark.parametrize(
    ("case", "mutate", "match", "skipped"),
    [
        ("image id 1.5 (fraction)", _set_image(1, "id", 1.5), r"images\[1\]\.id = 1\.5 is not a valid", "invalid_id"),
        ("width 24.7", _set_image(1, "width", 24.7), r"images\[1\]\.width = 24\.7 is not a valid", "invalid_width"),
        ("width 10**9", _set_image(1, "width", 10**9), r"width = 1000000000 is outside", "invalid_width"),
        ("height -5", _set_image(1, "height", -5), r"height = -5 is outside \[1, 65535\]", "invalid_height"),
        ("width '500px'", _set_image(1, "width", "500px"), r"width = '500px' is not a valid", "invalid_width"),
        ("height true", _set_image(1, "height", True), r"height = True is not a valid", "invalid_height"),
        ("image id 2**64-1", _set_image(2, "id", 2**64 - 1), r"id = 18446744073709551615 is not a valid", "invalid_id"),
        ("file_name ''", _set_image(1, "file_name", ""), r"'file_name' \(or it is null or empty", "missing_file_name"),
    ],
)  # fmt: skip
def test_bad_required_numbers_raise_or_skip_never_truncate(tmp_path, case, mutate, match, skipped):
    path = _official(tmp_path, mutate)
    with pytest.raises(MetadataError, match=match) as info:
        load_metadata(str(path))
    table = load_metadata(str(path), on_invalid="skip")
    report = metadata_report(table).files[0]
    assert report.skipped == {skipped: 1} and (report.rows_in, report.rows_out) == (3, 2)
    assert 1 not in table["image_id"].to_pylist() or case.startswith("image id 2**")
    record(
        "hostile input",
        f"train.json image with {case}",
        "error: MetadataError naming record and field; skip: row dropped and counted",
        f"{_error(info.value)}; skip: 3 in, 2 out, skipped {report.skipped}",
    )


@pytest.mark.parametrize(
    ("case", "value"),
    [("latitude true", True), ("latitude 2**64-1", 2**64 - 1), ("latitude '12.5'", "12.5"), ("latitude 91", 91)],
)
def test_bad_optional_numbers_become_null_and_are_counted(tmp_path, case, value):
    path = _official(tmp_path, _set_image(1, "latitude", value))
    table = load_metadata(str(path))
    report = metadata_report(table).files[0]
    assert table["latitude"].to_pylist()[1] is None and table["longitude"].to_pylist()[1] is None
    assert report.nulled == {"invalid_latitude": 1} and report.rows_out == 3
    record(
        "hostile input",
        f"train.json image with {case}",
        "row kept, location null, counted",
        f"loaded 3 rows, nulled {report.nulled}",
    )


def test_invalid_utf8_inside_a_string_is_a_metadata_error(tmp_path):
    data = (REFERENCE / "train.json").read_bytes().replace(b"Michelle S. Koo", b"Michelle S. K\xffo", 1)
    path = tmp_path / "train.json"
    path.write_bytes(data)
    with pytest.raises(MetadataError, match=r"not UTF-8 text \(byte \d+: invalid start byte\)") as info:
        load_metadata(str(path))
    record("hostile input", "train.json with a 0xFF byte inside a user name", "MetadataError", _error(info.value))


def test_a_top_level_key_twice_is_a_metadata_error(tmp_path):
    raw = (REFERENCE / "train.json").read_bytes()
    path = tmp_path / "train.json"
    path.write_bytes(b'{"images": [{"id": 9, "width": 5, "height": 5, "file_name": "x.jpg"}],' + raw.lstrip()[1:])
    for on_invalid in ON_INVALID:
        with pytest.raises(MetadataError, match=r"the key 'images' occurs more than once at the top level") as info:
            load_metadata(str(path), on_invalid=on_invalid)
    record("hostile input", "train.json with two top-level 'images' arrays", "MetadataError", _error(info.value))


def test_annotation_with_null_ids_is_skipped_and_counted(tmp_path):
    def mutate(doc):
        doc["annotations"][0]["image_id"] = None
        doc["annotations"].append({"id": 7, "image_id": 2, "category_id": None})

    path = _official(tmp_path, mutate)
    with pytest.raises(MetadataError, match=r"annotations\[0\] has no 'image_id'") as info:
        load_metadata(str(path))
    table = load_metadata(str(path), on_invalid="skip")
    report = metadata_report(table).files[0]
    assert report.annotations_skipped == {"missing_category_id": 1, "missing_image_id": 1}
    assert report.skipped == {"no_annotation": 1} and table["image_id"].to_pylist() == [1, 2]
    record(
        "hostile input",
        "train.json annotations with null image_id / category_id",
        "error: MetadataError; skip: annotations and the image left without one counted",
        f"{_error(info.value)}; skip: rows {table['image_id'].to_pylist()}, annotations skipped "
        f"{report.annotations_skipped}, images skipped {report.skipped}",
    )


@pytest.mark.parametrize("category_id", [2**64 - 1, -1, "3"])
def test_bad_category_ids_are_metadata_errors(tmp_path, category_id):
    path = _official(tmp_path, lambda doc: doc["categories"][0].__setitem__("id", category_id))
    for on_invalid in ON_INVALID:
        with pytest.raises(MetadataError, match=r"categories\[0\]\.id is .*every category needs an integer") as info:
            load_metadata(str(path), on_invalid=on_invalid)
    record("hostile input", f"train.json category id {category_id!r}", "MetadataError", _error(info.value))


def test_deeply_nested_values_fail_as_invalid_json(tmp_path):
    path = tmp_path / "train.json"
    path.write_bytes(b'{"info": ' + b"[" * 100_000 + b"]" * 100_000 + b', "images": []}')
    with pytest.raises(MetadataError, match=r"not valid JSON \(depth limit exceeded") as info:
        load_metadata(str(path))
    record("hostile input", "train.json with a value nested 100,000 deep", "MetadataError", _error(info.value))


def test_nested_small_values_parse_to_the_same_table(tmp_path):
    """Categories with nested lists (many inner closers) load like the plain file."""

    def mutate(doc):
        for category in doc["categories"]:
            category["tags"] = [["a]"], {"b": "}]"}]
        doc["categories"] = doc.pop("categories")  # categories after images and annotations

    plain = load_metadata(str(REFERENCE / "train.json"))
    nested = load_metadata(str(_official(tmp_path, mutate)))
    assert nested.equals(plain)
    record(
        "hostile input",
        "train.json categories holding nested lists and brackets in strings",
        "the same table as without them",
        f"equal tables ({nested.num_rows} rows)",
    )


def _tar_gz(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


COMPRESSED = {
    "train.json.gz cut in half": ("train.json.gz", lambda raw: gzip.compress(raw)[: len(gzip.compress(raw)) // 2],
                                  r"cannot decompress \(EOFError"),
    "train.json.gz that is not gzip": ("train.json.gz", lambda raw: b"not gzip", r"cannot decompress \(BadGzipFile"),
    "empty train.json.gz": ("train.json.gz", lambda raw: b"", r"not valid JSON .* looks truncated"),
    "train.json.gz of non-UTF-8 JSON": ("train.json.gz", lambda raw: gzip.compress(raw.replace(b"Koo", b"K\xffo")),
                                        r"not UTF-8 text"),
    "train.json.tar.gz without a JSON member": ("train.json.tar.gz", lambda raw: _tar_gz([("x.txt", b"x")]),
                                                r"the archive holds no \*\.json file"),
    "train.json.tar.gz cut after 300 bytes": ("train.json.tar.gz", lambda raw: _tar_gz([("train.json", raw)])[:300],
                                              r"cannot decompress \(ReadError"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(COMPRESSED))
def test_damaged_compressed_files_are_metadata_errors(tmp_path, case):
    name, make, match = COMPRESSED[case]
    path = tmp_path / name
    path.write_bytes(make((REFERENCE / "train.json").read_bytes()))
    for on_invalid in ON_INVALID:
        with pytest.raises(MetadataError, match=match) as info:
            load_metadata(str(path), on_invalid=on_invalid)
    record("hostile input", case, "MetadataError", _error(info.value))


# The processed CSV


def _csv(tmp_path: Path, rows: list[list[str]], header: tuple[str, ...] = CSV_HEADER) -> Path:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path = tmp_path / "training_image_info.csv"
    path.write_text(text.getvalue())
    return path


def _cell(rows: list[list[str]], i: int, name: str, value: str) -> list[list[str]]:
    rows = [list(r) for r in rows]
    rows[i][CSV_HEADER.index(name)] = value
    return rows


def test_csv_empty_cells_are_missing_or_null(tmp_path, csv_rows):
    rows = _cell(_cell(csv_rows, 1, "latitude", ""), 2, "width", "")
    path = _csv(tmp_path, rows)
    with pytest.raises(MetadataError, match=r"row 3: column 'width' is empty") as info:
        load_metadata(str(path))
    table = load_metadata(str(path), on_invalid="skip")
    report = metadata_report(table).files[0]
    assert report.skipped == {"missing_width": 1} and report.rows_out == len(csv_rows) - 1
    assert table["latitude"].to_pylist()[1] is None
    record(
        "hostile input",
        "CSV with an empty width cell and an empty latitude cell",
        "error: MetadataError; skip: row dropped and counted; the latitude null",
        f"{_error(info.value)}; skip: skipped {report.skipped}",
    )


@pytest.mark.parametrize(
    ("case", "value", "reason", "match"),
    [
        ("image_id 10**30", "1" + "0" * 30, "invalid_image_id", r"column 'image_id' holds '1000+', not a valid int64"),
        ("image_id 1.5", "1.5", "invalid_image_id", r"column 'image_id' holds '1\.5'"),
        ("species id with 31 digits", "1" + "0" * 30, "species_differs_from_folder", r"'species' is '1000+' but the"),
        ("width 'inf'", "inf", "invalid_width", r"column 'width' holds 'inf'"),
    ],
)
def test_csv_bad_numbers_are_flagged(tmp_path, csv_rows, case, value, reason, match):
    name = case.split()[0]
    path = _csv(tmp_path, _cell(csv_rows, 0, name, value))
    with pytest.raises(MetadataError, match=match) as info:
        load_metadata(str(path))
    report = metadata_report(load_metadata(str(path), on_invalid="skip")).files[0]
    assert report.skipped == {reason: 1} and report.rows_in == len(csv_rows) == report.rows_out + 1
    record(
        "hostile input",
        f"CSV with {case}",
        "error: MetadataError; skip: row dropped and counted",
        f"{_error(info.value)}; skip: skipped {report.skipped}",
    )


def test_csv_ids_are_exact_and_unique(tmp_path, csv_rows):
    big = _cell(csv_rows, 0, "image_id", "9007199254740993")  # 2**53 + 1: a float would make it ...992
    assert load_metadata(str(_csv(tmp_path, big)))["image_id"].to_pylist()[0] == 9007199254740993
    twice = [*csv_rows, csv_rows[3]]
    path = _csv(tmp_path, twice)
    with pytest.raises(MetadataError, match=r"image id \d+ occurs more than once") as info:
        load_metadata(str(path))
    report = metadata_report(load_metadata(str(path), on_invalid="skip")).files[0]
    assert report.skipped == {"duplicate_image_id": 2}
    record(
        "hostile input",
        "CSV with image_id 2**53+1, and a row twice",
        "the id exact; the repeated id: MetadataError, or both rows skipped",
        f"id 9007199254740993 kept exact; {_error(info.value)}; skip: skipped {report.skipped}",
    )


def test_csv_non_utf8_header_is_a_metadata_error(tmp_path, csv_rows):
    path = _csv(tmp_path, csv_rows)
    path.write_bytes(path.read_bytes().replace(b"notes", b"n\xffotes", 1))
    with pytest.raises(MetadataError, match=r"not a readable CSV") as info:
        load_metadata(str(path))
    record("hostile input", "CSV with a 0xFF byte in the header", "MetadataError", _error(info.value))


# --- a 100 MB garbage train.json ----------------------------------------------------------------------------

GARBAGE_BYTES = 100 * 2**20
_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from inat_hf import MetadataError, load_metadata

    def peak():
        # The high-water mark of this process since exec (VmHWM). ru_maxrss would also count the parent's
        # memory at fork, which exec does not reset.
        try:
            with open("/proc/self/status") as status:
                return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) * 1024
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    before = peak()
    try:
        load_metadata(sys.argv[1])
        error = None
    except MetadataError as err:
        error = f"{type(err).__name__}: {err}"
    print(json.dumps({"error": error, "growth": peak() - before}))
    """
)


def _garbage(kind: str) -> bytes:
    rng = np.random.default_rng(0)
    if kind == "random bytes":
        return rng.bytes(GARBAGE_BYTES)
    if kind == "nested brackets":
        return b'{"info": ' + b"[" * (GARBAGE_BYTES // 2) + b"]" * (GARBAGE_BYTES // 2) + b"}"
    letters = rng.integers(ord("a"), ord("z") + 1, GARBAGE_BYTES, dtype=np.uint8).tobytes()
    return letters if kind == "letters" else b'{"images": [{"id": 1, ' + letters


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("letters", "not valid JSON"),
        ("inside images", "not valid JSON"),
        ("random bytes", "not UTF-8 text"),
        ("nested brackets", r"not valid JSON \(depth limit exceeded"),
    ],
)
def test_100_mb_single_line_garbage_fails_with_bounded_memory(tmp_path, kind, match):
    path = tmp_path / "train.json"
    path.write_bytes(_garbage(kind))
    try:
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, check=True, timeout=600
        )
    finally:
        path.unlink()  # pytest keeps recent temporary folders: do not keep 100 MB in them
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] is not None and result["error"].startswith("MetadataError"), result
    assert re.search(match, result["error"]), result["error"]
    ratio = result["growth"] / GARBAGE_BYTES
    assert 0.5 < ratio < 3, f"peak RSS grew by {ratio:.1f}x the file size"  # it holds the file once, at least
    record(
        "hostile input",
        f"100 MiB single-line garbage train.json ({kind})",
        "MetadataError; peak RSS growth under 3x the file size",
        f"{_error(MetadataError(result['error'].removeprefix('MetadataError: ')), 120)}; "
        f"peak RSS growth {ratio:.0f}x the file size",
    )


# --- through the builder --------------------------------------------------------------------------------------

BUILDER_CONFIG = {"min_client_size": 1}


@pytest.fixture(scope="module")
def train_rows(tiny_replica) -> list[dict]:
    """The tiny replica's train records (file names to break)."""
    return json.loads((Path(tiny_replica.url) / "train.json").read_text())["images"]


def _copy(tiny_replica, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_replica.url, tmp_path / "data"))


def _builder(root: Path, tmp_path: Path, **overrides: Any) -> INaturalistFL:
    return INaturalistFL(
        config_name="family_user",
        data_dir=str(root),
        cache_dir=str(tmp_path / f"cache-{len(list(tmp_path.glob('cache-*')))}"),
        **{**BUILDER_CONFIG, **overrides},
    )


def _break(root: Path, kind: str, file_name: str) -> str:
    """Damage one image of a copied replica; return the file name the metadata now holds."""
    path = root / file_name
    if kind == "corrupt JPEG":  # a JPEG signature, then noise
        path.write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(1).bytes(2000))
    elif kind == "zero-byte file":
        path.write_bytes(b"")
    else:  # a file name leaving the data folder, pointing at a real JPEG outside it
        outside = "../outside.jpg" if kind == "file name with ../" else str(root.parent / "outside.jpg")
        (root.parent / "outside.jpg").write_bytes(path.read_bytes())
        doc = json.loads((root / "train.json").read_text())
        for image in doc["images"]:
            if image["file_name"] == file_name:
                image["file_name"] = outside
        (root / "train.json").write_text(json.dumps(doc))
        return outside
    return file_name


@pytest.mark.parametrize("kind", ["corrupt JPEG", "zero-byte file", "file name with ../", "absolute file name"])
def test_a_bad_image_through_the_builder(tiny_replica, train_rows, tmp_path, kind):
    victim = train_rows[len(train_rows) // 2]
    root = _copy(tiny_replica, tmp_path)
    name = _break(root, kind, victim["file_name"])
    with pytest.raises(datasets.exceptions.DatasetGenerationError) as info:
        _builder(root, tmp_path).download_and_prepare()
    cause = info.value.__cause__
    assert isinstance(cause, BadImageError), repr(cause)
    assert name in str(cause) and f"image id {victim['id']}" in str(cause)
    skipping = _builder(root, tmp_path, on_bad_image="skip")
    skipping.download_and_prepare()
    skipped = skipped_rows(skipping.cache_dir)
    assert [(row["image_id"], row["file_name"]) for row in skipped] == [(victim["id"], name)]
    train = skipping.as_dataset("train")
    assert victim["id"] not in train["image_id"]
    assert train.num_rows + len(skipped) == len(train_rows)
    record(
        "hostile input",
        f"builder: {kind} in the data folder",
        "on_bad_image=error: DatasetGenerationError from BadImageError naming file and image id; "
        "skip: row left out and listed, rows in = examples out + skipped",
        f"error: {type(cause).__name__} naming the file and image id {victim['id']}: {skipped[0]['reason']}; "
        f"skip: {train.num_rows} examples + {len(skipped)} skipped = {len(train_rows)} rows",
    )


def test_absurd_image_sizes_through_the_builder(tiny_replica, train_rows, tmp_path):
    root = _copy(tiny_replica, tmp_path)
    doc = json.loads((root / "train.json").read_text())
    claims = {3: ("width", 10**9), 5: ("height", -5), 7: ("width", "500px")}
    for i, (key, value) in claims.items():
        doc["images"][i][key] = value
    (root / "train.json").write_text(json.dumps(doc))
    with pytest.raises(MetadataError, match=r"train\.json: images\[\d\]\.(width|height) = .* (is not a valid|is out)"):
        _builder(root, tmp_path)
    try:
        _builder(root, tmp_path)
    except MetadataError as err:
        message = _error(err)
    table = load_metadata(str(root), on_invalid="skip")
    train = metadata_report(table).files[0]
    assert train.skipped == {"invalid_height": 1, "invalid_width": 2}
    assert train.rows_in == len(train_rows) == train.rows_out + 3
    assert not {doc["images"][i]["id"] for i in claims} & set(table["image_id"].to_pylist())
    skipping = _builder(root, tmp_path, on_invalid="skip")
    skipping.download_and_prepare()
    kept = set(skipping.as_dataset("train")["image_id"])  # no holdout: no test split
    dropped = set(skipping.manifest.dropped["image_id"].to_pylist())
    assert not {doc["images"][i]["id"] for i in claims} & kept
    assert len(kept) + len(dropped) == train.rows_out
    record(
        "hostile input",
        "builder: train.json claiming width 10**9, height -5, width '500px'",
        "on_invalid=error (default): MetadataError at construction naming record and field; "
        "on_invalid=skip: the 3 rows dropped and counted, the rest prepared",
        f"{message}; skip: {train.rows_in} in, {train.rows_out} out, skipped {train.skipped}; "
        f"prepared {len(kept)} train+test rows + {len(dropped)} dropped by the partition",
    )
