"""The latency blob server of the benchmarks (inat_hf.testing.blob_server), read through inat_hf.storage."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inat_hf import storage
from inat_hf.manifest.examples import check_image
from inat_hf.testing.blob_server import LatencyBlobServer, pad_jpeg


def _jpeg(side: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=80)
    return out.getvalue()


@pytest.fixture
def folder(tmp_path):
    for i in range(40):
        path = tmp_path / "train" / f"d{i % 3}" / f"img {i}.jpg"  # a space: the URL is percent-encoded
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_jpeg(24, i))
    (tmp_path / "notes.txt").write_text("not served")
    return tmp_path


def test_serves_every_file_concurrently_with_latency_and_404_for_others(folder):
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    with LatencyBlobServer(folder, latency_s=0.05, procs=2) as server:
        loc = storage.resolve(server.url)
        fetched = storage.fetch_many(loc, names, max_workers=40)
        assert fetched == [(folder / n).read_bytes() for n in names]
        missing = storage.fetch_many(loc, ["notes.txt", "train/d0/nope.jpg"], on_error="return")
        assert all(isinstance(m, storage.StorageNotFoundError) for m in missing)
        assert server.cpu_seconds() > 0
    assert all(not p.is_alive() for p in server.procs)


def test_padded_files_keep_their_pixels(folder):
    name = "train/d1/img 1.jpg"
    original = (folder / name).read_bytes()
    with LatencyBlobServer(folder, pad_to=83_000) as server:
        [padded] = storage.fetch_many(storage.resolve(server.url), [name])
    assert isinstance(padded, bytes) and len(padded) >= 83_000 > len(original)
    assert check_image(padded) is None
    decoded = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in (original, padded)]
    assert np.array_equal(*decoded)


def test_pad_jpeg_leaves_other_data_alone():
    assert pad_jpeg(b"GIF89a....", 1000) == b"GIF89a...."
    small = _jpeg(8, 0)
    assert pad_jpeg(small, len(small)) == small
    assert pad_jpeg(small, 200_000, seed=1) == pad_jpeg(small, 200_000, seed=1) != pad_jpeg(small, 200_000, seed=2)
