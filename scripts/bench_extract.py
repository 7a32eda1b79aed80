"""``python scripts/bench_extract.py``: ``inat-fl extract`` against ``tar -xzf`` of the same archive, one run.

Writes a replica (``--scale small``: about 3,500 real JPEGs in ``train/``, ``val/`` and ``train_mini/``) under
``--work``, packs it as ``replica.tar.gz`` with ``tar -czf``, then for each of ``--repeat`` rounds extracts it

* **tar**: ``tar -xzf replica.tar.gz -C DIR`` (GNU tar, one process, to local disk): the baseline;
* **ours**: :func:`inat_hf.realcopy.extract.extract_archive` (streaming ``r|gz`` through ``inat_hf.storage``, md5
  verified, ``--workers`` concurrent writes) to local disk, into a fresh folder;
* **ours, rerun**: the same again into that folder, every member present (the archive read again, each member
  compared with the record of what was written, nothing written);
* **ours, Azurite** (``--azurite``): the same into a container of a local Azurite (the emulator's CPU competes).

Both local outputs are compared file by file (same bytes). The best round of each is shown (the machine may be
shared), with archive MB/s and members/s; the ratio is ours / tar in throughput (target: at least 0.5, i.e.
no more than twice tar's time while also hashing and writing through fsspec). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from inat_hf.realcopy.extract import extract_archive
from inat_hf.replica import write_sample


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith(".")
    }


def _timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--scale", default="small", help="replica scale (default small)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one, removed after)")
    parser.add_argument("--azurite", action="store_true", help="also extract into Azurite")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-extract-"))
    work.mkdir(parents=True, exist_ok=True)
    src, archive = work / "src", work / "replica.tar.gz"
    if not archive.is_file():
        write_sample(str(src), scale=args.scale, seed=0)
        subprocess.run(["tar", "-czf", str(archive), "-C", str(src), "train", "val", "train_mini"], check=True)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    size = archive.stat().st_size
    rows: dict[str, list[float]] = {"tar -xzf": [], "ours (local)": [], "ours, rerun": []}
    members = 0
    for k in range(args.repeat):
        tar_out, our_out = work / f"tar-{k}", work / f"ours-{k}"
        for folder in (tar_out, our_out):
            shutil.rmtree(folder, ignore_errors=True)
        tar_out.mkdir()
        tar_command = ["tar", "-xzf", str(archive), "-C", str(tar_out)]
        seconds, _ = _timed(lambda command=tar_command: subprocess.run(command, check=True))
        rows["tar -xzf"].append(seconds)
        seconds, report = _timed(
            lambda out=our_out: extract_archive(str(archive), str(out), md5=md5, workers=args.workers)
        )
        rows["ours (local)"].append(seconds)
        members = report.written
        seconds, again = _timed(  # every member present: read the archive again, compare, write nothing
            lambda out=our_out: extract_archive(str(archive), str(out), md5=md5, workers=args.workers)
        )
        rows["ours, rerun"].append(seconds)
        if again.written:
            raise SystemExit(f"the rerun wrote {again.written} files")
        if k == 0 and _files(tar_out) != _files(our_out):
            raise SystemExit("the two extractions differ")
        shutil.rmtree(tar_out)
        shutil.rmtree(our_out)
    if args.azurite:
        from inat_hf.testing.azurite import running_azurite

        shutil.rmtree(work / "azurite", ignore_errors=True)  # a fresh, empty emulator
        with running_azurite(work / "azurite") as server:
            from azure.storage.blob import BlobServiceClient

            with BlobServiceClient.from_connection_string(server.connection_string) as service:
                service.create_container("bench")
            rows["ours (Azurite)"] = []
            for k in range(args.repeat):
                url = f"az://bench/run{k}"
                seconds, _ = _timed(
                    lambda url=url: extract_archive(
                        str(archive), url, md5=md5, workers=args.workers, out_storage_options=server.storage_options()
                    )
                )
                rows["ours (Azurite)"].append(seconds)
    best = {name: min(times) for name, times in rows.items()}
    print(f"archive: {size / 1e6:,.1f} MB, {members:,} files (scale {args.scale!r}), best of {args.repeat}")
    print(f"{'run':<16}{'seconds':>10}{'MB/s':>10}{'files/s':>10}{'vs tar':>9}")
    for name, seconds in best.items():
        ratio = best["tar -xzf"] / seconds
        print(f"{name:<16}{seconds:>10.2f}{size / 1e6 / seconds:>10.1f}{members / seconds:>10.0f}{ratio:>8.2f}x")
    result = {
        "archive_bytes": size,
        "files": members,
        "scale": args.scale,
        "seconds": rows,
        "best": best,
        "ratio_ours_vs_tar": best["tar -xzf"] / best["ours (local)"],
    }
    print(json.dumps(result))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
