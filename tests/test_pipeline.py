"""The input pipeline: ImageTransform gives ViTImageProcessor's pixel values within the documented tolerance."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from inat_hf.replica.images import render
from inat_hf.train.pipeline import (
    DRAFT_MEAN_TOLERANCE,
    DRAFT_P99_TOLERANCE,
    ImageTransform,
    ViTTransform,
    decode,
    make_loader,
    make_processor,
    make_transform,
    pil_filter,
    with_pipeline,
)

SIZES = [(500, 375), (500, 333), (500, 500), (375, 500), (333, 500), (500, 281), (400, 300)]
"""iNat 2021's commonest image sizes (longer side 500 px), and one smaller."""


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return [
        render(*SIZES[i % len(SIZES)], family=f"F{i % 5}", genus=f"G{i % 7}", species=i, image_id=1000 + i, seed=0)
        for i in range(28)
    ]


def _items(jpegs: list[bytes]) -> list[dict]:
    return [{"bytes": data, "path": f"train/{i}.jpg"} for i, data in enumerate(jpegs)]


def _reference(jpegs: list[bytes], size: str) -> torch.Tensor:
    reference = ViTTransform(make_processor(size=size))
    return reference({"image": [Image.open(io.BytesIO(data)) for data in jpegs]})["pixel_values"]


@pytest.mark.parametrize("size", ["base", "tiny"])
def test_exact_decode_equals_the_processor(jpegs, size):
    fast = make_transform(make_processor(size=size), draft=False)
    assert isinstance(fast, ImageTransform)
    got = fast({"image": _items(jpegs), "label": list(range(len(jpegs)))})
    expected = _reference(jpegs, size)
    assert got["pixel_values"].dtype == torch.float32 and got["pixel_values"].shape == expected.shape
    assert float((got["pixel_values"] - expected).abs().max()) <= 1e-5
    assert got["labels"].tolist() == list(range(len(jpegs)))


def test_draft_decode_is_within_the_documented_tolerance(jpegs):
    fast = make_transform(make_processor(size="base"))  # 224 px
    assert isinstance(fast, ImageTransform) and fast.draft
    diff = (fast({"image": _items(jpegs)})["pixel_values"] - _reference(jpegs, "base")).abs()
    assert float(diff.mean()) <= DRAFT_MEAN_TOLERANCE
    assert float(torch.quantile(diff.flatten()[::7], 0.99)) <= DRAFT_P99_TOLERANCE
    assert float(diff.max()) > 0  # draft decoding did happen (and so changed some pixels)


def test_draft_keeps_the_longer_side_at_least_the_target(jpegs):
    image = decode({"bytes": jpegs[0], "path": None}, (224, 224))  # 500 x 375
    assert image.size == (250, 188) and image.mode == "RGB"
    assert decode({"bytes": jpegs[0], "path": None}, (300, 300)).size == (500, 375)  # no 1/2 step fits
    assert decode({"bytes": jpegs[0], "path": None}, (32, 32)).size == (63, 47)  # 1/8


def test_png_and_grey_images_pass_unchanged_paths():
    grey = Image.fromarray(np.arange(64 * 48, dtype=np.uint8).reshape(48, 64) % 251, mode="L")
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    fast = make_transform(make_processor(size="tiny"))
    out = fast({"image": [{"bytes": buffer.getvalue(), "path": "g.png"}, grey]})["pixel_values"]
    expected = ViTTransform(make_processor(size="tiny"))({"image": [grey, grey]})["pixel_values"]
    assert float((out - expected).abs().max()) <= 1e-5


def test_bad_images_name_the_file_and_the_fix():
    fast = make_transform(make_processor(size="tiny"))
    with pytest.raises(ValueError, match=r"image train/bad\.jpg cannot be decoded .*on_bad_image='skip'"):
        fast({"image": [{"bytes": b"not a jpeg", "path": "train/bad.jpg"}]})
    with pytest.raises(ValueError, match=r"no image \(neither bytes nor a path\).*attach the images"):
        fast({"image": [{"bytes": None, "path": None}]})


def test_with_pipeline_reads_bytes_and_loads_batches(jpegs):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    table = {"image": [{"bytes": data, "path": None} for data in jpegs[:6]], "label": [0, 1] * 3}
    dataset = datasets.Dataset.from_dict(table, features=features)
    pipeline = with_pipeline(dataset, make_transform(make_processor(size="tiny")))
    assert pipeline.features["image"].decode is False  # the transform decodes, in draft mode
    batches = list(make_loader(pipeline, 4, seed=0, workers=0))
    assert [b["pixel_values"].shape for b in batches] == [(4, 3, 32, 32), (2, 3, 32, 32)]
    assert sorted(int(x) for b in batches for x in b["labels"]) == [0, 0, 0, 1, 1, 1]
    loader = make_loader(pipeline, 4, workers=1)
    assert loader.persistent_workers and loader.prefetch_factor == 4


def test_a_processor_it_cannot_reproduce_falls_back():
    processor = make_processor(size="tiny")
    processor.size = {"shortest_edge": 32}
    with pytest.warns(UserWarning, match=r"cannot reproduce this processor .*height x width only"):
        assert isinstance(make_transform(processor), ViTTransform)


def test_resampling_filters_by_pil_value_or_torchvision_name():
    class InterpolationMode:  # as torchvision.transforms.InterpolationMode.BILINEAR
        value = "bilinear"

    assert pil_filter(Image.Resampling.BICUBIC) == 3 and pil_filter(2) == 2 and pil_filter(InterpolationMode()) == 2
    with pytest.raises(ValueError, match="has no PIL filter"):
        pil_filter("nearest-exact")
