"""Real JPEG bytes for the replica's image records, with a learnable signal (written by
:mod:`inat_hf.replica.jpeg_files`).

Each picture is a 24-pixel sketch scaled up to the record's exact width x height with PIL and encoded as
JPEG (quality 80): a vertical gradient in the colours of the *family* (so the family is visible), one shape
(ellipse, box, triangle or ring) in the colour of the *genus* with a stripe pattern set by the *species*,
placed, sized and lit differently in every image, plus pixel noise. A small ViT can learn it; no two
images are identical. The picture depends only on its arguments, so any process draws the same bytes.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image

SKETCH = 24
QUALITY = 80
_GRID = np.mgrid[0:SKETCH, 0:SKETCH].astype(np.float32) / (SKETCH - 1)  # (2, y, x) in [0, 1]


def _colour(text: str, salt: int) -> np.ndarray:
    code = zlib.crc32(text.encode(), salt)
    return np.array([(code >> s) & 0xFF for s in (0, 8, 16)], dtype=np.float32)


def render(width: int, height: int, family: str, genus: str, species: int, image_id: int, seed: int) -> bytes:
    """Return the JPEG bytes of one image: ``width`` x ``height`` pixels, deterministic in its arguments."""
    rng = np.random.default_rng([seed, image_id])
    y, x = _GRID
    top, bottom = _colour(family, 1), _colour(family, 2)
    canvas = top + (bottom - top) * y[..., None]
    cy, cx = 0.5 + rng.normal(0, 0.12, 2)
    radius = 0.22 + 0.1 * rng.random()
    dy, dx = (y - cy) / radius, (x - cx) / radius
    shape = zlib.crc32(genus.encode()) % 4
    if shape == 0:
        mask = dx**2 + dy**2 < 1
    elif shape == 1:
        mask = (abs(dx) < 0.9) & (abs(dy) < 0.7)
    elif shape == 2:
        mask = (dy > -0.9) & (dy < 0.9) & (abs(dx) < (dy + 0.9) / 1.8)
    else:
        mask = (dx**2 + dy**2 < 1) & (dx**2 + dy**2 > 0.35)
    stripes = np.sin((x * np.cos(species) + y * np.sin(species)) * (6 + species % 7)) > 0
    fill = np.where(stripes[..., None], _colour(genus, 3), _colour(str(species), 4))
    canvas = np.where(mask[..., None], fill, canvas) * (0.75 + 0.5 * rng.random())
    canvas += rng.normal(0, 10, canvas.shape)
    sketch = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    sketch.resize((int(width), int(height)), Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()
