"""Benchmarks, each against its baseline in the same run, printed as a table and one JSON line.

    python scripts/bench.py metadata  [--data DIR] [--scale full]
    python scripts/bench.py partition [--data DIR] [--scale full]
    python scripts/bench.py fetch ...      (scripts/bench_fetch.py)
    python scripts/bench.py clients ...    (scripts/bench_clients.py)
    python scripts/bench.py prepare ...    (scripts/bench_prepare.py)
    python scripts/bench.py partitioner ...  (scripts/bench_partitioner.py)
    python scripts/bench.py pipeline ...  (scripts/bench_pipeline.py)
    python scripts/bench.py batches ...   (scripts/bench_batches.py)

``metadata``: time and peak RSS of ``inat_hf.metadata.load_metadata`` on the replica's ``train.json``
against the TFDS approach (``json.load`` plus Python loops building the same table). Each loader runs in
a fresh child process so that peak RSS is its own; both must produce the same (image_id, species) pairs
(checked by a checksum computed after the timing and the peak RSS reading). ``--repeat N`` runs N pairs
(ours, then the baseline) and gives each pair's ratio; CPU seconds (all threads) are shown too, since on a
shared machine the wall-clock ratio moves with the load.

``partition``: on the replica's train rows, our ``user`` assignment plus client index, our whole
``family_user`` manifest build, and Dirichlet over 1,000 clients at species rank, against flwr-datasets'
``NaturalIdPartitioner`` building its partition map (what its first ``load_partition`` does) on the same
rows loaded as a ``datasets.Dataset``. Each task runs in its own child process after the metadata is
loaded (not timed); peak RSS is the child's.

The replica's metadata is written to ``--data`` first if it is not there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {
    "fetch": "download_and_prepare image throughput vs raw azure-storage-blob",
    "clients": "ClientData.client vs Flower's NaturalIdPartitioner",
    "prepare": "prepare on Dask vs the builder vs raw downloads; driver at scale",
    "partitioner": "INatPartitioner: prepared vs shuffled split",
    "pipeline": "input pipeline: ViTImageProcessor vs ImageTransform",
    "batches": "batch(by_column='client_id') vs ClientData.client, per client",
}
"""More benchmarks, each a script of its own beside this one (``scripts/bench_NAME.py NAME ...``), run as such."""


def _checksum(image_ids: np.ndarray, species: list[str]) -> str:
    order = np.argsort(image_ids, kind="stable")
    digest = hashlib.sha256(np.asarray(image_ids)[order].astype(np.int64).tobytes())
    for i in order.tolist():
        digest.update(species[i].encode())
    return digest.hexdigest()[:16]


def _load_ours(path: str) -> tuple[np.ndarray, pa.ChunkedArray]:
    from inat_hf.metadata import load_metadata

    table = load_metadata(path)
    return table["image_id"], table["species"]


def _load_baseline(path: str) -> tuple[np.ndarray, pa.ChunkedArray]:
    """The TFDS approach: json.load, dicts by id, a Python loop over every image, then a table."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    categories = {c["id"]: c for c in data["categories"]}
    category_of = {a["image_id"]: a["category_id"] for a in data["annotations"]}
    ranks = ("kingdom", "phylum", "class", "order", "family", "genus")
    keys = (
        "id",
        "width",
        "height",
        "file_name",
        "license",
        "rights_holder",
        "date",
        "latitude",
        "longitude",
        "location_uncertainty",
    )
    columns: dict[str, list] = {k: [] for k in (*keys, "species_id", *ranks, "species")}
    for image in data["images"]:
        category = categories[category_of[image["id"]]]
        for key in keys:
            columns[key].append(image.get(key))
        columns["species_id"].append(category["id"])
        for rank in ranks:
            columns[rank].append(category[rank])
        columns["species"].append(category["name"])
    table = pa.table(columns)
    return table["id"], table["species"]


def _time_loader(which: str, path: str) -> dict:
    """Time one loader (the checksum of its rows is computed afterwards, outside the timing)."""
    start, cpu = time.perf_counter(), _cpu()
    image_ids, species = (_load_ours if which == "ours" else _load_baseline)(path)
    seconds, cpu_seconds = time.perf_counter() - start, _cpu() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the loader's, before the checksum's lists
    names = species.combine_chunks()
    names = names.dictionary_decode() if pa.types.is_dictionary(names.type) else names
    checksum = _checksum(image_ids.to_numpy(), names.to_pylist())
    return {
        "rows": len(image_ids),
        "checksum": checksum,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_bytes": peak,
    }


def _cpu() -> float:
    """CPU seconds of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _partition_task(which: str, path: str) -> dict:
    """Load the metadata (untimed), then time one partition task."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from inat_hf.config import config_for
    from inat_hf.manifest import build_manifest, user_codes
    from inat_hf.metadata import load_metadata
    from inat_hf.partition import dirichlet, user

    images = load_metadata(path)
    train = images.filter(pc.equal(images["split"], "train"))
    if which == "flower":
        import datasets
        from flwr_datasets.partitioner import NaturalIdPartitioner

        users = train["user"].combine_chunks().dictionary_decode()
        dataset = datasets.Dataset(pa.table({"image_id": train["image_id"], "user": users}))
        partitioner = NaturalIdPartitioner(partition_by="user")
        partitioner.dataset = dataset
    rss_before = _rss()
    start, cpu = time.perf_counter(), _cpu()
    if which == "user":
        assignment = user(user_codes(train))
        order = np.argsort(assignment, kind="stable")
        sizes = np.bincount(assignment)
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        clients = int(sizes.size)
        del order, offsets
    elif which == "manifest":
        clients = build_manifest(images, config_for("family_user")).num_clients
    elif which == "dirichlet":
        labels = train["species"].combine_chunks().indices.to_numpy()
        assignment = dirichlet(
            labels,
            num_partitions=min(1000, labels.size // 100),
            alpha=0.5,
            min_partition_size=10,
            rng=np.random.default_rng(0),
        )
        clients = int(assignment.max()) + 1
    else:  # flower: the maps its first load_partition builds
        partitioner._create_int_partition_id_to_natural_id()
        partitioner._create_natural_id_to_int_partition_id()
        partitioner._create_partition_id_to_indices()
        clients = partitioner.num_partitions
    seconds, cpu_seconds = time.perf_counter() - start, _cpu() - cpu
    return {"clients": clients, "seconds": seconds, "cpu_seconds": cpu_seconds, "rss_before_bytes": rss_before}


def _child(which: str, path: str) -> None:
    result = _time_loader(which, path) if which in ("ours", "baseline") else _partition_task(which, path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"task": which, "peak_rss_bytes": peak, **result}))  # a loader's own peak replaces this one


def _run_child(which: str, path: Path) -> dict:
    """Run one task in a fresh interpreter; return its JSON result."""
    out = subprocess.run(
        [sys.executable, __file__, "_child", which, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode:
        raise SystemExit(f"bench task {which!r} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ensure_replica(data: Path, scale: str) -> Path:
    train = data / "train.json"
    if not train.exists():
        from inat_hf.replica import write_sample

        print(f"writing the {scale!r} replica's metadata to {data} ...", file=sys.stderr)
        write_sample(str(data), scale=scale, metadata_only=True, progress=True)
    return train


def bench_metadata(args: argparse.Namespace) -> dict:
    train = _ensure_replica(Path(args.data), args.scale)
    size = train.stat().st_size
    with train.open("rb") as handle:  # into the page cache first: the baseline, second in a pair, reads it warm
        while handle.read(1 << 24):
            pass
    pairs = []
    for _ in range(args.repeat):  # ours then the baseline, each pair on the machine as it is at that moment
        load = os.getloadavg()[0]
        ours, baseline = _run_child("ours", train), _run_child("baseline", train)
        if (ours["rows"], ours["checksum"]) != (baseline["rows"], baseline["checksum"]):
            raise SystemExit(f"the loaders disagree: ours {ours}, baseline {baseline}")
        pairs.append({"ours": ours, "baseline": baseline, "load_average": load})
    for pair in pairs:
        pair["speedup"] = pair["baseline"]["seconds"] / pair["ours"]["seconds"]
        pair["cpu_speedup"] = pair["baseline"]["cpu_seconds"] / pair["ours"]["cpu_seconds"]
    ours, baseline = pairs[0]["ours"], pairs[0]["baseline"]
    result = {
        "bench": "metadata",
        "file": str(train),
        "file_bytes": size,
        "rows": ours["rows"],
        "pairs": pairs,
        "speedup": [pair["speedup"] for pair in pairs],
        "ours_peak_rss_over_file": max(pair["ours"]["peak_rss_bytes"] for pair in pairs) / size,
        "baseline_peak_rss_over_file": max(pair["baseline"]["peak_rss_bytes"] for pair in pairs) / size,
    }
    gib = 2**30
    print(f"train.json: {size / gib:.2f} GiB, {ours['rows']:,} images (same rows and species in both)")
    print("timed: the load into a table; the checksum that compares the two is computed afterwards")
    print(f"{'pair':<6}{'loader':<28}{'seconds':>9}{'CPU s':>8}{'peak RSS GiB':>14}{'RSS / file':>12}{'load':>6}")
    for i, pair in enumerate(pairs, 1):
        for name, key in (("inat_hf load_metadata", "ours"), ("json.load + loops (TFDS)", "baseline")):
            run = pair[key]
            rss = run["peak_rss_bytes"]
            print(
                f"{i:<6}{name:<28}{run['seconds']:>9.1f}{run['cpu_seconds']:>8.1f}{rss / gib:>14.2f}"
                f"{rss / size:>12.2f}{pair['load_average']:>6.1f}"
            )
        print(f"{i:<6}speedup: {pair['speedup']:.1f}x (CPU time: {pair['cpu_speedup']:.1f}x)")
    print(json.dumps(result))
    return result


_PARTITION_TASKS = {
    "user": "ours: user assignment + client index",
    "manifest": "ours: whole family_user manifest build",
    "dirichlet": "ours: Dirichlet, min(1000, N/100) clients, species",
    "flower": "flwr-datasets NaturalIdPartitioner map",
}


def bench_partition(args: argparse.Namespace) -> dict:
    _ensure_replica(Path(args.data), args.scale)
    rounds = []
    for _ in range(args.repeat):  # every task once per round, each in a fresh process
        runs = {name: _run_child(name, Path(args.data)) for name in _PARTITION_TASKS}
        if (
            runs["user"]["clients"] != runs["flower"]["clients"]
            or runs["manifest"]["clients"] != runs["user"]["clients"]
        ):
            raise SystemExit(f"client counts disagree: {runs}")
        rounds.append({"runs": runs, "load_average": os.getloadavg()[0]})
    speedups = {
        name: [r["runs"]["flower"]["seconds"] / r["runs"][name]["seconds"] for r in rounds]
        for name in ("user", "manifest")
    }
    result = {
        "bench": "partition",
        "data": str(args.data),
        "clients": rounds[0]["runs"]["user"]["clients"],
        "rounds": rounds,
        "user_speedup_vs_flower": speedups["user"],
        "manifest_speedup_vs_flower": speedups["manifest"],
        "manifest_speedup_median": statistics.median(speedups["manifest"]),
        "manifest_cpu_speedup_vs_flower": [
            r["runs"]["flower"]["cpu_seconds"] / r["runs"]["manifest"]["cpu_seconds"] for r in rounds
        ],
    }
    gib = 2**30
    print(f"{result['clients']:,} clients (user scheme); each task timed after the metadata is loaded")
    print(f"{'round':<7}{'task':<48}{'seconds':>9}{'vs Flower':>11}{'CPU s':>8}{'vs Flower':>11}{'peak RSS GiB':>14}")
    for i, r in enumerate(rounds, 1):
        runs, flower = r["runs"], r["runs"]["flower"]
        for name, run in runs.items():
            ratio, cpu_ratio = flower["seconds"] / run["seconds"], flower["cpu_seconds"] / run["cpu_seconds"]
            print(
                f"{i:<7}{_PARTITION_TASKS[name]:<48}{run['seconds']:>9.2f}{ratio:>10.1f}x{run['cpu_seconds']:>8.2f}"
                f"{cpu_ratio:>10.1f}x{run['peak_rss_bytes'] / gib:>14.2f}"
            )
        print(f"{i:<7}load average at the end of the round: {r['load_average']:.1f}")
    print(f"whole manifest vs Flower, median of {len(rounds)}: {result['manifest_speedup_median']:.1f}x")
    print(json.dumps(result))
    return result


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_child":
        _child(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] in PLUGINS:  # its own script, in a process of its own
        script = Path(__file__).resolve().parent / f"bench_{sys.argv[1]}.py"
        sys.exit(subprocess.run([sys.executable, str(script), *sys.argv[1:]]).returncode)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    meta = sub.add_parser("metadata", help="our metadata loader vs json.load + loops")
    meta.add_argument("--data", default=str(ROOT / "bench_out" / "full"), help="replica folder (written if missing)")
    meta.add_argument("--scale", default="full")
    meta.add_argument("--repeat", type=int, default=1, help="pairs of runs (ours, then the baseline)")
    meta.set_defaults(func=bench_metadata)
    part = sub.add_parser("partition", help="our user partition and manifest vs Flower's NaturalIdPartitioner")
    part.add_argument("--data", default=str(ROOT / "bench_out" / "full"), help="replica folder (written if missing)")
    part.add_argument("--scale", default="full")
    part.add_argument("--repeat", type=int, default=1, help="rounds (every task once per round, fresh processes)")
    part.set_defaults(func=bench_partition)
    for name, text in PLUGINS.items():  # listed for --help; main() runs them before parsing
        sub.add_parser(name, help=f"{text} (scripts/bench_{name}.py)")
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
