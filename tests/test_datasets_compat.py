"""inat_hf.federated.compat: what it says about the installed datasets line holds (run on datasets 4 and 5)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import datasets
import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from PIL import Image

from inat_hf.federated import compat

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "inat_hf"


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


def _mapped_images() -> datasets.IterableDataset:
    """An IterableDataset whose ``image`` column comes from ``map`` (as ``attach_images`` makes it)."""
    raw = _jpeg()
    base = datasets.Dataset.from_dict({"file_name": ["a.jpg", "b.jpg", "c.jpg"]}).to_iterable_dataset()
    features = datasets.Features({"image": datasets.Image(), **base.features})

    def add(batch: dict) -> dict:
        return {**batch, "image": [{"bytes": raw, "path": name} for name in batch["file_name"]]}

    return base.map(add, batched=True, batch_size=2, features=features)


def test_the_installed_line_is_one_that_pyproject_allows_and_ci_tests():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (spec,) = [Requirement(d).specifier for d in project["dependencies"] if Requirement(d).name == "datasets"]
    installed = Version(datasets.__version__)
    assert compat.LINE == installed.major in (4, 5)
    assert spec.contains(installed), f"datasets {installed} is installed but pyproject.toml allows {spec}"
    assert not spec.contains("3.6.0") and not spec.contains("6.0.0")  # nothing wider than the two lines
    test_sh = (REPO / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert "flwr-datasets==0.6.1" in test_sh and "inat_hf.federated.compat" in test_sh  # both lines run in CI


def test_batch_by_column_exists_exactly_where_the_module_says():
    table = datasets.Dataset.from_dict({"client_id": [0, 0, 1, 2, 2, 2], "x": list(range(6))})
    if not compat.BATCH_BY_COLUMN:
        assert compat.LINE == 4 and "datasets 5" in (compat.batch_by_column_missing() or "")
        for dataset in (table, table.to_iterable_dataset()):
            with pytest.raises(TypeError, match="by_column"):
                dataset.batch(by_column="client_id")
        return
    assert compat.LINE == 5 and compat.batch_by_column_missing() is None
    expected = [
        {"client_id": [0, 0], "x": [0, 1]},
        {"client_id": [1], "x": [2]},
        {"client_id": [2] * 3, "x": [3, 4, 5]},
    ]
    for dataset in (table, table.to_iterable_dataset()):
        assert list(dataset.batch(by_column="client_id", batch_size=2)) == expected


def test_decode_mapped_decodes_maps_output_on_both_lines_where_decode_alone_differs():
    plain = next(iter(_mapped_images().decode(True)))["image"]
    # The difference the module documents: decode(True) alone decodes map's output on 5.x only.
    assert isinstance(plain, Image.Image) if compat.LINE >= 5 else isinstance(plain, dict)
    images = [row["image"] for row in compat.decode_mapped(_mapped_images())]
    assert len(images) == 3 and all(isinstance(image, Image.Image) and image.size == (4, 3) for image in images)
    assert [row["file_name"] for row in compat.decode_mapped(_mapped_images())] == ["a.jpg", "b.jpg", "c.jpg"]


def test_no_other_module_looks_at_the_datasets_version():
    pattern = re.compile(r"datasets\.__version__|\bconfig\.PY\w*VERSION|version\(\s*[\"']datasets[\"']\s*\)")
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted([*PACKAGE.rglob("*.py"), REPO / "inaturalist_fl.py", *(REPO / "tests").glob("*.py")])
        if path.name not in {"compat.py", Path(__file__).name} and pattern.search(path.read_text("utf-8"))
    ]
    assert not offenders, f"use inat_hf.federated.compat instead of a version check in {offenders}"
