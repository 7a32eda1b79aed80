"""The replica's JPEGs at any side (``image_side``), in processes or threads, resumable and deterministic."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from inat_hf.cli import main
from inat_hf.replica import write_sample


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _stamps(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _records(root: Path) -> list[dict]:
    splits = ("train", "val", "train_mini")
    return [image for split in splits for image in json.loads((root / f"{split}.json").read_text())["images"]]


def _total(counts) -> int:
    return counts.train_images + counts.val_images + counts.train_mini_images


def test_image_side_in_processes_gives_the_bytes_of_threads(tmp_path):
    in_processes = write_sample(str(tmp_path / "a"), scale="tiny", seed=3, image_side=24, processes=2)
    in_threads = write_sample(str(tmp_path / "b"), scale="tiny", seed=3, image_side=24)
    assert in_processes == in_threads
    assert in_processes.jpegs_written == _total(in_processes) == 211 and in_processes.jpegs_present == 0
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b")
    assert in_processes.jpeg_bytes == sum(len(data) for name, data in files.items() if name.endswith(".jpg"))
    records = _records(tmp_path / "a")
    assert len(records) == 211 and all(max(r["width"], r["height"]) <= 24 for r in records)
    assert sum(max(r["width"], r["height"]) == 24 for r in records) >= 0.8 * len(records)
    for record in records:
        with Image.open(io.BytesIO(files[record["file_name"]])) as picture:
            assert picture.format == "JPEG" and picture.size == (record["width"], record["height"])
    by_id = {}
    for record in records:  # a train_mini JPEG has the bytes of its train image
        by_id.setdefault(record["id"], set()).add(files[record["file_name"]])
    assert all(len(blobs) == 1 for blobs in by_id.values())


def test_a_rerun_writes_only_the_missing_files_and_a_second_one_nothing(tmp_path):
    root = tmp_path / "replica"
    first = write_sample(str(root), scale="tiny", image_side=16)
    complete, stamps = _files(root), _stamps(root)
    gone = [name for name in complete if name.endswith(".jpg")][::40]  # train, train_mini and val files
    assert {name.split("/")[0] for name in gone} == {"train", "train_mini", "val"}
    for name in gone:
        (root / name).unlink()
    folder = (root / gone[0]).parent
    (folder / ".half.jpg.0123456789ab.part").write_bytes(b"left by a killed run")
    again = write_sample(str(root), scale="tiny", image_side=16)
    assert again.jpegs_written == len(gone) and again.jpegs_present == _total(first) - len(gone)
    assert again.jpeg_bytes == first.jpeg_bytes and _files(root) == complete  # the partial file is gone
    kept = {name: stamp for name, stamp in _stamps(root).items() if name not in gone}
    assert kept == {name: stamp for name, stamp in stamps.items() if name not in gone}  # JSON files too
    before = _stamps(root)
    third = write_sample(str(root), scale="tiny", image_side=16)
    assert third.jpegs_written == 0 and third.jpegs_present == _total(first) and _stamps(root) == before


def test_a_folder_holding_another_replica_is_written_again(tmp_path):
    root = tmp_path / "replica"
    write_sample(str(root), scale="tiny", image_side=16)
    other = write_sample(str(root), scale="tiny", image_side=20)  # the same file names, other sizes
    assert other.jpegs_written == _total(other) and other.jpegs_present == 0
    for record in _records(root):
        with Image.open(root / record["file_name"]) as picture:
            assert picture.size == (record["width"], record["height"])


def test_image_side_32_is_the_tiny_images():
    from inat_hf.replica import build_replica

    tiny = build_replica("tiny", seed=0)
    assert build_replica("tiny", seed=0, image_side=32).train.equals(tiny.train)
    assert build_replica("small", seed=0, tiny_images=True).train.equals(build_replica("small", image_side=32).train)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_side": 4}, "image_side=4 is invalid; allowed: 8 to 4096"),
        ({"image_side": 5000}, "image_side=5000 is invalid"),
        ({"image_side": 16, "tiny_images": True}, "disagree"),
        ({"image_side": 32, "tiny_images": False}, "disagree"),
    ],
)
def test_a_bad_image_side_is_refused(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        write_sample(str(tmp_path), scale="tiny", **kwargs)


def test_processes_cannot_write_to_memory():
    with pytest.raises(ValueError, match=r"memory:// replica lives in one process"):
        write_sample("memory://replica-processes", scale="tiny", processes=2)


def test_cli_sample_image_side_and_rerun(tmp_path, capsys):
    out = tmp_path / "replica"
    argv = ["sample", str(out), "--scale", "tiny", "--image-side", "16", "--processes", "1", "--no-summary"]
    assert main(argv) == 0
    assert "211 JPEGs written, 0 already complete" in capsys.readouterr().out
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "0 JPEGs written, 211 already complete" in captured.out and "files/s" in captured.err
    assert main([*argv[:4], "--image-side", "3"]) == 2
    assert "image_side=3 is invalid" in capsys.readouterr().err
