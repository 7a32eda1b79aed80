"""The fast path of the official JSON reader: slices parsed by Arrow in parallel, in file order.

Whatever the slice size and the number of slices in flight, the table is the one a single parse gives;
a slice Arrow refuses goes to orjson in the middle of the run; what is not JSON is still an error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import inat_hf.metadata.json_stream as json_stream
from inat_hf import MetadataError, load_metadata
from inat_hf.metadata.arrow_slices import find_slice, parse_slice
from inat_hf.metadata.official_json import _SCHEMAS

REFERENCE = Path(__file__).resolve().parent / "data" / "tfds_dummy" / "train.json"


def _doc(images: int) -> dict:
    """The reference file with ``images`` images (its three, repeated with new ids, users and numbers)."""
    doc = json.loads(REFERENCE.read_text())
    base, notes = doc["images"], doc["annotations"]
    doc["images"] = [
        {**base[i % 3], "id": 10 * i + 7, "rights_holder": f"user {i % 17}", "latitude": (i % 170) - 85 + 0.25}
        for i in range(images)
    ]
    doc["annotations"] = [
        {**notes[i % 3], "id": i, "image_id": 10 * i + 7, "category_id": notes[i % 3]["category_id"]}
        for i in range(images)
    ]
    return doc


def _load(path: Path, chunk: int, ahead: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(json_stream, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(json_stream, "SLICES_AHEAD", ahead)
    return load_metadata(str(path))


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")])
def test_any_slicing_gives_the_table_of_one_slice(tmp_path, monkeypatch, separators):
    doc = _doc(300)
    doc["images"][41]["rights_holder"] = 'tricky}, {"id": 5} ], "x": 1}]'  # Arrow refuses its slice
    doc["images"][42]["file_name"] += "}]"  # a false array end
    path = tmp_path / "train.json"
    path.write_text(json.dumps(doc, separators=separators, ensure_ascii=False))
    whole = _load(path, 1 << 30, 2, monkeypatch)
    assert whole.num_rows == 300
    for chunk in (7, 500, 4000):
        for ahead in (1, 2, 4):
            assert _load(path, chunk, ahead, monkeypatch).equals(whole), (chunk, ahead)


def test_objects_without_a_comma_between_them_are_not_json(tmp_path, monkeypatch):
    text = json.dumps(_doc(40), separators=(",", ":"))
    first = text.index("},{", text.index('"images"'))
    path = tmp_path / "train.json"
    path.write_text(text[:first] + "}{" + text[first + 3 :])  # Arrow alone would read two rows there
    for chunk in (7, 1 << 20):
        with pytest.raises(MetadataError, match="not valid JSON"):
            _load(path, chunk, 2, monkeypatch)


def test_a_slice_ends_at_its_array_end_not_in_the_next_array():
    data = b'{"images": [{"id": 1, "width": 2}, {"id": 2, "width": 3}], "annotations": [{"id": 1}, {"id": 2}]}'
    start = data.index(b"[") + 1
    last, after, closed = find_slice(data, start, 1 << 20)
    assert closed and data[last:after] == b"}]" and data[after:].startswith(b', "annotations"')
    table = parse_slice(data, start, last, _SCHEMAS["images"])
    assert table is not None and table["id"].to_pylist() == [1, 2] and table["width"].to_pylist() == [2, 3]
    last, after, closed = find_slice(data, start, 5)  # a cut after the first object
    assert not closed and data[last:after] == b"},"
