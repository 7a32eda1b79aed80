"""The ViT input pipeline: image bytes -> ``pixel_values``, fast enough to feed a GPU.

Two transforms give the same model inputs, set on a dataset with :func:`with_pipeline`:

- :class:`ImageTransform` (the default of :func:`make_transform`): each JPEG is decoded at a reduced size
  with PIL's draft mode when the target is at most half the source (libjpeg scales by 1/2, 1/4 or 1/8 in
  the DCT, so most of the decode is skipped), resized with PIL to the processor's size with its resample
  filter, and the whole batch is rescaled and normalised as one tensor (no per-image processor call).
- :class:`ViTTransform`: ``ViTImageProcessor`` on each batch of decoded images (the reference).

**Tolerance.** With ``draft=False`` the two agree to float32 rounding (``|diff| <= 1e-5``). Draft decoding
follows ``PIL.Image.thumbnail``'s rule (the reduced image keeps its longer side at least the target's,
so a 500x375 JPEG is decoded at 250x188 for a 224x224 target). For targets of ViT size (224 px) the pixel
values then differ from the processor's by a mean absolute difference of at most
:data:`DRAFT_MEAN_TOLERANCE` and a 99th percentile of at most :data:`DRAFT_P99_TOLERANCE`, in normalised
units (``(x / 255 - 0.5) / 0.5`` spans 2, one grey level is 0.0078); ``tests/test_pipeline.py`` checks both
on replica JPEGs of iNat's sizes (measured: mean 0.0037, 99th percentile 0.031). Far smaller targets
take the 1/8 step and move more (32 px, the test ViT: mean 0.013, 99th percentile 0.13); pass
``draft=False`` where exact values matter. Speed and the measurement are in ``BENCHMARKS.md``.

Loaders (:func:`make_loader`) call the transform once per batch (``__getitems__``), keep their worker
processes between epochs (``persistent_workers``) and pin memory when CUDA is there.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader

VIT_IMAGE_SIDES = {"tiny": 32, "base": 224}
"""The image side of the random ViTs of :data:`inat_hf.train.training.VIT_SIZES`."""
DRAFT_MEAN_TOLERANCE = 0.01
"""Largest mean absolute difference from ``ViTImageProcessor`` with draft decoding, 224 px (normalised)."""
DRAFT_P99_TOLERANCE = 0.05
"""Largest 99th percentile of the absolute difference with draft decoding, 224 px (normalised units)."""
Batch = dict[str, list]
Previous = Callable[[Batch], Batch]


def make_processor(*, checkpoint: str | None = None, size: str = "tiny") -> Any:
    """``ViTImageProcessor.from_pretrained(checkpoint)``, or one for the random ViT's image size.

    Without torchvision, recent transformers fall back to the PIL backend (``ViTImageProcessorPil``, the same
    preprocessing); it is taken directly, without the fallback warning.
    """
    import transformers

    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "ViTImageProcessorPil"):
        cls = transformers.ViTImageProcessorPil
    else:
        cls = transformers.ViTImageProcessor
    if checkpoint:
        return cls.from_pretrained(checkpoint)
    if size not in VIT_IMAGE_SIDES:
        raise ValueError(f"unknown ViT size {size!r}; choose from {', '.join(VIT_IMAGE_SIDES)}")
    side = VIT_IMAGE_SIDES[size]
    return cls(size={"height": side, "width": side})  # mean = std = 0.5, as ViT-B/16 in21k


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


@dataclass(frozen=True)
class ViTTransform:
    """Batch transform (``set_transform``) through ``ViTImageProcessor``: images -> ``pixel_values``,
    ``label`` -> ``labels``; picklable. ``previous`` is a transform the dataset already had, applied first.
    """

    processor: Any
    previous: Previous | None = None

    def __call__(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Turn a batch of rows into model inputs (after the transform set before this one, if any)."""
        if self.previous is not None:
            batch = self.previous(batch)
        images = [_rgb(image if isinstance(image, Image.Image) else decode(image)) for image in batch["image"]]
        out = {"pixel_values": self.processor(images=images, return_tensors="pt")["pixel_values"]}
        if "label" in batch:
            out["labels"] = torch.as_tensor(batch["label"], dtype=torch.long)
        return out


def decode(item: Any, target: tuple[int, int] | None = None) -> Image.Image:
    """Decode one image (``{"bytes", "path"}`` as ``datasets.Image(decode=False)`` gives it, bytes, or a PIL
    image), in draft mode for ``target`` (width, height) when given: the JPEG is decoded at the smallest of
    1/1, 1/2, 1/4, 1/8 of its size whose longer side is still at least the target's (``thumbnail``'s rule).

    Raises
    ------
    ValueError
        If there is no image (no bytes and no path) or it cannot be decoded; the message names its path.
    """
    if isinstance(item, Image.Image):
        return _rgb(item)
    data, path = (item.get("bytes"), item.get("path")) if isinstance(item, dict) else (item, None)
    if data is None:
        if not path:
            raise ValueError(
                "a row has no image (neither bytes nor a path): prepare with on_bad_image='skip' to leave such "
                "rows out, or attach the images (inat_hf.export.attach_images / --images)"
            )
        return _rgb(datasets.Image().decode_example({"bytes": None, "path": path}))
    try:
        image = Image.open(io.BytesIO(data))
        if target is not None and image.format == "JPEG":
            width, height = image.size
            scale = max(target) / max(width, height)
            if scale < 1:
                image.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
        image.load()
        return _rgb(image)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(
            f"image {path or '(no path)'} cannot be decoded ({err}): replace the file, or prepare with "
            "on_bad_image='skip' to leave it out"
        ) from err


_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def pil_filter(resample: Any) -> int:
    """PIL's resampling filter for a processor's ``resample``: a PIL filter (or its int), or a torchvision
    ``InterpolationMode`` (the torchvision backend of recent transformers), by name.

    Raises
    ------
    ValueError
        If it names no PIL filter.
    """
    value = getattr(resample, "value", resample)
    if isinstance(value, int):
        return value
    name = str(value).lower().rsplit(".", 1)[-1]
    if name not in _FILTERS:
        raise ValueError(f"resample {resample!r} has no PIL filter; known: {', '.join(_FILTERS)}")
    return _FILTERS[name]


@dataclass(frozen=True)
class ImageTransform:
    """Batch transform (``set_transform``): image bytes -> normalised ``pixel_values`` (float32, NCHW),
    ``label`` -> ``labels``; the same inputs as ``ViTImageProcessor`` (see the module docstring); picklable.

    Parameters
    ----------
    height, width : int
        The model's input size.
    mean, std : tuple of float
        Per-channel normalisation after ``rescale``.
    rescale : float
        Factor from 0..255 to the model's scale.
    resample : int
        PIL resampling filter (the processor's; bilinear for ViT).
    draft : bool
        Decode JPEGs at a reduced size when the target allows (the speed; see the tolerance).
    previous : callable, optional
        A transform the dataset already had (``attach_images``'s), applied first.
    """

    height: int
    width: int
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    rescale: float = 1 / 255
    resample: int = Image.Resampling.BILINEAR
    draft: bool = True
    previous: Previous | None = None

    @classmethod
    def from_processor(cls, processor: Any, *, draft: bool = True) -> ImageTransform:
        """The transform equal to ``processor`` (a ViT image processor: resize to height x width, rescale,
        normalise, nothing else).

        Raises
        ------
        ValueError
            If the processor does more or other than that (e.g. a shortest-edge resize or a centre crop).
        """
        size = dict(processor.size)
        if set(size) != {"height", "width"} or getattr(processor, "do_center_crop", False):
            raise ValueError(f"ImageTransform reproduces a resize to height x width only, not {size}")
        if not (processor.do_resize and processor.do_rescale and processor.do_normalize):
            raise ValueError("ImageTransform reproduces a processor that resizes, rescales and normalises")
        return cls(
            height=int(size["height"]),
            width=int(size["width"]),
            mean=tuple(float(m) for m in np.broadcast_to(processor.image_mean, 3)),
            std=tuple(float(s) for s in np.broadcast_to(processor.image_std, 3)),
            rescale=float(processor.rescale_factor),
            resample=pil_filter(processor.resample),
            draft=draft,
        )

    def pixels(self, items: Sequence[Any]) -> torch.Tensor:
        """Decoded, resized images as one uint8 tensor of shape (n, 3, height, width)."""
        target = (self.width, self.height)
        hint = target if self.draft else None
        array = np.empty((len(items), self.height, self.width, 3), dtype=np.uint8)
        for i, item in enumerate(items):
            image = decode(item, hint)
            if image.size != target:
                image = image.resize(target, self.resample)
            array[i] = np.asarray(image)
        return torch.from_numpy(array).permute(0, 3, 1, 2)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(pixels * rescale - mean) / std`` as contiguous float32, for the whole batch at once: the uint8
        pixels are made contiguous first (a quarter of the bytes to move), then one multiply-add per value.
        """
        std = torch.tensor(self.std, dtype=torch.float64)
        scale = (self.rescale / std).to(torch.float32).view(1, -1, 1, 1)
        shift = (-torch.tensor(self.mean, dtype=torch.float64) / std).to(torch.float32).view(1, -1, 1, 1)
        return pixels.contiguous().to(torch.float32).mul_(scale).add_(shift)

    def __call__(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Turn a batch of rows into model inputs (after the transform set before this one, if any)."""
        if self.previous is not None:
            batch = self.previous(batch)
        out = {"pixel_values": self.normalise(self.pixels(batch["image"]))}
        if "label" in batch:
            out["labels"] = torch.as_tensor(batch["label"], dtype=torch.long)
        return out


Transform = ImageTransform | ViTTransform


def make_transform(processor: Any, *, fast: bool = True, draft: bool = True) -> Transform:
    """The batch transform of ``processor``: :class:`ImageTransform` (``fast``, when it can reproduce the
    processor), else :class:`ViTTransform`.
    """
    if fast:
        try:
            return ImageTransform.from_processor(processor, draft=draft)
        except ValueError as err:
            warnings.warn(
                f"the fast input pipeline cannot reproduce this processor ({err}); using it as is", stacklevel=2
            )
    return ViTTransform(processor)


def with_pipeline(dataset: datasets.Dataset, transform: Transform) -> datasets.Dataset:
    """A copy of ``dataset`` with ``transform`` set (``set_transform``): its rows come out as model inputs.

    A transform the dataset already has (``attach_images`` adds one) runs first; otherwise only ``image``
    and ``label`` are read, the images as bytes (``Image(decode=False)``) so that :class:`ImageTransform`
    decodes them in draft mode. The Arrow table is shared, so ``ClientData`` over the copy slices clients
    as before, and each client slice keeps the transform.
    """
    fmt = dataset.format
    previous = fmt["format_kwargs"].get("transform") if fmt["type"] == "custom" else None
    if previous is not None:
        return dataset.with_transform(dataclasses.replace(transform, previous=previous), columns=fmt["columns"])
    missing = {"image", "label"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"the dataset lacks column(s) {sorted(missing)}; columns: {dataset.column_names}")
    image = (dataset.features or {}).get("image")
    if isinstance(image, datasets.Image) and image.decode:
        dataset = dataset.cast_column("image", datasets.Image(decode=False))
    return dataset.with_transform(transform, columns=["image", "label"])


def make_loader(dataset: datasets.Dataset, batch_size: int, *, seed: int | None = None, workers: int = 0) -> DataLoader:
    """Batches through the dataset's transform, one call per batch (``__getitems__``); shuffled if seeded.

    With ``workers > 0`` the worker processes persist between epochs (``persistent_workers``) and each
    keeps 4 batches in flight; memory is pinned when CUDA is available (faster host-to-GPU copies).
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=seed is not None,
        generator=generator,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
