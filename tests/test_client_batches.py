"""datasets 5's ``batch(by_column="client_id")`` on an export and on ``inat-fl prepare``'s output: one batch per
client, holding all and only that client's rows, normal and streaming, across files and row groups."""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

import inat_hf.manifest.layout as layout_module
import inat_hf.prepare.driver as driver_module
from inat_hf.federated import compat as datasets_compat
from inat_hf.federated.clients import ClientData
from inat_hf.hub.folder import export_dataset, write_card
from inat_hf.prepare import prepare

pytestmark = pytest.mark.skipif(
    not datasets_compat.BATCH_BY_COLUMN, reason=str(datasets_compat.batch_by_column_missing())
)

CONFIG = "family_user"
ROWS_PER_FILE = 40
"""Small files and row groups, so that clients meet file and row-group boundaries on the tiny replica."""
ROWS_PER_GROUP = 8


@pytest.fixture(scope="module")
def exported(tiny_replica, tmp_path_factory) -> str:
    """A manifest-only export of the tiny replica in several files of several row groups."""
    out = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(driver_module, "FILE_ROWS_WITHOUT_IMAGES", ROWS_PER_FILE)
        patch.setattr(layout_module, "EXPORT_ROW_GROUP_ROWS", ROWS_PER_GROUP)
        export_dataset(str(out), tiny_replica.url, [CONFIG], cache_dir=str(tmp_path_factory.mktemp("cache")))
    return str(out)


@pytest.fixture(scope="module")
def prepared(tiny_replica, tmp_path_factory) -> str:
    """``inat-fl prepare``'s output (image bytes) of the tiny replica in several files of several row groups."""
    out = tmp_path_factory.mktemp("prepared")
    cache = str(tmp_path_factory.mktemp("cache"))
    report = prepare(str(out), tiny_replica.url, [CONFIG], cache_dir=cache, scheduler="synchronous",
                     file_rows=ROWS_PER_FILE, batch_rows=ROWS_PER_GROUP, progress=None)  # fmt: skip
    write_card(str(out), tiny_replica.url, report, cache_dir=cache)
    return str(out)


def _layout(out: str) -> tuple[int, int]:
    """(files, row groups) of the train split."""
    files = sorted(Path(out, "data", CONFIG).glob("train-*.parquet"))
    return len(files), sum(pq.ParquetFile(path).metadata.num_row_groups for path in files)


def _load(out: str, streaming: bool) -> datasets.Dataset | datasets.IterableDataset:
    loaded = datasets.load_dataset(out, CONFIG, split="train", streaming=streaming)
    if "image" not in loaded.features:
        return loaded
    return loaded.decode(False) if streaming else loaded.cast_column("image", datasets.Image(decode=False))


@pytest.mark.parametrize("source", ["exported", "prepared"])
@pytest.mark.parametrize("streaming", [False, True], ids=["dataset", "streaming"])
@pytest.mark.parametrize("batch_size", [None, 3], ids=["default", "batch_size=3"])
def test_one_batch_per_client_with_all_and_only_its_rows(source, streaming, batch_size, request, tiny_replica):
    out = request.getfixturevalue(source)
    files, groups = _layout(out)
    assert 1 < files < groups  # clients meet file and row-group boundaries
    clients = ClientData(_load(out, streaming=False))
    assert clients.num_clients == tiny_replica.counts.users and clients.sizes.max() > 3  # batch_size=3 cuts them
    batched = _load(out, streaming).batch(by_column="client_id", batch_size=batch_size)
    seen = []
    for batch in batched:
        (cid,) = set(batch["client_id"])
        seen.append(cid)
        expected = clients.client(cid)
        assert batch["image_id"] == expected["image_id"]
        assert batch["label"] == expected["label"]
        if "image" in batch:  # prepare's output: the image bytes of exactly those rows
            assert [image["bytes"] for image in batch["image"]] == [image["bytes"] for image in expected["image"]]
    assert seen == clients.client_ids.tolist()  # each client once, in client-id order


@pytest.mark.parametrize("streaming", [False, True], ids=["dataset", "streaming"])
def test_images_decode_in_client_batches_and_validation_is_one_central_batch(prepared, streaming, tiny_replica):
    loaded = datasets.load_dataset(prepared, CONFIG, streaming=streaming)
    first = next(iter(loaded["train"].batch(by_column="client_id")))
    assert first["image"] and all(image.size == (w, h) for image, w, h in
                                  zip(first["image"], first["width"], first["height"], strict=True))  # fmt: skip
    (validation,) = list(loaded["validation"].batch(by_column="client_id"))
    assert set(validation["client_id"]) == {-1} and len(validation["image_id"]) == tiny_replica.counts.val_images
