"""``push --allow-images`` never sends image bytes to a repository that is not private.

The Hub is a local HTTP server (``HubStub``) that answers the endpoints ``huggingface_hub`` calls, as its
source (``hf_api.py``, ``_commit_api.py``, ``utils/_http.py``) defines them: repository info
(``GET /api/datasets/{id}``, 404 with ``X-Error-Code: RepoNotFound`` for a missing one), creation
(``POST /api/repos/create``), the card's YAML check (``POST /api/validate-yaml``), preupload
(``POST /api/datasets/{id}/preupload/{rev}``) and commit (``POST /api/datasets/{id}/commit/{rev}``, NDJSON
with base64 file contents). It records every request, so a test sees which calls reached the Hub and what
was uploaded. ``huggingface_hub`` itself runs for real (its default, streamed upload path).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from inat_hf import storage
from inat_hf.config import config_for
from inat_hf.export import client_pseudonyms
from inat_hf.hub.folder import export_dataset
from inat_hf.hub.push import PublicRepositoryError, plan_push, push
from inat_hf.manifest import load_or_build_manifest
from inat_hf.prepare import Settings, plan_files
from inat_hf.prepare.rows import write_copy

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO = "someone/inat-private"
TOKEN = "hf_stubTokenForTestsOnly0123456789"  # a made-up token: it must never show in an error


class HubStub:
    """The Hub's repository API on 127.0.0.1: ``repos`` maps repo ids to ``private``; ``requests`` lists
    ``(method, path)`` of every request; ``uploaded`` maps committed paths to their bytes.
    ``create_public`` makes created repositories public whatever was asked (an organisation's rule).
    """

    def __init__(self, repos: dict[str, bool], *, create_public: bool = False) -> None:
        self.repos = dict(repos)
        self.create_public = create_public
        self.requests: list[tuple[str, str]] = []
        self.uploaded: dict[str, bytes] = {}
        self.authorization: set[str] = set()
        self.validated: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def paths(self, method: str | None = None) -> list[str]:
        return [path for m, path in self.requests if method in (None, m)]

    def repo_requests(self) -> list[tuple[str, str]]:
        """The requests about a repository (``huggingface_hub`` may also ask for its own registries)."""
        return [(m, path) for m, path in self.requests if REPO in path or path.startswith("/api/repos/")]

    def upload_calls(self) -> list[str]:
        return [path for path in self.paths() if re.search(r"/(preupload|commit)/", path)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest's output clean
                pass

            def _reply(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                stub.requests.append(("GET", path))
                stub.authorization.add(self.headers.get("Authorization", ""))
                found = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)", path)
                if found and found.group(1) in stub.repos:
                    repo_id = found.group(1)
                    self._reply(200, {"id": repo_id, "private": stub.repos[repo_id], "sha": "0" * 40})
                elif found:
                    self._reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                else:
                    self._reply(501, {"error": f"the stub does not answer GET {path}"})

            def do_POST(self) -> None:
                path = self.path.split("?")[0]
                stub.requests.append(("POST", path))
                stub.authorization.add(self.headers.get("Authorization", ""))
                body = self._body()
                if path == "/api/repos/create":
                    self._create(json.loads(body))
                elif path == "/api/validate-yaml":  # the README's metadata, checked before the commit
                    stub.validated.append(json.loads(body)["content"])
                    self._reply(200, {"errors": [], "warnings": []})
                elif re.fullmatch(r"/api/datasets/[^/]+/[^/]+/preupload/[^/]+", path):
                    files = json.loads(body)["files"]
                    answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                    self._reply(200, {"files": answer})
                elif found := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/commit/[^/]+", path):
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            stub.uploaded[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    url = f"{stub.url}/datasets/{found.group(1)}/commit/{'1' * 40}"
                    self._reply(200, {"commitUrl": url, "commitOid": "1" * 40})
                else:
                    self._reply(501, {"error": f"the stub does not answer POST {path}"})

            def _create(self, payload: dict) -> None:
                repo_id = f"{payload['organization']}/{payload['name']}"
                if payload.get("type") != "dataset":
                    self._reply(400, {"error": f"expected a dataset repository, got {payload.get('type')!r}"})
                elif repo_id in stub.repos:
                    self._reply(409, {"error": "You already created this dataset repo"})
                else:
                    stub.repos[repo_id] = payload.get("visibility") == "private" and not stub.create_public
                    self._reply(200, {"url": f"{stub.url}/datasets/{repo_id}", "name": repo_id})

        return Handler

    def __enter__(self) -> HubStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def with_images(tiny_replica, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export-images")
    export_dataset(
        str(out), tiny_replica.url, ["family_user"], cache_dir=str(tmp_path_factory.mktemp("c")), with_images=True
    )
    with pytest.raises(ValueError, match="holds image bytes"):  # the Parquet files do carry images
        plan_push(out)
    return out


@pytest.fixture
def hub() -> Iterator[Callable[..., HubStub]]:
    started: list[HubStub] = []

    def start(repos: dict[str, bool], **options: bool) -> HubStub:
        started.append(HubStub(repos, **options).__enter__())
        return started[-1]

    yield start
    for stub in started:
        stub.__exit__()


def test_a_public_repository_is_refused_before_any_upload(hub, with_images):
    stub = hub({REPO: False})
    with pytest.raises(PublicRepositoryError) as refused:
        push(with_images, REPO, allow_images=True, token=TOKEN, endpoint=stub.url)
    message = str(refused.value)
    assert f"{stub.url}/datasets/{REPO} is public" in message
    assert "Make the repository private first" in message and "without images" in message
    assert f"update_repo_settings({REPO!r}, repo_type='dataset', private=True)" in message
    assert TOKEN not in message
    assert stub.repo_requests() == [("GET", f"/api/datasets/{REPO}")]  # only the visibility was asked
    assert stub.authorization == {f"Bearer {TOKEN}"} and not stub.uploaded


def test_a_private_repository_gets_the_upload(hub, with_images):
    stub = hub({REPO: True})
    url = push(with_images, REPO, allow_images=True, token=TOKEN, endpoint=stub.url)
    assert url == f"{stub.url}/datasets/{REPO}/commit/{'1' * 40}"
    assert stub.repo_requests()[0] == ("GET", f"/api/datasets/{REPO}")  # visibility first
    assert "/api/repos/create" not in stub.paths()
    assert len(stub.validated) == 1 and "configs:" in stub.validated[0]  # the card went through the YAML check
    assert stub.upload_calls() and all(REPO in path for path in stub.upload_calls())
    plan = plan_push(with_images, allow_images=True)
    assert sorted(stub.uploaded) == list(plan.files)
    for name in plan.files:
        assert stub.uploaded[name] == (with_images / name).read_bytes()


def test_a_new_repository_is_created_private_and_read_back(hub, with_images):
    stub = hub({})
    push(with_images, REPO, allow_images=True, token=TOKEN, endpoint=stub.url)
    assert stub.repos == {REPO: True}
    info, create, again = stub.repo_requests()[:3]
    assert info == again == ("GET", f"/api/datasets/{REPO}") and create == ("POST", "/api/repos/create")
    assert sorted(stub.uploaded) == list(plan_push(with_images, allow_images=True).files)


def test_a_new_repository_made_public_by_the_hub_gets_no_images(hub, with_images):
    stub = hub({}, create_public=True)
    with pytest.raises(PublicRepositoryError, match=rf"/datasets/{REPO} is public; --allow-images"):
        push(with_images, REPO, allow_images=True, token=TOKEN, endpoint=stub.url)
    assert stub.repos == {REPO: False}
    assert not stub.upload_calls() and not stub.uploaded


def test_images_with_public_are_refused_before_the_hub_is_asked(hub, with_images):
    stub = hub({})
    with pytest.raises(ValueError, match=rf"{REPO}: image bytes may only go to a private repository.*drop --public"):
        push(with_images, REPO, private=False, allow_images=True, token=TOKEN, endpoint=stub.url)
    assert stub.requests == []


def test_a_manifest_only_export_may_go_to_a_public_repository(hub, tiny_replica, tmp_path):
    out = tmp_path / "manifest"
    export_dataset(str(out), tiny_replica.url, ["family_user"], cache_dir=str(tmp_path / "c"))
    stub = hub({REPO: False})
    push(out, REPO, token=TOKEN, endpoint=stub.url)
    assert sorted(stub.uploaded) == list(plan_push(out).files) and stub.repos == {REPO: False}


def test_a_rows_copy_left_by_a_failed_prepare_is_never_uploaded(hub, tiny_replica, tmp_path):
    out, cache = tmp_path / "manifest", tmp_path / "c"
    export_dataset(str(out), tiny_replica.url, ["family_user"], cache_dir=str(cache))
    assert not list(out.glob(".inat-fl-prepare-*"))  # a complete export deletes its rows copy
    config = config_for("family_user", with_images=False)
    manifest = load_or_build_manifest(tiny_replica.url, config, cache_dir=str(cache))
    plan = list(plan_files(manifest, config, Settings(str(out), None), file_rows=40))
    write_copy(storage.resolve(str(out)), plan, (manifest.table.slice(t.start, t.rows_in) for t in plan),
               manifest.label_names, client_pseudonyms(manifest.table, config))  # fmt: skip
    (out / f".{plan[0].rows_file}.0123abcd.part").write_bytes(b"a killed write's")  # as a killed run leaves them
    assert len(list(out.glob(".*inat-fl-prepare-*"))) == 2
    planned = plan_push(out).files
    assert planned and not [f for f in planned if "inat-fl-prepare" in f]
    stub = hub({REPO: False})
    push(out, REPO, token=TOKEN, endpoint=stub.url)
    assert sorted(stub.uploaded) == list(planned)
    assert not [name for name in stub.uploaded if "inat-fl-prepare" in name]
    users = set(manifest.table["user"].to_pylist())  # the copy holds them; nothing uploaded does
    assert not [name for name, data in stub.uploaded.items() if any(u.encode() in data for u in users if len(u) > 5)]


def test_cli_refuses_a_public_repository_in_one_line(hub, with_images, tmp_path):
    stub = hub({REPO: False})
    env = {
        **os.environ,
        "HF_ENDPOINT": stub.url,
        "HF_TOKEN": TOKEN,
        "HF_HOME": str(tmp_path / "hf-home"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "inat_hf.cli", "push", REPO, "--folder", str(with_images), "--allow-images"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"inat-fl push: error: {stub.url}/datasets/{REPO} is public")
    assert "Make the repository private first" in error[0]
    assert TOKEN not in done.stdout + done.stderr
    assert stub.repo_requests() == [("GET", f"/api/datasets/{REPO}")] and not stub.uploaded
