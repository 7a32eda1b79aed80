"""Images from the user's own copy, added to a manifest-only export (or to any dataset with ``file_name``).

The iNat terms forbid redistributing the images, so an export holds labels, partitions and file names but no
image bytes; :func:`attach_images` adds the bytes from your own copy, lazily and concurrently, giving the same
examples the builder gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets

from inat_hf import storage
from inat_hf.errors import StorageNotFoundError
from inat_hf.federated.compat import decode_mapped


def attach_images(
    dataset: datasets.Dataset | datasets.IterableDataset,
    images_url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    batch_size: int = 256,
    decode: bool = True,
) -> datasets.Dataset | datasets.IterableDataset:
    """Add the ``image`` column from your own copy of the images (``file_name`` relative to ``images_url``).

    Lazy: an ``IterableDataset`` fetches each batch as it is iterated (``map``); a ``Dataset`` gets an
    on-the-fly transform, so nothing is fetched before rows are read. Fetches are concurrent
    (``storage.fetch_many``); a missing image raises :class:`~inat_hf.errors.StorageError` naming it.
    ``decode=False`` gives a ``Dataset``'s images as ``{"bytes", "path"}`` (as ``Image(decode=False)``
    does), for an input pipeline that decodes them itself (``inat_hf.train.pipeline``).
    """
    loc = storage.resolve(images_url, storage_options)
    image_feature = datasets.Image()

    def add(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        try:
            blobs = storage.fetch_many(loc, batch["file_name"])
        except StorageNotFoundError as err:
            raise StorageNotFoundError(
                f"{err}. An export's file_name is relative to the images folder: copy the missing image there, "
                "or pass the folder that holds the images (--images-dir)"
            ) from err
        return {**batch, "image": [{"bytes": b, "path": n} for b, n in zip(blobs, batch["file_name"], strict=True)]}

    if isinstance(dataset, datasets.IterableDataset):
        features = datasets.Features({"image": image_feature, **(dataset.features or {})})
        mapped = dataset.map(add, batched=True, batch_size=batch_size, features=features)
        return decode_mapped(mapped)  # map's output is not decoded by default

    def decoded(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        batch = add(batch)
        batch["image"] = [image_feature.decode_example(item) for item in batch["image"]]
        return batch

    return dataset.with_transform(decoded if decode else add)
