"""``inat-fl extract``: a replica archive extracted to local disk and to Azurite (same bytes as the source
folder), the record of what was written and a rerun that compares with it, escaping members, two members of
one name, a killed run's ``.part`` file, what is listed, a truncated archive and a wrong md5."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import posixpath
import random
import re
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from inat_hf import storage
from inat_hf.cli import main
from inat_hf.realcopy import extract as extract_module
from inat_hf.realcopy import extract_record
from inat_hf.realcopy.extract import MARKER_DIR, ExtractError, extract_archive, official_archives
from inat_hf.storage import list_sizes, read_bytes, resolve, write_bytes

FOLDERS = ("train", "val", "train_mini")


def _source_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for folder in FOLDERS
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def _fixed_time(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    return info


@pytest.fixture(scope="module")
def archive(tiny_replica, tmp_path_factory) -> tuple[Path, str, dict[str, bytes]]:
    """The tiny replica's image folders as a .tar.gz: (path, md5, the files it holds)."""
    root = Path(tiny_replica.url)
    path = tmp_path_factory.mktemp("archive") / "replica.tar.gz"
    with (  # the same bytes in every session: the cuts below land at the same places
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w") as tar,
    ):
        for folder in FOLDERS:
            tar.add(root / folder, arcname=folder, filter=_fixed_time)
    return path, hashlib.md5(path.read_bytes()).hexdigest(), _source_files(root)


def _written(root: Path, *, markers: bool = False) -> dict[str, bytes]:
    """The files under ``root`` (those of the marker folder only if ``markers``)."""
    found = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return {name: data for name, data in found.items() if markers or not name.startswith(f"{MARKER_DIR}/")}


def test_extract_to_local_disk_gives_the_source_bytes_and_a_rerun_skips(archive, tmp_path):
    path, md5, files = archive
    out = tmp_path / "out"
    seen = []
    report = extract_archive(str(path), str(out), md5=md5, progress=seen.append)
    assert report.verified and report.md5 == md5 and report.bytes_read == path.stat().st_size
    assert report.written == len(files) == 211 and report.refused == report.skipped == report.redone == 0
    assert report.members == report.written + report.folders and report.bytes_written == sum(map(len, files.values()))
    marker, record = f"{MARKER_DIR}/replica.tar.gz.json", f"{MARKER_DIR}/replica.tar.gz.files/000000.json"
    assert _written(out, markers=True) == {**files, marker: (out / marker).read_bytes(),
                                           record: (out / record).read_bytes()}  # fmt: skip
    assert sorted(map(tuple, json.loads((out / record).read_bytes())["files"])) == _expected_record(files)
    assert json.loads((out / marker).read_bytes())["files_recorded"] == 211
    assert seen and seen[-1] is report
    again = extract_archive(str(path), str(out), md5=md5)
    assert again.written == 0 and again.skipped == 211 and again.verified
    assert not (out / f"{MARKER_DIR}/replica.tar.gz.files/000001.json").exists()  # nothing new to record

    # what differs from the record is written again: another size, the same size with other bytes, a file gone
    names = sorted(f for f in files if f.startswith("val/"))[:3]
    (out / names[0]).write_bytes(b"x")
    (out / names[1]).write_bytes(bytes(len(files[names[1]])))
    (out / names[2]).unlink()
    third = extract_archive(str(path), str(out), md5=md5)
    assert third.written == third.redone == 3 and third.skipped == 208
    assert json.loads((out / marker).read_bytes())["files_recorded"] == 211  # each file once
    assert _written(out) == files
    newer = json.loads((out / f"{MARKER_DIR}/replica.tar.gz.files/000001.json").read_bytes())["files"]
    assert sorted(map(tuple, newer)) == _expected_record({name: files[name] for name in names})


def _expected_record(files: dict[str, bytes]) -> list[tuple[str, int, str]]:
    """The record of ``files`` worked out here: path, size, md5."""
    return sorted((name, len(data), hashlib.md5(data).hexdigest()) for name, data in files.items())


@pytest.mark.azurite
def test_extract_from_and_to_azurite(archive, az_container, tmp_path):
    path, md5, files = archive
    url, options = az_container
    container = resolve(url, options)
    with open(path, "rb") as handle:  # the archive itself in blob storage
        write_bytes(container, "archives/replica.tar.gz", handle.read())
    report = extract_archive(f"{url}/archives/replica.tar.gz", f"{url}/inat/2021", md5=md5, storage_options=options)
    assert report.verified and report.written == 211
    out = resolve(f"{url}/inat/2021", options)
    sizes = list_sizes(out)
    assert {k for k in sizes if not k.startswith(".")} == set(files)
    assert all(read_bytes(out, name) == data for name, data in files.items())
    again = extract_archive(f"{url}/archives/replica.tar.gz", f"{url}/inat/2021", md5=md5, storage_options=options)
    assert again.skipped == 211 and again.written == 0
    local = extract_archive(f"{url}/archives/replica.tar.gz", str(tmp_path / "local"), md5=md5,
                            storage_options=options, out_storage_options={})  # fmt: skip
    assert local.verified and _written(tmp_path / "local") == files


def _tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, kind, link
    return info


def test_escaping_members_are_refused_and_counted(tmp_path):
    members = [
        (_info("../evil.txt", 4), b"evil"),
        (_info("/tmp/absolute.txt", 4), b"evil"),
        (_info("train/../../up.txt", 4), b"evil"),
        (_info("train/link", kind=tarfile.SYMTYPE, link="/etc/passwd"), None),
        (_info("train/hard", kind=tarfile.LNKTYPE, link="../escape.txt"), None),
        (_info("train/fifo", kind=tarfile.FIFOTYPE), None),
        (_info("train/good.txt", 4), b"good"),
    ]
    (tmp_path / "a.tar.gz").write_bytes(_tar_gz(members))
    out = tmp_path / "x" / "out"
    report = extract_archive(str(tmp_path / "a.tar.gz"), str(out))
    assert report.refused == 6 and report.written == 1 and report.members == 7 and not report.verified
    assert report.refused_members == ["../evil.txt", "/tmp/absolute.txt", "train/../../up.txt", "train/link",
                                      "train/hard", "train/fifo"]  # fmt: skip
    assert _written(out) == {"train/good.txt": b"good"} and [p.name for p in (tmp_path / "x").iterdir()] == ["out"]
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "up.txt").exists()


@pytest.mark.parametrize("inline", [False, True], ids=["members-in-threads", "members-streamed-inline"])
def test_truncated_archive_names_the_last_member_and_leaves_nothing_half_written(archive, tmp_path, monkeypatch,
                                                                               inline):  # fmt: skip
    path, _, files = archive
    if inline:  # every member streamed to its file in the reading thread, as a member over SMALL_MEMBER is
        monkeypatch.setattr(extract_module, "SMALL_MEMBER", 0)
    data, kinds = path.read_bytes(), set()
    for k, fraction in enumerate((0.2, 0.45, 0.6, 0.8)):
        cut = tmp_path / f"cut{k}.tar.gz"
        cut.write_bytes(data[: int(len(data) * fraction)])
        out = tmp_path / f"out{k}"
        pattern = r"truncated .* while reading (member '[^']+'|the next member header); the last complete member is"
        with pytest.raises(ExtractError, match=pattern) as info:
            extract_archive(str(cut), str(out))
        message = str(info.value)
        written = _written(out)
        assert written and all(files[name] == data for name, data in written.items())  # every file complete
        assert not [p for p in out.rglob(".*.part")], "no hidden partial file is left"
        if "while reading member '" in message:  # cut inside a member's data: that member is not written
            being_read = message.split("while reading member '", 1)[1].split("'", 1)[0]
            assert being_read not in written
            kinds.add("data")
        else:
            kinds.add("header")
        last = message.split("the last complete member is '", 1)[1].split("'", 1)[0]
        is_folder = any(name.startswith(f"{last}/") for name in files)  # folders are not written: files make them
        assert (last in written or is_folder) and f"{len(written):,} complete members were" in message
    assert kinds == {"data", "header"}  # cuts inside a member's data and between members


def test_wrong_md5_is_an_error_that_says_what_was_written(archive, tmp_path, capsys):
    path, md5, _ = archive
    out = tmp_path / "out"
    with pytest.raises(ExtractError, match=r"md5 [0-9a-f]{32} differs from the expected 0{32}.*211 members were "
                                           r"written to .*no completion marker"):  # fmt: skip
        extract_archive(str(path), str(out), md5="0" * 32)
    assert not (out / MARKER_DIR / "replica.tar.gz.json").exists()
    with pytest.raises(ValueError, match="is not an md5"):
        extract_archive(str(path), str(out), md5="xyz")
    official = tmp_path / "val.tar.gz"  # an official name: the published md5 is expected by default
    official.write_bytes(path.read_bytes())
    with pytest.raises(ExtractError, match=rf"differs from the expected {official_archives()['val.tar.gz'].md5} "
                                           r"\(official size 8,931,661,582 bytes"):  # fmt: skip
        extract_archive(str(official), str(tmp_path / "val-out"))
    assert main(["extract", str(path), str(tmp_path / "cli"), "--md5", md5, "--quiet"]) == 0
    assert "211 written" in capsys.readouterr().out
    assert main(["extract", str(path), str(tmp_path / "cli2"), "--md5", "1" * 32, "--quiet"]) == 2
    assert "differs from the expected" in capsys.readouterr().err


def test_official_archive_table():
    archives = official_archives()
    assert archives["train.tar.gz"].bytes == 239_909_164_970
    assert archives["train.tar.gz"].md5 == "e0526d53c7f7b2e3167b2b43bb2690ed"
    assert len(archives) == 8 and all(len(a.md5) == 32 and len(a.sha256) == 64 for a in archives.values())


@pytest.mark.parametrize("second", ["train/a.txt", "train/./a.txt"])
def test_two_members_of_the_same_name_are_refused(tmp_path, second):
    members = [(_info("train/a.txt", 5), b"first"), (_info("train/b.txt", 1), b"b"), (_info(second, 6), b"second")]
    (tmp_path / "dup.tar.gz").write_bytes(_tar_gz(members))
    out = tmp_path / "out"
    pattern = (rf"{tmp_path}/dup\.tar\.gz: member '{re.escape(second)}' \(member 3\) has the name of an earlier member "
               r"\('train/a\.txt'\): an archive with two members of the same name is refused")  # fmt: skip
    with pytest.raises(ExtractError, match=pattern):
        extract_archive(str(tmp_path / "dup.tar.gz"), str(out), workers=1)
    assert _written(out) == {"train/a.txt": b"first", "train/b.txt": b"b"}  # the second copy is never written
    assert not (out / MARKER_DIR / "dup.tar.gz.json").exists()


class _StallingSource(http.server.BaseHTTPRequestHandler):
    """Serves the server's ``data`` over HTTP: the first half at once, the rest once ``release`` is set (a
    source that stops sending)."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.data)))  # type: ignore[attr-defined]
        self.end_headers()

    def do_GET(self) -> None:
        self.do_HEAD()
        data: bytes = self.server.data  # type: ignore[attr-defined]
        with suppress(OSError):
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.server.release.wait(60)  # type: ignore[attr-defined]
            self.wfile.write(data[len(data) // 2 :])

    def log_message(self, *args: object) -> None:
        return


@contextmanager
def _stalling_server(data: bytes) -> Iterator[tuple[str, threading.Event]]:
    """An HTTP server on 127.0.0.1 serving ``data`` at ``/replica.tar.gz`` (see :class:`_StallingSource`)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StallingSource)
    server.data, server.release = data, threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/replica.tar.gz", server.release  # type: ignore[attr-defined]
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_killed_extraction_leaves_a_part_file_that_the_next_run_deletes(tmp_path):
    big = random.Random(1).randbytes(3 * 2**20)  # incompressible: half the archive ends inside it
    files = {"train/small.txt": b"small", "train/big.bin": big, "val/after.txt": b"after"}
    data = _tar_gz([(_info(name, len(content)), content) for name, content in files.items()])
    out = tmp_path / "out"
    # a real process, killed (SIGKILL: no finally runs) while big.bin, streamed inline, is half written
    code = ("import sys, inat_hf.realcopy.extract as e; e.SMALL_MEMBER = 2**20; "
            "e.extract_archive(sys.argv[1], sys.argv[2], storage_options={'block_size': 0})")  # fmt: skip
    with _stalling_server(data) as (url, _):
        child = subprocess.Popen([sys.executable, "-c", code, url, str(out)], stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not [p for p in out.rglob(".big.bin.*.part") if p.stat().st_size >= 2**20]:
                assert time.monotonic() < deadline and child.poll() is None, child.stderr.read().decode()
                time.sleep(0.05)
        finally:
            child.kill()
            child.wait(30)
            child.stderr.close()
    assert [p.name[: len(".big.bin.")] for p in out.rglob("*.part")] == [".big.bin."]
    assert not (out / "train/big.bin").exists() and (out / "train/small.txt").read_bytes() == b"small"
    unrelated = out / "train" / ".other.bin.0123456789ab.part"  # not a member of this archive: left alone
    unrelated.write_bytes(b"someone else's")

    full = tmp_path / "full" / "replica.tar.gz"
    full.parent.mkdir()
    full.write_bytes(data)
    report = extract_archive(str(full), str(out))
    assert report.written == 3 and report.skipped == 0  # nothing was recorded before the kill
    assert [p.name for p in out.rglob("*.part")] == [unrelated.name]
    assert _written(out) == {**files, unrelated.relative_to(out).as_posix(): b"someone else's"}


@pytest.mark.azurite
@pytest.mark.parametrize("inline", [False, True], ids=["members-in-threads", "members-streamed-inline"])
def test_extract_lists_only_the_folders_it_needs(archive, az_container, monkeypatch, inline):
    path, md5, files = archive
    url, options = az_container
    if inline:  # written from blocks: Azure keeps no md5 of them, so a rerun reads them back to compare
        monkeypatch.setattr(extract_module, "SMALL_MEMBER", 0)
    out = resolve(f"{url}/inat/2021", options)
    write_bytes(out, "other/unrelated.jpg", b"not from the archive")  # in the output, never listed
    calls: dict[str, list[str]] = {"list_folder": [], "list_sizes": [], "list_files": [], "md5_of": []}
    for name in calls:
        real = getattr(storage, name)
        monkeypatch.setattr(storage, name, lambda loc, relative="", _real=real, _name=name: (
            calls[_name].append(relative), _real(loc, relative))[1])  # fmt: skip

    first = extract_archive(str(path), f"{url}/inat/2021", md5=md5, out_storage_options=options)
    assert first.written == 211 and first.verified
    assert calls == {"list_folder": [f"{MARKER_DIR}/replica.tar.gz.files"], "list_sizes": [], "list_files": [],
                     "md5_of": []}  # fmt: skip

    calls["list_folder"].clear()
    again = extract_archive(str(path), f"{url}/inat/2021", md5=md5, out_storage_options=options)
    assert again.skipped == 211 and again.written == 0
    folders = {posixpath.dirname(name) for name in files}
    assert sorted(calls["list_folder"]) == sorted([f"{MARKER_DIR}/replica.tar.gz.files", *folders])
    assert calls["list_sizes"] == calls["list_files"] == []
    assert len(calls["md5_of"]) == (211 if inline else 0)  # else the md5 Azure keeps, from the listing

    changed = sorted(files)[5]  # the same size, other bytes: only the md5 tells
    write_bytes(out, changed, bytes(len(files[changed])))
    third = extract_archive(str(path), f"{url}/inat/2021", md5=md5, out_storage_options=options)
    assert third.written == third.redone == 1 and third.skipped == 210
    assert read_bytes(out, changed) == files[changed]
    assert read_bytes(out, "other/unrelated.jpg") == b"not from the archive"


def test_a_member_changed_in_the_archive_is_written_again_and_recorded_anew(tmp_path, monkeypatch):
    monkeypatch.setattr(extract_record, "RECORD_EVERY", 2)  # a record chunk every 2 files
    monkeypatch.setattr(extract_record, "MERGE_EVERY", 2)  # names seen: mostly in the sorted array
    files = {f"train/{k // 3}/{k}.txt": f"content {k}".encode() for k in range(7)}
    archive, out = tmp_path / "a" / "set.tar.gz", tmp_path / "out"
    archive.parent.mkdir()
    archive.write_bytes(_tar_gz([(_info(name, len(data)), data) for name, data in files.items()]))
    assert extract_archive(str(archive), str(out)).written == 7
    chunks = sorted(p.name for p in (out / MARKER_DIR / "set.tar.gz.files").iterdir())
    assert chunks == ["000000.json", "000001.json", "000002.json", "000003.json"]  # 2 + 2 + 2 + 1 files

    changed = {**files, "train/1/4.txt": b"content 9"}  # the same size, other bytes, in a new archive
    archive.write_bytes(_tar_gz([(_info(name, len(data)), data) for name, data in changed.items()]))
    second = extract_archive(str(archive), str(out))
    assert second.written == second.redone == 1 and second.skipped == 6 and _written(out) == changed
    newest = json.loads((out / MARKER_DIR / "set.tar.gz.files" / "000004.json").read_bytes())["files"]
    assert newest == [["train/1/4.txt", 9, hashlib.md5(b"content 9").hexdigest()]]
    third = extract_archive(str(archive), str(out))  # the later chunk overrides the earlier one
    assert third.written == 0 and third.skipped == 7
    dup = tmp_path / "a" / "dup.tar.gz"  # a name met again after the merge into the sorted array
    dup.write_bytes(
        _tar_gz([(_info(name, len(data)), data) for name, data in [*files.items(), ("train/0/0.txt", b"")]])
    )
    with pytest.raises(ExtractError, match=r"member 'train/0/0\.txt' \(member 8\) has the name of an earlier"):
        extract_archive(str(dup), str(tmp_path / "dup-out"))
