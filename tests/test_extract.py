"""``inat-fl extract``: a replica archive extracted to local disk and to Azurite (same bytes as the source
folder), a rerun, escaping members, a truncated archive and a wrong md5."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from inat_hf import extract as extract_module
from inat_hf.cli import main
from inat_hf.extract import MARKER_DIR, ExtractError, extract_archive, official_archives
from inat_hf.storage import list_sizes, read_bytes, resolve

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
        from inat_hf.storage import write_bytes

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
