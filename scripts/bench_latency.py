"""Images/s against concurrent fetches when every GET waits a cloud store's latency (``bench_latency.py``).

    python scripts/bench_latency.py [--data DIR] [--latency-ms 0 20 50] [--procs 1 2] [--out DIR]
    python scripts/bench_latency.py --dry            # a few points, a few seconds: does it run

The ``small`` replica's JPEGs (written to ``--data`` when missing) are held in memory by a small asyncio HTTP/1.1
server on 127.0.0.1 (``--server-procs`` processes sharing one port) that answers each GET after ``--latency-ms``
(``asyncio.sleep``: no CPU is held while waiting, any number of requests wait at once). Client processes fetch them
through the package's real path, ``inat_hf.storage.fetch_many`` over fsspec's HTTP filesystem: concurrency c =
processes x ``max_workers`` (the requests one ``fetch_many`` keeps in flight: coroutines on fsspec's event loop).
Each point is timed from a common start to the last file fetched, best of ``--repeat``; the client's CPU is the
processes' own (``time.process_time``), the server's from ``/proc``. The latency-bound rate is c / latency; the
CPU bound is the rate at zero latency.

Then, in fresh processes: ``prepare`` of ``family_user`` with the synchronous scheduler (one process, its own
fetch concurrency) reading the images over HTTP at each latency, metadata-only, and with ``max_image_side``; its
CPU per image is the work a worker does per image (fetch, vet, resize, Parquet). With Azurite installed, the CPU
that adlfs (the Azure client) spends per blob in ``fetch_many``. Writes ``bench_latency.json`` and a plot to
``--out`` and prints the model of the real train split (``docs/scaling.md``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from inat_hf.testing.blob_server import LatencyBlobServer

TRAIN_BLOBS = 2_686_843
TRAIN_BYTES = 224e9
"""The real train split (``train.tar.gz`` of iNat 2021): blobs and bytes."""
ACCOUNT_REQUESTS_PER_S = 20_000
ACCOUNT_EGRESS_GBPS = 50
"""Default targets of a standard GPv2 storage account outside the regions Microsoft lists with higher ones
(40,000 requests/s and 200 Gbps there): learn.microsoft.com/azure/storage/common/scalability-targets-standard-account.
"""


def _fetch(url: str, names: list[str], slots: int, start_at: float, options: dict | None = None) -> dict[str, Any]:
    from inat_hf import storage

    loc = storage.resolve(url, options)
    storage.fetch_many(loc, names[: 2 * slots], max_workers=slots)  # connections opened, code warm
    time.sleep(max(0.0, start_at - time.time()))
    began, cpu = time.time(), time.process_time()
    blobs = storage.fetch_many(loc, names, max_workers=slots)
    return {"began": began, "end": time.time(), "cpu_s": time.process_time() - cpu,
            "bytes": sum(len(b) for b in blobs if isinstance(b, bytes))}  # fmt: skip


def _prepare(out: str, data: str, images: str | None, cache: str, max_image_side: int | None) -> dict[str, Any]:
    from inat_hf.prepare import prepare

    began, cpu = time.perf_counter(), time.process_time()
    report = prepare(out, data, ["family_user"], images_dir=images, cache_dir=cache, scheduler="synchronous",
                     overrides=None if images else {"with_images": False}, max_image_side=max_image_side,
                     progress=None)  # fmt: skip
    rows = int(report["totals"]["rows_written"])
    return {"seconds": time.perf_counter() - began, "cpu_s": time.process_time() - cpu, "rows": rows,
            "images_per_s": report["images_per_s"] if images else None}  # fmt: skip


def _client(conn: Any) -> None:
    import inat_hf.storage  # noqa: F401  (imported before the first timed call)

    calls: dict[str, Any] = {"fetch": _fetch, "prepare": _prepare}
    while (message := conn.recv()) is not None:
        name, kwargs = message
        try:
            conn.send(("ok", calls[name](**kwargs)))
        except Exception:
            conn.send(("error", traceback.format_exc()))


class Clients:
    """``n`` spawned client processes; :meth:`call` runs one call in each of the first ``len(calls)``."""

    def __init__(self, n: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(n):
            parent, child = context.Pipe()
            process = context.Process(target=_client, args=(child,), daemon=True)
            process.start()
            self.conns.append(parent)
            self.procs.append(process)

    def call(self, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Send each call to its own process, wait for all; raise the first error with its traceback."""
        for conn, call in zip(self.conns, calls, strict=False):
            conn.send(call)
        answers = [conn.recv() for conn in self.conns[: len(calls)]]
        for status, value in answers:
            if status != "ok":
                raise RuntimeError(f"a client process failed:\n{value}")
        return [value for _, value in answers]

    def close(self) -> None:
        """Stop the processes."""
        for conn, process in zip(self.conns, self.procs, strict=True):
            conn.send(None)
            process.join(10)


def fetch_point(clients: Clients, server: LatencyBlobServer, names: list[str], procs: int, slots: int,
                count: int, latency_s: float) -> dict[str, Any]:  # fmt: skip
    """Fetch ``count`` files (cycling over ``names``) with ``procs`` processes x ``slots`` requests in flight."""
    wanted = [names[i % len(names)] for i in range(count)]
    start_at = time.time() + 0.3 + 4 * latency_s
    calls = [("fetch", {"url": server.url, "names": wanted[i::procs], "slots": slots, "start_at": start_at})
             for i in range(procs)]  # fmt: skip
    server_cpu = server.cpu_seconds()
    results = clients.call(calls)
    server_cpu = server.cpu_seconds() - server_cpu  # includes the warm-up requests: an upper bound
    wall = max(r["end"] for r in results) - min(r["began"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    return {"procs": procs, "slots": slots, "concurrency": procs * slots, "latency_ms": 1000 * latency_s,
            "images": count, "seconds": wall, "images_per_s": count / wall, "client_cpu_ms": 1000 * cpu / count,
            "server_cpu_ms": 1000 * server_cpu / (count + 2 * slots * procs),
            "bound_latency": procs * slots / latency_s if latency_s else None}  # fmt: skip


def curve(args: argparse.Namespace, clients: Clients, server: LatencyBlobServer, names: list[str], latency_s: float,
          cpu_bound: dict[tuple[int, int], float]) -> list[dict[str, Any]]:  # fmt: skip
    """Every (processes, slots) point at one latency, best of ``--repeat``; fills ``cpu_bound`` at latency 0."""
    points = []
    for procs in args.procs:
        guess = 400.0  # images/s of the first point at zero latency: the next points scale from the last
        for total in args.concurrency:
            if total < procs or total % procs or total // procs > args.max_slots:
                continue
            slots = total // procs
            expected = min(total / latency_s, 1.3 * cpu_bound.get((procs, slots), 1e9)) if latency_s else 2 * guess
            count = int(min(max(args.seconds * expected, 8 * total, 32), args.max_images))
            runs = [fetch_point(clients, server, names, procs, slots, count, latency_s) for _ in range(args.repeat)]
            best = max(runs, key=lambda r: r["images_per_s"])
            best["runs"] = [round(r["images_per_s"], 1) for r in runs]
            guess = best["images_per_s"]
            if not latency_s:
                cpu_bound[(procs, slots)] = guess
            points.append(best)
            ideal = "" if not latency_s else f" (c/latency {total / latency_s:,.0f})"
            print(f"latency {1000 * latency_s:>3.0f} ms, {procs} x {slots:>3} = {total:>4}: "
                  f"{best['images_per_s']:>7,.0f} images/s{ideal}", flush=True)  # fmt: skip
    return points


def prepare_runs(args: argparse.Namespace, clients: Clients, data: Path, work: Path, server: LatencyBlobServer,
                 latency_s: float, warm: bool) -> list[dict]:  # fmt: skip
    """``prepare`` in the first client process (synchronous scheduler: one process, its own fetch concurrency):
    images at this latency; at zero latency also metadata-only, with ``max_image_side`` and with the JPEGs grown to
    ``--blob-kb``, each the least CPU of ``--repeat`` runs. ``warm``: one untimed run first (imports, cache).
    """
    padded = LatencyBlobServer(data, 0, pad_to=int(args.blob_kb * 1000)) if not latency_s else None
    variants: list[tuple[str, str | None, int | None]] = [("images", server.url, None)]
    if padded is not None:
        variants = [("metadata", None, None), ("images", server.url, None), ("resized", server.url, args.resize),
                    ("real size", padded.url, None)]  # fmt: skip
    target, out = work / "prepared", []
    try:
        for i, (kind, images, side) in enumerate(variants):
            kwargs = {"out": str(target), "data": str(data), "images": images, "cache": str(work / "cache"),
                      "max_image_side": side}  # fmt: skip
            runs, skip = [], int(warm and i == 0)
            for _ in range(skip + (args.repeat if not latency_s else 1)):
                shutil.rmtree(target, ignore_errors=True)
                runs.append(clients.call([("prepare", kwargs)])[0])
            run = min(runs[skip:], key=lambda r: r["cpu_s"])
            run.update({"latency_ms": 1000 * latency_s, "kind": kind, "cpu_ms": 1000 * run["cpu_s"] / run["rows"]})
            rate = "" if run["images_per_s"] is None else f", {run['images_per_s']:,.0f} images/s"
            print(f"prepare, latency {1000 * latency_s:.0f} ms, {kind}: {run['rows']:,} rows, "
                  f"{run['cpu_ms']:.3f} ms CPU/row{rate}", flush=True)  # fmt: skip
            out.append(run)
    finally:
        shutil.rmtree(target, ignore_errors=True)
        if padded is not None:
            padded.close()
    return out


def azure_client_cost(args: argparse.Namespace, clients: Clients, data: Path, work: Path, names: list[str]) -> dict:
    """CPU per blob of ``fetch_many`` through adlfs (the Azure client) from Azurite, ``--azure-images`` blobs."""
    from azure.storage.blob import BlobServiceClient

    from inat_hf import storage
    from inat_hf.testing.azurite import running_azurite

    subset = names[: args.azure_images]
    with running_azurite(work / "azurite") as server:
        with BlobServiceClient.from_connection_string(server.connection_string) as service:
            service.create_container("bench")
        options = server.storage_options()
        storage.write_many(storage.resolve("az://bench/img", options), ((n, (data / n).read_bytes()) for n in subset))
        runs = []
        for _ in range(args.repeat):
            call = {"url": "az://bench/img", "names": subset, "slots": 32, "start_at": time.time(), "options": options}
            result = clients.call([("fetch", call)])[0]
            runs.append(1000 * result["cpu_s"] / len(subset))
    print(f"adlfs fetch_many from Azurite, 32 in flight: {min(runs):.2f} ms CPU per blob (client)", flush=True)
    return {"blobs": len(subset), "client_cpu_ms": min(runs), "runs": [round(r, 3) for r in runs]}


def costs(points: list[dict], prepares: list[dict], azure: dict | None) -> dict[str, float | None]:
    """CPU ms per image (gross: ``prepare``'s CPU over its rows) and the requests a worker keeps in flight."""
    zero = [p for p in points if p["latency_ms"] == 0 and p["procs"] == 1]
    at_zero = {r["kind"]: r["cpu_ms"] for r in prepares if r["latency_ms"] == 0}
    out: dict[str, float | None] = {
        "http_fetch_ms": min(zero, key=lambda p: abs(p["slots"] - 32))["client_cpu_ms"] if zero else None,
        "azure_fetch_ms": None if azure is None else azure["client_cpu_ms"],
        **{f"prepare_{kind.replace(' ', '_')}_ms": at_zero.get(kind) for kind in ("metadata", "images", "resized",
                                                                                   "real size")},
    }  # fmt: skip
    plain, slowest = out["prepare_images_ms"], max((r for r in prepares if r["latency_ms"]), default=None,
                                                    key=lambda r: r["latency_ms"])  # fmt: skip
    # a worker fetches and works in turn (time per image = L / k + c): k from its rate at the longest latency
    if plain is not None and slowest is not None and 1 / slowest["images_per_s"] > plain / 1000:
        out["in_flight"] = slowest["latency_ms"] / 1000 / (1 / slowest["images_per_s"] - plain / 1000)
    return out


def scenarios(parts: dict[str, float | None], args: argparse.Namespace) -> dict[str, float]:
    """Per-image CPU of a worker: as measured here, and with Azure's client and real-size blobs (+ a resize)."""
    real, http, azure = parts.get("prepare_real_size_ms"), parts.get("http_fetch_ms"), parts.get("azure_fetch_ms")
    plain, resized = parts.get("prepare_images_ms"), parts.get("prepare_resized_ms")
    out = {"HTTP, small JPEGs (as measured)": plain}
    if real is not None and http is not None and azure is not None:
        out[f"adlfs, {args.blob_kb:g} KB blobs"] = real - http + azure
        if resized is not None and plain is not None:
            out[f"adlfs, {args.blob_kb:g} KB, max_image_side={args.resize}"] = real - http + azure + resized - plain
    return {k: v for k, v in out.items() if v is not None}


def model(cpu_ms: dict[str, float], in_flight: float, latencies_ms: list[float], workers: list[int]) -> list[dict]:
    """Hours for the real train split on N workers (one core each) for each per-image CPU cost c:
    rate = min(N / (L / k + c), account requests/s, account egress / mean blob size).
    """
    egress = ACCOUNT_EGRESS_GBPS * 1e9 / 8 / (TRAIN_BYTES / TRAIN_BLOBS)
    rows = []
    for latency in latencies_ms:
        for name, cost in cpu_ms.items():
            wait, work = latency / 1000 / in_flight, cost / 1000
            for n in workers:
                limits = {"latency" if wait > work else "CPU": n / (wait + work),
                          "account requests/s": ACCOUNT_REQUESTS_PER_S, "account egress": egress}  # fmt: skip
                bound = min(limits, key=lambda k: limits[k])
                rows.append({"latency_ms": latency, "cost": name, "cpu_ms": cost, "workers": n, "bound": bound,
                             "images_per_s": limits[bound], "hours": TRAIN_BLOBS / limits[bound] / 3600,
                             "account_bound_from": ACCOUNT_REQUESTS_PER_S * (wait + work)})  # fmt: skip
    return rows


def knees(points: list[dict]) -> list[dict[str, Any]]:
    """Per latency and process count: the concurrency up to which the rate stays within 20% of c / latency, the
    first one below it, and the best rate (the plateau), against the zero-latency rate (the CPU bound).
    """
    out = []
    for latency in sorted({p["latency_ms"] for p in points if p["latency_ms"]}):
        for procs in sorted({p["procs"] for p in points}):
            line = sorted((p for p in points if p["latency_ms"] == latency and p["procs"] == procs),
                          key=lambda p: p["concurrency"])  # fmt: skip
            cpu = [p["images_per_s"] for p in points if p["latency_ms"] == 0 and p["procs"] == procs]
            below = [p["concurrency"] for p in line if p["images_per_s"] < 0.8 * p["bound_latency"]]
            follows = [p["concurrency"] for p in line if not below or p["concurrency"] < min(below)]
            if line:
                out.append({"latency_ms": latency, "procs": procs, "follows_up_to": max(follows, default=None),
                            "knee": min(below, default=None), "plateau": max(p["images_per_s"] for p in line),
                            "cpu_bound": max(cpu, default=None)})  # fmt: skip
    return out


def plot(points: list[dict], prepares: list[dict], in_flight: int, path: Path, title: str) -> None:
    """Images/s against concurrency (log-log), one line per latency and process count, c / latency dotted."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    latencies = sorted({p["latency_ms"] for p in points})
    colours = dict(zip(latencies, ("black", "tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False))
    for latency in latencies:
        colour = colours.get(latency, "grey")
        for procs in sorted({p["procs"] for p in points}):
            line = sorted((p for p in points if p["latency_ms"] == latency and p["procs"] == procs),
                          key=lambda p: p["concurrency"])  # fmt: skip
            if line:
                ax.plot([p["concurrency"] for p in line], [p["images_per_s"] for p in line], color=colour,
                        marker="o" if procs == 1 else "s", linestyle="-" if procs == 1 else "--", markersize=4,
                        label=f"{latency:g} ms, {procs} process{'es' if procs > 1 else ''}")  # fmt: skip
        if latency:
            cs = sorted({p["concurrency"] for p in points})
            ax.plot(cs, [1000 * c / latency for c in cs], color=colour, linestyle=":", linewidth=1)
        rates = [r["images_per_s"] for r in prepares if r["latency_ms"] == latency and r["kind"] == "images"]
        if rates:
            ax.plot([in_flight], rates[:1], color=colour, marker="*", markersize=12, linestyle="none",
                    label=f"prepare, 1 process (up to {in_flight} in flight), {latency:g} ms")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent fetches (processes x requests in flight); dotted: concurrency / latency")
    ax.set_ylabel("images/s")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from inat_hf.manifest.examples import FETCH_AHEAD, FETCH_WORKERS
    from inat_hf.replica import write_sample
    from inat_hf.testing.azurite import AzuriteNotInstalled

    work = Path(tempfile.mkdtemp(prefix="inat-bench-latency-"))
    data = Path(args.data) if args.data else work / "replica"
    points: list[dict] = []
    prepares: list[dict] = []
    azure, clients = None, None
    try:
        if not (data / "train.json").is_file():
            write_sample(str(data), scale=args.scale)
        names = sorted(p.relative_to(data).as_posix() for s in ("train", "val") for p in (data / s).rglob("*.jpg"))
        cpu_bound: dict[tuple[int, int], float] = {}
        clients = Clients(max(args.procs))
        for i, latency in enumerate(sorted(args.latency_ms)):  # zero first: its rates size the later points
            with LatencyBlobServer(data, latency / 1000, args.server_procs) as server:
                points += curve(args, clients, server, names, latency / 1000, cpu_bound)
                if args.prepare:
                    prepares += prepare_runs(args, clients, data, work, server, latency / 1000, warm=i == 0)
        if args.azurite:
            try:
                azure = azure_client_cost(args, clients, data, work, names)
            except AzuriteNotInstalled as err:
                print(f"no adlfs measure: {err}")
    finally:
        if clients is not None:
            clients.close()
        shutil.rmtree(work, ignore_errors=True)
    parts = costs(points, prepares, azure)
    nominal = FETCH_WORKERS * FETCH_AHEAD
    in_flight, costs_ms = parts.get("in_flight") or nominal, scenarios(parts, args)
    summary = {"bench": "latency", "cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
               "images": len(names), "server_procs": args.server_procs, "points": points, "knees": knees(points),
               "prepare": prepares, "azure": azure, "cpu_ms_per_image": parts, "in_flight_nominal": nominal,
               "model": model(costs_ms, in_flight, args.model_latency_ms, args.model_workers)}  # fmt: skip
    report(summary, args)
    return summary


def report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the tables, write ``bench_latency.json`` and the plot."""
    print(f"\n{'latency':>8}{'procs':>6}{'slots':>6}{'c':>5}{'images/s':>10}{'c/lat':>9}{'ratio':>7}"
          f"{'client ms':>10}{'server ms':>10}")  # fmt: skip
    for p in summary["points"]:
        ideal = f"{p['bound_latency']:,.0f}" if p["latency_ms"] else ""
        ratio = f"{p['images_per_s'] / p['bound_latency']:.2f}" if p["latency_ms"] else ""
        print(f"{p['latency_ms']:>8g}{p['procs']:>6}{p['slots']:>6}{p['concurrency']:>5}{p['images_per_s']:>10,.0f}"
              f"{ideal:>9}{ratio:>7}{p['client_cpu_ms']:>10.3f}{p['server_cpu_ms']:>10.3f}")  # fmt: skip
    for k in summary["knees"]:
        print(f"latency {k['latency_ms']:g} ms, {k['procs']} process(es): within 20% of c/latency up to c = "
              f"{k['follows_up_to']}, first below at c = {k['knee']}; best {k['plateau']:,.0f} images/s "
              f"(zero latency: {k['cpu_bound'] or 0:,.0f})")  # fmt: skip
    parts = summary["cpu_ms_per_image"]
    print("CPU ms per image, in flight:", {k: None if v is None else round(v, 3) for k, v in parts.items()})
    print(f"\nmodel: {TRAIN_BLOBS:,} blobs, {TRAIN_BYTES / 1e9:.0f} GB; {ACCOUNT_REQUESTS_PER_S:,} requests/s, "
          f"{ACCOUNT_EGRESS_GBPS} Gbps; k = {parts.get('in_flight') or summary['in_flight_nominal']:.1f}")  # fmt: skip
    for m in summary["model"]:
        print(f"  {m['latency_ms']:>3g} ms  {m['cost']:<40} ({m['cpu_ms']:.2f} ms)  N={m['workers']:>2}: "
              f"{m['images_per_s']:>8,.0f} images/s, {m['hours']:.2f} h ({m['bound']})")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_latency.json").write_text(json.dumps(summary, indent=1) + "\n")
    title = (f"fetch_many over HTTP, latency injected by a local server ({summary['images']:,} small JPEGs); "
             f"{summary['cpus']} cores, load {summary['load_average'][0]:.1f}")  # fmt: skip
    path = Path(args.plot or out / "bench_latency.png")
    plot(summary["points"], summary["prepare"], summary["in_flight_nominal"], path, title)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("points", "model")}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", default="bench_out/small", help="replica folder (written when missing)")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 20, 50])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="client processes")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--max-slots", type=int, default=64, help="most requests in flight per process")
    parser.add_argument("--seconds", type=float, default=0.8, help="aimed duration of a point")
    parser.add_argument("--max-images", type=int, default=4000, help="most images fetched in a point")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--server-procs", type=int, default=1)
    parser.add_argument("--resize", type=int, default=224, help="max_image_side of the resizing prepare run")
    parser.add_argument("--blob-kb", type=float, default=83.4, help="real mean blob size (224 GB / 2,686,843)")
    parser.add_argument("--azure-images", type=int, default=500, help="blobs uploaded to Azurite")
    parser.add_argument("--no-prepare", dest="prepare", action="store_false")
    parser.add_argument("--no-azurite", dest="azurite", action="store_false")
    parser.add_argument("--model-latency-ms", type=float, nargs="+", default=[20, 50])
    parser.add_argument("--model-workers", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--out", default=os.environ.get("OUT", "bench_out/latency"))
    parser.add_argument("--plot", help="where the PNG goes (default OUT/bench_latency.png)")
    parser.add_argument("--dry", action="store_true", help="tiny replica, a few points, no Azurite: does it run")
    args = parser.parse_args(argv)
    if args.dry:
        args.data, args.scale, args.latency_ms, args.procs = None, "tiny", [0, 20], [1, 2]
        args.concurrency, args.repeat, args.seconds, args.azurite = [1, 8], 1, 0.3, False
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
