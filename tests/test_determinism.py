"""Determinism: same metadata, config and seed give byte-identical manifests and identical prepared datasets.

Across fresh builds in separate cache folders, across processes (another ``PYTHONHASHSEED``), and across
``num_proc`` 1 and 2; other seeds give other partitions. The fingerprint that keys the caches is what the
manifest module documents: the metadata files' names, sizes and version tokens, the config's fields and
``MANIFEST_VERSION``; never a URL or a credential.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from reliability import record

import inat_hf.manifest.cache as manifest_module
from inat_hf import storage
from inat_hf.config import INatFLConfig, config_for
from inat_hf.manifest import load_or_build_manifest, locate, manifest_fingerprint
from inat_hf.replica import write_sample
from inaturalist_fl import INaturalistFL

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMES: dict[str, dict] = {
    "user": {"test_fraction": 0.2, "client_fraction": 0.8},
    "geo300": {"test_fraction": 0.2},
    "dirichlet": {"num_partitions": 20, "min_partition_size": 5, "alpha": 0.3, "holdout_client_fraction": 0.2},
    "iid": {"num_partitions": 20, "test_fraction": 0.2},
}
MANIFEST_FILES = ("manifest.parquet", "clients.parquet", "dropped.parquet", "info.json")


def fingerprint(url: str, config: INatFLConfig, storage_options: dict[str, str] | None = None) -> str:
    """The manifest fingerprint of ``config`` over the metadata at ``url``."""
    return manifest_fingerprint(storage.resolve(url, storage_options), config)


def config_of(scheme: str, **extra: object) -> INatFLConfig:
    return config_for(f"family_{scheme}", **{**SCHEMES[scheme], **extra})


def manifest_bytes(url: str, config: INatFLConfig, cache: Path) -> dict[str, bytes]:
    """Build (or read) the manifest and return the bytes of each of its files."""
    load_or_build_manifest(url, config, cache_dir=str(cache))
    folder = locate(storage.resolve(url), config, cache).folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(MANIFEST_FILES)
    return {name: (folder / name).read_bytes() for name in MANIFEST_FILES}


def digest(files: dict[str, bytes], names: tuple[str, ...] = MANIFEST_FILES) -> str:
    return hashlib.sha256(b"".join(files[name] for name in names)).hexdigest()[:16]


_SUBPROCESS = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path
    from inat_hf.config import config_for
    from inat_hf import storage
    from inat_hf.manifest import load_or_build_manifest, locate

    url, cache, configs = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    out = {}
    for scheme, fields in configs.items():
        config = config_for(f"family_{scheme}", **fields)
        load_or_build_manifest(url, config, cache_dir=str(cache))
        folder = locate(storage.resolve(url), config, cache).folder
        names = ("manifest.parquet", "clients.parquet", "dropped.parquet", "info.json")
        out[scheme] = hashlib.sha256(b"".join((folder / n).read_bytes() for n in names)).hexdigest()[:16]
    print(json.dumps(out))
    """
)


def test_manifests_are_byte_identical_across_builds_and_processes(small_metadata, tmp_path):
    url = small_metadata.url
    first = {scheme: manifest_bytes(url, config_of(scheme), tmp_path / "a") for scheme in SCHEMES}
    second = {scheme: manifest_bytes(url, config_of(scheme), tmp_path / "b") for scheme in SCHEMES}
    hashseed = "12345" if os.environ.get("PYTHONHASHSEED") != "12345" else "54321"
    done = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, url, str(tmp_path / "c"), json.dumps(SCHEMES)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": hashseed},
        cwd=REPO_ROOT,
        timeout=600,
    )
    other = json.loads(done.stdout.strip().splitlines()[-1])
    for scheme in SCHEMES:
        for name in MANIFEST_FILES:
            assert first[scheme][name] == second[scheme][name], (scheme, name)
        assert other[scheme] == digest(first[scheme]), scheme
        clients = load_or_build_manifest(url, config_of(scheme), cache_dir=str(tmp_path / "a")).num_clients
        assert clients > 1, scheme  # a real partition, not one client
        record(
            "determinism",
            f"manifest family_{scheme} {SCHEMES[scheme]} of the small replica: two fresh builds in separate cache "
            f"folders and a subprocess with PYTHONHASHSEED={hashseed}",
            "byte-identical manifest.parquet, clients.parquet, dropped.parquet, info.json",
            # info.json holds the fingerprint, which holds the files' mtimes: the same within a run only
            f"identical; {clients} clients; sha256 of the Parquet files {digest(first[scheme], MANIFEST_FILES[:3])}",
        )


def _assignment(url: str, config: INatFLConfig, cache: Path) -> dict[int, tuple[int, str]]:
    table = load_or_build_manifest(url, config, cache_dir=str(cache)).table
    ids, clients, splits = (table[c].to_pylist() for c in ("image_id", "client_id", "split"))
    return dict(zip(ids, zip(clients, splits, strict=True), strict=True))


@pytest.mark.parametrize("scheme", ["dirichlet", "iid"])
def test_other_seeds_give_other_partitions(small_metadata, tmp_path, scheme):
    url = small_metadata.url
    by_seed = {seed: _assignment(url, config_of(scheme, seed=seed), tmp_path) for seed in (0, 1, 2)}
    fingerprints = {fingerprint(url, config_of(scheme, seed=seed)) for seed in by_seed}
    assert len(fingerprints) == 3
    moved = []
    for seed in (1, 2):
        assert by_seed[seed] != by_seed[0]
        moved.append(sum(by_seed[seed].get(i) != where for i, where in by_seed[0].items()))
    assert by_seed[0] == _assignment(url, config_of(scheme, seed=0), tmp_path / "again")
    record(
        "determinism",
        f"family_{scheme}: seeds 0, 1, 2",
        "different partitions and fingerprints; seed 0 again gives seed 0's partition",
        f"{len(fingerprints)} fingerprints; rows whose (client, split) differs from seed 0: "
        f"{moved[0]} (seed 1), {moved[1]} (seed 2) of {len(by_seed[0])}",
    )


def _image_hashes(builder: INaturalistFL, split: str) -> str:
    images = builder.as_dataset(split).data.table.column("image").combine_chunks().field("bytes").to_pylist()
    return hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in images)).hexdigest()[:16]


PREPARED = {
    "user": SCHEMES["user"],
    "dirichlet": {"num_partitions": 5, "min_partition_size": 2, "alpha": 0.3, "test_fraction": 0.2},
}


@pytest.mark.parametrize("scheme", sorted(PREPARED))
def test_prepared_datasets_are_identical_across_runs_and_num_proc(tiny_replica, tmp_path, scheme):
    runs = {}
    for name, num_proc in (("first", 1), ("second", 1), ("num_proc=2", 2)):
        builder = INaturalistFL(
            config_name=f"family_{scheme}",
            data_dir=tiny_replica.url,
            cache_dir=str(tmp_path / name),
            **PREPARED[scheme],
        )
        builder.download_and_prepare(num_proc=num_proc)
        runs[name] = builder
    first = runs["first"]
    splits = sorted(first.info.splits)
    assert set(splits) >= {"train", "validation"}
    hashes = {}
    for split in splits:
        expected = first.as_dataset(split).data.table
        assert expected.num_rows > 0
        hashes[split] = _image_hashes(first, split)
        for name, builder in runs.items():
            table = builder.as_dataset(split).data.table
            assert table.schema == expected.schema and table.equals(expected), (name, split)
            assert _image_hashes(builder, split) == hashes[split], (name, split)
    shards = len(runs["num_proc=2"].info.splits["train"].shard_lengths or [])
    record(
        "determinism",
        f"prepared family_{scheme} {PREPARED[scheme]} of the tiny replica (with images): two runs with "
        "num_proc=1 and one with num_proc=2, separate cache folders",
        "equal Arrow tables (same rows, same order, same values) and the same image bytes in every split",
        "equal; "
        + ", ".join(f"{s}: {first.info.splits[s].num_examples} rows" for s in splits)
        + f"; image sha256 {', '.join(f'{s} {h}' for s, h in hashes.items())}; num_proc=2 wrote {shards} train shards",
    )


# --- the fingerprint: what goes in, what never does ---------------------------------------------------------------


def test_the_fingerprint_scheme_is_documented():
    doc = " ".join((manifest_module.__doc__ or "").split())
    for words in ("size", "version token", "config's fields", "MANIFEST_VERSION", "never", "URL", "credential"):
        assert words in doc, f"the manifest module docstring does not say {words!r}"
    readme = " ".join((REPO_ROOT / "docs" / "partitions.md").read_text().split())
    section = re.search(r"## Determinism and fingerprints (.*?)(?: ## |$)", readme)
    assert section, "docs/partitions.md has no 'Determinism and fingerprints' section"
    for words in ("size", "ETag", "MANIFEST_VERSION", "never", "URL", "credential", "byte-identical"):
        assert words in section.group(1), f"the docs section does not say {words!r}"
    record(
        "determinism",
        "fingerprint documentation (inat_hf/manifest/cache.py docstring, "
        "docs/partitions.md 'Determinism and fingerprints')",
        "says what goes in (file names, sizes, version tokens; config fields; MANIFEST_VERSION) and what never "
        "does (URLs, credentials)",
        "both say it",
    )


def test_the_fingerprint_ignores_url_spelling_and_follows_content(small_metadata, tmp_path, monkeypatch):
    base = Path(small_metadata.url)
    config = config_of("user")
    reference = fingerprint(str(base), config)
    relative = os.path.relpath(base)
    spellings = [f"{base}/", f"file://{base}", relative, str(base / "." / "")]
    assert all(fingerprint(url, config) == reference for url in spellings)
    assert fingerprint(str(base), config_of("user", seed=1)) != reference
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("train.json", "val.json"):
        (copy / name).write_bytes((base / name).read_bytes())
        original = (base / name).stat()
        os.utime(copy / name, ns=(original.st_atime_ns, original.st_mtime_ns))
    same_version = fingerprint(str(copy), config)
    (copy / "val.json").write_bytes((copy / "val.json").read_bytes() + b"\n")  # another size and mtime
    changed = fingerprint(str(copy), config)
    monkeypatch.setattr(manifest_module, "MANIFEST_VERSION", manifest_module.MANIFEST_VERSION + 1)
    bumped = fingerprint(str(base), config)
    assert same_version == reference and changed != reference and bumped != reference
    record(
        "determinism",
        "fingerprint of the small replica's family_user: URL spelled 4 ways (trailing slash, file://, relative, "
        "'/./'), a copy with the same sizes and mtimes, a changed file, another seed, MANIFEST_VERSION + 1",
        "the same for the spellings and the faithful copy; different for content, seed and version",
        "same: 4 spellings and the copy; different: changed file, seed 1, MANIFEST_VERSION + 1",
    )


@pytest.mark.azurite
def test_the_fingerprint_is_the_same_with_a_key_or_a_sas(azurite, az_container):
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    url = f"{az_container.url}/replica"
    write_sample(url, scale="tiny", seed=0, storage_options=az_container.storage_options, metadata_only=True)
    sas = generate_account_sas(
        azurite.account_name,
        azurite.account_key,
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(read=True, list=True),
        expiry="2099-01-01T00:00:00Z",
    )
    with_sas = {"connection_string": f"BlobEndpoint={azurite.blob_endpoint};SharedAccessSignature={sas}"}
    config = config_of("user")
    by_key = fingerprint(url, config, az_container.storage_options)
    by_sas = fingerprint(url, config, with_sas)
    assert by_key == by_sas
    record(
        "determinism",
        "fingerprint of a replica in Azurite read with the account key, then with an account SAS",
        "the same fingerprint (credentials never go in)",
        "the same",
    )


def test_assignment_is_a_pure_function_of_the_seed(small_metadata):
    """No global random state: draws from numpy's global generator in between change nothing."""
    from inat_hf.manifest import build_manifest
    from inat_hf.metadata import load_metadata

    images = load_metadata(small_metadata.url)
    config = config_of("dirichlet")
    first = build_manifest(images, config).table
    np.random.seed(99)
    np.random.random(1000)
    shuffled = images.take(np.random.default_rng(3).permutation(images.num_rows))  # input order is moot too
    assert build_manifest(images, config).table.equals(first)
    assert build_manifest(shuffled, config).table.equals(first)
    record(
        "determinism",
        "build_manifest(family_dirichlet) after drawing from numpy's global generator, and on shuffled input rows",
        "the same manifest table (no global random state, no dependence on input order)",
        f"equal tables ({first.num_rows} rows)",
    )
