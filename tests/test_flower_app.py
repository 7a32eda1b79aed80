"""The Flower App of ``flower_app/``: its ``pyproject.toml`` as flwr reads it, the run and node configs, a
node's client rows, and ``flwr run`` for real, offline:

- a **local simulation**: a SuperLink in simulation mode (Ray) on a free loopback port, 2 simulated nodes;
- the **Deployment Engine** on localhost: a SuperLink and two SuperNodes, each a separate process (insecure,
  loopback ports), each SuperNode reading its own copy of the data (``--node-config``), one round.

Both runs use the tiny replica exported with images and a tiny random ViT, one round over both nodes, and
must write the same ``metrics.json`` (keys, client ids, examples = the two clients' rows, and the numbers:
the same seeds give the same training). Every process is started here, stopped here by its own id, and every
wait is bounded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import datasets
import pytest
import tomli
import tomli_w
from flwr.cli.build import build_fab_from_disk
from flwr.cli.config_utils import load_and_validate
from flwr.cli.flower_config import parse_superlink_connection
from flwr.common.config import flatten_dict, get_fab_config
from test_finetune import REPO_ROOT, ROUND_KEYS

from inat_hf.export import read_client
from inat_hf.federated.partitioner import INatPartitioner
from inat_hf.hub.folder import export_dataset
from inat_hf.train.data import TrainingData
from inat_hf.train.flower.nodedata import client_ids, client_rows, partition_client
from inat_hf.train.flower.runconfig import AppConfig, node_partition, node_source

APP = REPO_ROOT / "flower_app"
BIN = Path(sys.executable).parent
ROUND = {"rounds": 1, "batch-size": 4, "max-local-steps": 2, "val-limit": 20, "seed": 1, "node-wait-seconds": 120.0}


def app_run_config(**overrides: Any) -> dict[str, Any]:
    """The run config of ``flower_app/pyproject.toml`` (as flwr flattens it) with ``overrides`` (existing keys)."""
    config, _ = load_and_validate(APP / "pyproject.toml", check_module=False)
    run = flatten_dict(config["tool"]["flwr"]["app"]["config"])
    unknown = set(overrides) - set(run)
    assert not unknown, f"not keys of the app's run config: {unknown}"
    return {**run, **overrides}


# --- the app as flwr reads it -----------------------------------------------------------------------------


def test_flwr_validates_the_app_and_builds_its_bundle():
    config, warnings = load_and_validate(APP / "pyproject.toml", check_module=True)  # the components import
    assert warnings == []
    flwr = config["tool"]["flwr"]
    assert flwr["app"]["components"] == {
        "serverapp": "inat_hf.train.flower.server:app",
        "clientapp": "inat_hf.train.flower.apps:app",
    }
    assert "federations" not in flwr  # flwr 1.42 would move it out of the file (into $FLWR_HOME/config.toml)
    assert any(dep.startswith("inaturalist-fl[") for dep in config["project"]["dependencies"])
    fab = get_fab_config(build_fab_from_disk(APP))
    assert flatten_dict(fab["tool"]["flwr"]["app"]["config"]) == app_run_config()
    links = tomli.loads((APP / "superlinks.toml").read_text())["superlink"]
    assert list(links) == ["deployment"]  # appended to the Flower config, beside its default `local`
    deployment = parse_superlink_connection(links["deployment"], "deployment")
    assert deployment.insecure and deployment.address == "127.0.0.1:8000"


def test_the_run_config_gives_every_setting():
    config = AppConfig.from_run_config(app_run_config())
    assert config.source == TrainingData.of(config="family_user", data_dir="inat-fl-demo/replica")
    assert (config.model.size, config.model.checkpoint, config.strategy) == ("tiny", None, "fedavg")
    assert (config.num_nodes, config.settings.clients_per_round, config.settings.rounds) == (2, 2, 3)
    assert config.out == "out/flower-app" and config.val_limit is None
    momentum = app_run_config(**{"strategy": "fedavgm", "server-momentum": 0.9, "num-nodes": 10})
    fraction = AppConfig.from_run_config({**momentum, "clients-per-round": 0.3, "val-limit": 50})
    assert fraction.settings.clients_per_round == 3 and fraction.settings.server_momentum == 0.9
    assert fraction.meta("cpu")["mode"] == "flower FedAvgM" and fraction.val_limit == 50
    base = AppConfig.from_run_config(app_run_config(model="google/vit-base-patch16-224-in21k"))
    assert base.model.checkpoint == "google/vit-base-patch16-224-in21k"
    for key in app_run_config():  # every key is read
        with pytest.raises(ValueError, match=rf"the Flower run config has no '{key}': add it to \[tool\.flwr"):
            AppConfig.from_run_config({k: v for k, v in app_run_config().items() if k != key})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rounds": "3"}, r"rounds = '3' in the Flower run config: expected int \(set it in \[tool\.flwr"),
        ({"new-head": 1}, r"new-head = 1 .*expected bool"),
        ({"lr": True}, r"lr = True .*expected float"),
        ({"export": "out/export"}, r"names both data-dir and export: give one"),
        ({"data-dir": ""}, r"names neither data-dir and export"),
        ({"storage-options": "account_name=x account_key=abc"}, r"account_key=\.\.\. is a secret.*environment"),
        ({"storage-options": "anon"}, r"expected KEY=VALUE pairs, not 'anon'"),
        ({"strategy": "fedavg", "server-momentum": 0.9}, r"strategy = 'fedavg' with server-momentum = 0\.9.*fedavgm"),
        ({"strategy": "scaffold"}, r"strategy = 'scaffold': choose from fedavg, fedavgm, fedprox"),
        ({"clients-per-round": 3}, r"clients-per-round = 3: more than num-nodes = 2"),
        ({"clients-per-round": 1.5}, r"clients-per-round = 1\.5: a count is a whole number"),
        ({"num-nodes": 0}, r"num-nodes = 0: the server needs at least one SuperNode"),
        ({"set": "min_size=3"}, r"--set 'min_size=3'.*min_client_size"),
    ],
)
def test_a_bad_run_config_names_the_key_and_the_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        AppConfig.from_run_config(app_run_config(**overrides))


def test_a_node_names_its_partition_and_its_own_copy():
    run = app_run_config(**{"storage-options": "account_name=inat"})
    assert node_source(run, {"partition-id": 0}) == AppConfig.from_run_config(run).source
    own = node_source(run, {"partition-id": 1, "export": "/data/inat-export", "images": "az://inat/2021"})
    assert (own.data_dir, own.export, own.images, own.cache_dir) == (None, "/data/inat-export", "az://inat/2021", None)
    assert own.options == {"account_name": "inat"} and own.config == "family_user"  # the run's, still
    assert node_partition({"partition-id": 3, "num-partitions": 10}) == (3, 10)
    assert node_partition({"partition-id": 3}) == (3, None)
    with pytest.raises(ValueError, match=r"no 'partition-id': add it to flower-supernode --node-config"):
        node_partition({"num-partitions": 2})
    with pytest.raises(ValueError, match=r"partition-id = '0' .*expected int"):
        node_partition({"partition-id": "0"})


# --- a node reads its client only -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tiny_replica, tmp_path_factory) -> dict[str, Path]:
    """The tiny replica exported with images (a node's copy) and manifest-only, and its validation images."""
    root = tmp_path_factory.mktemp("flower-app-data")
    cache = str(root / "manifests")
    export_dataset(str(root / "with-images"), tiny_replica.url, ["family_user"], cache_dir=cache, with_images=True)
    export_dataset(str(root / "manifest-only"), tiny_replica.url, ["family_user"], cache_dir=cache)
    shutil.copytree(Path(tiny_replica.url) / "val", root / "val-images" / "val")  # no train image in it
    return {"with-images": root / "with-images", "manifest-only": root / "manifest-only", "val": root / "val-images"}


def test_a_node_reads_its_partitions_client_only(exports, tiny_replica, tmp_path):
    source = TrainingData(export=str(exports["with-images"]))
    split = datasets.load_dataset(str(exports["with-images"]), "family_user", split="train", cache_dir=str(tmp_path))
    partitioner = INatPartitioner()
    partitioner.dataset = split
    assert client_ids(source).tolist() == partitioner.client_ids.tolist()
    for pid in (0, 3, partitioner.num_partitions - 1):
        cid = partition_client(source, pid)
        assert cid == partitioner.partition_id_to_client_id(pid)
        rows = client_rows(source, cid)
        expected = partitioner.load_partition(pid)
        assert rows["image_id"] == expected["image_id"] and rows["label"] == expected["label"]
        assert rows.features["label"] == split.features["label"]
        assert rows.cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"][:2] == b"\xff\xd8"
    table, _ = read_client(str(exports["with-images"]), "family_user", int(client_ids(source)[0]))
    assert table.num_rows == client_rows(source, int(client_ids(source)[0])).num_rows > 0
    apart = TrainingData(export=str(exports["manifest-only"]), images=tiny_replica.url)
    assert client_rows(apart, 2)["image_id"] == client_rows(source, 2)["image_id"]
    first = client_rows(apart, 2).cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]
    assert first == client_rows(source, 2).cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]
    with pytest.raises(ValueError, match=r"has no images \(a manifest-only export\): give the node your copy"):
        client_rows(TrainingData(export=str(exports["manifest-only"])), 2)
    with pytest.raises(ValueError, match=r"no 'train' files for config 'genus_user'.*inat-fl export"):
        client_ids(TrainingData(export=str(exports["with-images"]), config="genus_user"))
    streamed = TrainingData.of(data_dir=tiny_replica.url, cache_dir=str(tmp_path / "stream"))
    assert client_ids(streamed).tolist() == client_ids(source).tolist()  # the same clients, from the manifest
    assert client_rows(streamed, 2)["image_id"] == client_rows(source, 2)["image_id"]


# --- flwr run, for real -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Flower:
    """Flower processes started by a test (each in its own process group), a Flower home and its connections."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        self.env = {
            **os.environ,
            "FLWR_HOME": str(home),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",  # offline: the package is installed already
        }
        home.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = self.home / f"{name}.log"
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                [str(BIN / args[0]), *args[1:]], stdout=handle, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append((proc, log))
        return proc

    def superlink(self, name: str, *extra: str) -> str:
        """Start a SuperLink (its one HTTP port: Fleet, Control and Runtime APIs) and a connection to it."""
        port = free_port()
        flags = ["--insecure", "--disable-runtime-dependency-installation", "--host", "127.0.0.1"]
        proc = self.start(name, "flower-superlink", *flags, "--port", str(port), *extra)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, f"SuperLink not up:\n{self.logs()}"
            time.sleep(0.5)
        connections = {"superlink": {"default": name, name: {"address": f"127.0.0.1:{port}", "insecure": True}}}
        (self.home / "config.toml").write_text(tomli_w.dumps(connections))
        return f"127.0.0.1:{port}"

    def run(self, connection: str, run_config: dict[str, Any], *extra: str) -> int:
        """``flwr run flower_app CONNECTION --stream``, waited for (bounded); the run's id after it finished."""
        overrides = self.home / "run-config.toml"
        overrides.write_text(tomli_w.dumps(run_config))
        args = [str(BIN / "flwr"), "run", str(APP), connection, "--run-config", str(overrides), "--stream", *extra]
        done = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=300, cwd=self.home)
        found = re.search(r"Successfully started run (\d+)", done.stdout)
        assert done.returncode == 0 and found, f"flwr run failed:\n{done.stdout}\n{done.stderr}\n{self.logs()}"
        return int(found.group(1))

    def status(self, connection: str, run_id: int) -> str:
        args = [str(BIN / "flwr"), "ls", connection, "--run-id", str(run_id), "--format", "json"]
        done = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=60, cwd=self.home)
        return str(json.loads(done.stdout)["runs"][0]["status"])

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for _, log in self.procs)

    def stop(self) -> None:
        """Stop every process this object started (and its children, in its process group), by id."""
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            else:
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # a child the process left behind in its group


@pytest.fixture
def flower(tmp_path) -> Any:
    procs = Flower(tmp_path / "flwr-home")
    yield procs
    procs.stop()


def _metrics(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def simulated(exports, tmp_path_factory) -> dict[str, Any]:
    """``flwr run flower_app`` as a local simulation: one round, 2 nodes (2 Ray workers of 1 CPU)."""
    home = tmp_path_factory.mktemp("flower-sim")
    flower = Flower(home / "flwr-home")
    try:
        flower.superlink("local-sim", "--simulation")
        out = home / "out"
        data = {"data-dir": "", "export": str(exports["with-images"]), "cache-dir": str(home / "hf")}
        federation = "num-supernodes=2 client-resources-num-cpus=1 init-args-num-cpus=2"
        run_id = flower.run(
            "local-sim", app_run_config(**data, **ROUND, out=str(out)), "--federation-config", federation
        )
        return {"status": flower.status("local-sim", run_id), "metrics": _metrics(out), "logs": flower.logs()}
    finally:
        flower.stop()


@pytest.mark.slow
def test_flwr_run_as_a_local_simulation(simulated, exports):
    assert simulated["status"] == "finished:completed"
    report = simulated["metrics"]
    assert report["mode"] == "flower FedAvg" and report["num_supernodes"] == 2
    rows = report["rows"]
    assert [row["round"] for row in rows] == [0, 1] and [list(row) for row in rows] == [ROUND_KEYS] * 2
    source = TrainingData(export=str(exports["with-images"]))
    first_two = client_ids(source)[:2].tolist()
    assert rows[1]["client_ids"] == first_two and rows[1]["clients"] == 2
    assert rows[1]["examples"] == sum(client_rows(source, c).num_rows for c in first_two)
    assert rows[1]["train_loss"] is not None and rows[1]["val_loss"] > 0


@pytest.mark.slow
def test_the_deployment_engine_on_localhost(flower, simulated, exports, tmp_path):
    """A SuperLink and two SuperNodes, each reading its own copy; the server's copy holds no train image."""
    address = flower.superlink("deployment")
    for pid in (0, 1):
        own = tmp_path / f"node{pid}"
        shutil.copytree(exports["with-images"], own)
        node = f"partition-id={pid} num-partitions=2 export='{own}'"
        flags = ["--insecure", "--superlink", address, "--port", str(free_port()), "--node-config", node]
        flower.start(f"supernode{pid}", "flower-supernode", *flags, "--max-wait-time", "120")
    out = tmp_path / "out"
    server = {"data-dir": "", "export": str(exports["manifest-only"]), "images": str(exports["val"])}
    run_config = app_run_config(**server, **ROUND, out=str(out), **{"cache-dir": str(tmp_path / "hf")})
    run_id = flower.run("deployment", run_config)
    assert flower.status("deployment", run_id) == "finished:completed", flower.logs()
    deployed, simulation = _metrics(out), simulated["metrics"]
    assert list(deployed) == list(simulation) and deployed["num_supernodes"] == 2
    rows, expected = deployed["rows"], simulation["rows"]
    assert [list(row) for row in rows] == [list(row) for row in expected]
    for ours, theirs in zip(rows, expected, strict=True):  # each node trained the client it was given
        assert (ours["round"], ours["clients"], ours["client_ids"]) == (
            theirs["round"],
            theirs["clients"],
            theirs["client_ids"],
        )
        assert (ours["examples"], ours["steps"]) == (theirs["examples"], theirs["steps"])
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-4)
        assert (ours["train_loss"] is None) == (theirs["train_loss"] is None)
        if theirs["train_loss"] is not None:
            assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)


# --- scripts/flower_sim.py runs the same apps -------------------------------------------------------------


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flower_sim_app", REPO_ROOT / "scripts" / "flower_sim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flower_sim_gives_the_apps_run_config(script):
    args = script.build_parser().parse_args(
        ["--data-dir", "out/small", "--tiny", "--num-supernodes", "4", "--clients-per-round", "3",
         "--server-momentum", "0.9", "--set", "max_image_side=64", "--option", "account_name=inat"]
    )  # fmt: skip
    run = script.run_config(args)
    assert set(run) == set(app_run_config())  # every key of the app, no other
    config = AppConfig.from_run_config(run)
    assert (config.strategy, config.num_nodes, config.settings.clients_per_round) == ("fedavgm", 4, 3)
    assert dict(config.source.overrides) == {"max_image_side": 64}
    assert config.source.source.storage_options == {"account_name": "inat"}  # the data's own Source
