"""``prepare`` on a ``LocalCluster`` of 2 worker processes, from Azurite to Azurite: the same bytes as a local
run, and no credential in the task graph, the report, the card or the logs."""

from __future__ import annotations

import io
import logging
import pickle
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, suppress

import pyarrow.parquet as pq
import pytest
from distributed.diagnostics.plugin import SchedulerPlugin

from inat_hf import storage
from inat_hf.export import read_client
from inat_hf.hub.folder import write_card
from inat_hf.prepare import REPORT_FILE, prepare
from inat_hf.replica import write_sample

pytestmark = [pytest.mark.azurite, pytest.mark.slow]


class GraphScanner(SchedulerPlugin):
    """A scheduler plugin that pickles every task it is given and keeps the bytes (to scan for secrets)."""

    name = "inat-fl-graph-scanner"

    def __init__(self) -> None:
        super().__init__()
        self.pickled: dict[str, bytes] = {}

    def update_graph(self, scheduler, *, keys, **kwargs) -> None:
        for key in keys:
            task = scheduler.tasks.get(key)
            if task is not None and task.run_spec is not None:
                self.pickled[str(key)] = pickle.dumps(task.run_spec)


@pytest.fixture
def container(azurite) -> Iterator[str]:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    name = f"prepare-{uuid.uuid4().hex[:16]}"
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
        try:
            yield name
        finally:
            with suppress(ResourceNotFoundError):
                service.delete_container(name)


def test_local_cluster_from_azure_to_azure(azurite, container, tiny_replica, tmp_path, monkeypatch, caplog):
    from distributed import Client, LocalCluster

    options = azurite.storage_options()
    data = f"az://{container}/inat/2021"
    write_sample(data, scale="tiny", seed=0, storage_options=options)
    local = tmp_path / "local"
    prepare(str(local), tiny_replica.url, ["family_user"], cache_dir=str(tmp_path / "c1"), scheduler="synchronous",
            file_rows=40, progress=None)  # fmt: skip
    # The output's credentials come from the workers' (and the driver's) environment; the data's are passed
    # explicitly, and reach the workers by reference (scattered), never in the task graph.
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    out_url = f"az://{container}/prepared"
    scanner, shown = GraphScanner(), io.StringIO()
    caplog.set_level(logging.DEBUG)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        cluster.scheduler.add_plugin(scanner)
        with Client(cluster) as client, redirect_stderr(shown):
            report = prepare(out_url, data, ["family_user"], storage_options=options, cache_dir=str(tmp_path / "c2"),
                             scheduler=client, file_rows=40, progress=shown)  # fmt: skip
            assert len(client.nthreads()) == 2
    write_card(out_url, data, report, storage_options=options, cache_dir=str(tmp_path / "c2"))
    assert report["complete"] and report["totals"]["files_written"] == report["files_planned"] == 5
    assert report["totals"]["rows_in"] == report["totals"]["rows_written"] == 171
    assert "5/5 files" in shown.getvalue() and "images/s" in shown.getvalue()
    out = storage.resolve(out_url, options)
    names = [n for n in storage.list_files(out) if n.startswith("data/")]
    assert names == sorted(str(p.relative_to(local)) for p in local.glob("data/**/*.parquet"))
    for name in names:  # the same rows and image bytes as the local run (the records differ: the fingerprint
        # holds the metadata's version tokens, ETags on Azure, modification times on disk)
        remote = pq.read_table(io.BytesIO(storage.read_bytes(out, name)))
        here = pq.read_table(local / name)
        assert remote.schema.metadata[b"huggingface"] == here.schema.metadata[b"huggingface"]
        assert remote.replace_schema_metadata(None).equals(here.replace_schema_metadata(None))
    rows, groups = read_client(out_url, "family_user", 3, storage_options=options)
    assert rows.num_rows > 0 and groups == 1 and rows["image"][0]["bytes"].as_py().startswith(b"\xff\xd8")
    # No secret anywhere: the pickled tasks, the report, the card, the progress and every log record.
    assert len([k for k in scanner.pickled if k.startswith("prepare-")]) == 5
    secret = azurite.account_key.encode()
    for key, blob in scanner.pickled.items():
        assert secret not in blob and b"AccountKey" not in blob, key
        assert b".jpg" not in blob, key  # no row: the tasks read them from the copy on the output store
    copy = next(iter(report["rows_copies"]))
    assert report["rows_copies"] == {copy: "written"} and copy.startswith(".inat-fl-prepare-family_user-")
    assert not [n for n in storage.list_files(out) if "inat-fl-prepare" in n]  # deleted once complete
    for name in (REPORT_FILE, "README.md"):
        assert secret not in storage.read_bytes(out, name)
    assert azurite.account_key not in shown.getvalue() + caplog.text
    # A rerun on a fresh cluster writes nothing and gives the same files.
    report = prepare(out_url, data, ["family_user"], storage_options=options, cache_dir=str(tmp_path / "c2"),
                     scheduler="local", workers=2, file_rows=40, progress=None)  # fmt: skip
    assert report["totals"]["files_reused"] == 5 and report["totals"]["files_written"] == 0
