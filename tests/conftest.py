"""Shared fixtures.

Azurite
    ``azurite`` starts the Azure Blob emulator (npm package ``azurite``) once per session on a free
    loopback port; ``az_container`` gives each test a fresh container. Tests that use them are marked
    ``@pytest.mark.azurite``. Without the emulator these tests fail (they are never skipped): install it
    with ``npm install --prefix .tools azurite@3.35.0`` in the repository root, or set ``AZURITE_BLOB_BIN``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

import pytest

from inat_hf.testing.azurite import AzuriteNotInstalled, AzuriteServer, azurite_binary

REPO_ROOT = Path(__file__).resolve().parents[1]


class AzContainer(NamedTuple):
    """A fresh container: unpack as ``url, storage_options = az_container``."""

    url: str
    storage_options: dict[str, str]

    @property
    def name(self) -> str:
        return self.url.removeprefix("az://")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """Start Azurite's blob service for the whole session and stop it afterwards (never skipped: a missing
    Azurite fails the run with the command that installs it)."""
    try:
        binary = azurite_binary(REPO_ROOT)
    except AzuriteNotInstalled as missing:
        pytest.fail(f"{missing}; these tests are never skipped", pytrace=False)
    server = AzuriteServer(tmp_path_factory.mktemp("azurite"), binary=binary)
    try:
        server.start()
    except RuntimeError as failed:
        pytest.fail(str(failed), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def az_container(azurite: AzuriteServer) -> Iterator[AzContainer]:
    """Create a uniquely named container in Azurite for one test and delete it afterwards."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    name = f"test-{uuid.uuid4().hex[:20]}"
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
        try:
            yield AzContainer(f"az://{name}", azurite.storage_options())
        finally:
            with suppress(ResourceNotFoundError):
                service.delete_container(name)


# --- the synthetic replica ------------------------------------------------------------------------------


class Replica(NamedTuple):
    """A replica written to local disk and the counts a test must see."""

    url: str
    counts: object  # inat_hf.sample.SampleCounts


@pytest.fixture(scope="session")
def tiny_replica(tmp_path_factory: pytest.TempPathFactory) -> Replica:
    """The ``tiny`` replica (seed 0) with its JPEGs, written once per session; treat it as read-only."""
    from inat_hf.replica import write_sample

    folder = tmp_path_factory.mktemp("tiny-replica")
    return Replica(str(folder), write_sample(str(folder), scale="tiny", seed=0))


@pytest.fixture(scope="session")
def small_replica(tmp_path_factory: pytest.TempPathFactory) -> Replica:
    """The ``small`` replica (seed 0) with its JPEGs (up to 500 px), written once per session; read-only."""
    from inat_hf.replica import write_sample

    folder = tmp_path_factory.mktemp("small-replica")
    return Replica(str(folder), write_sample(str(folder), scale="small", seed=0))


@pytest.fixture(scope="session")
def small_metadata(tmp_path_factory: pytest.TempPathFactory) -> Replica:
    """The ``small`` replica's metadata only (no JPEGs), written once per session; read-only."""
    from inat_hf.replica import write_sample

    folder = tmp_path_factory.mktemp("small-metadata")
    return Replica(str(folder), write_sample(str(folder), scale="small", seed=0, metadata_only=True))


def write_processed_csv(train_json: str | Path, path: str | Path) -> Path:
    """``training_image_info.csv`` of a ``train.json``, as the known copy has it: pandas' ``DataFrame.to_csv`` of
    the required columns (a pandas index column first, empty header), species as scientific names.
    """
    from inat_hf.metadata import load_metadata
    from inat_hf.metadata.processed_csv import REQUIRED_COLUMNS

    load_metadata(str(train_json)).select(list(REQUIRED_COLUMNS)).to_pandas().to_csv(path)
    return Path(path)


@pytest.fixture(scope="session")
def tiny_csv_replica(tmp_path_factory: pytest.TempPathFactory, tiny_replica: Replica) -> Replica:
    """The ``tiny`` replica's metadata as the processed CSV: :func:`write_processed_csv` of its ``train.json``,
    beside a copy of its ``val.json`` (the images stay in ``tiny_replica``); written once per session, read-only.
    """
    folder = tmp_path_factory.mktemp("tiny-csv")
    write_processed_csv(Path(tiny_replica.url) / "train.json", folder / "training_image_info.csv")
    (folder / "val.json").write_bytes((Path(tiny_replica.url) / "val.json").read_bytes())
    return Replica(str(folder), tiny_replica.counts)


# --- RELIABILITY.md --------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--reliability-report PATH``: write the rows of the reliability tests there (see ``tests/reliability.py``)."""
    parser.addoption(
        "--reliability-report",
        default=None,
        metavar="PATH",
        help="write RELIABILITY.md from this run to PATH (only after a complete, passing run of the reliability tests)",
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write ``--reliability-report`` from the rows the reliability tests recorded (never without the option).

    Only after a session with no failure that ran every reliability test file, unfiltered (a partial run
    would drop rows), and recorded at least one row; the text has no timestamp, so a rerun gives the same file.
    """
    import reliability

    target = session.config.getoption("--reliability-report")
    if not target:
        return
    ran = {Path(str(item.fspath)).stem for item in session.items}
    options = session.config.option
    filtered = bool(
        getattr(options, "keyword", "") or getattr(options, "markexpr", "") or getattr(options, "lf", False)
    )
    complete = set(reliability.RELIABILITY_MODULES) <= ran and not filtered
    if exitstatus != 0 or session.testsfailed or not complete or not reliability.ROWS:
        print(f"\n{target} not written: the reliability tests did not all run and pass", file=sys.stderr)
        return
    Path(target).write_text(reliability.render(reliability.ROWS), encoding="utf-8")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): on
    a busy 2-core runner more threads spin and slow CPU training a hundredfold. Results do not depend on it
    (the same seeds give the same numbers).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
