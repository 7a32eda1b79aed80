"""Scaling of ``inat-fl prepare`` with the number of Dask worker processes (``scripts/bench_scaling.sh``).

Writes the replica (``--scale``, default ``small``: 2,997 JPEGs) to a local folder, serves its images over
HTTP from ``--server-procs`` processes of a small threaded file server sharing one port (``SO_REUSEPORT``: the
blob server of this machine; fsspec's HTTP filesystem reads it through ``inat_hf.storage`` like any other
store), then for each ``--workers`` count starts a ``LocalCluster`` of that many one-thread worker processes,
warms it (imports), and runs ``prepare`` ``--repeat`` times (fresh output each time, manifest cached). The rate
is images written per second from the first task submitted to the last file done (the report's
``images_per_s``); efficiency = rate(n) / (n * rate(1)). Writes ``bench_scaling.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_EFFICIENCY = 0.7


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection serves many images

    def log_message(self, format: str, *args: Any) -> None:
        return


def _serve(folder: str, port: int) -> None:
    handler = functools.partial(_Quiet, directory=folder)
    with _Server(("127.0.0.1", port), handler) as server:
        server.serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    import datasets
    from distributed import Client, LocalCluster

    from inat_hf.config import config_for
    from inat_hf.manifest import load_or_build_manifest
    from inat_hf.prepare import prepare
    from inat_hf.replica import write_sample

    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="inat-bench-scaling-"))
    port = free_port()
    servers = []
    results: list[dict[str, Any]] = []
    try:
        data = work / "replica"
        counts = write_sample(str(data), scale=args.scale)
        load_or_build_manifest(str(data), config_for("family_user"), cache_dir=str(work / "cache"))
        context = multiprocessing.get_context("spawn")
        servers = [
            context.Process(target=_serve, args=(str(data), port), daemon=True) for _ in range(args.server_procs)
        ]
        for process in servers:
            process.start()
        time.sleep(1.0)
        images = f"http://127.0.0.1:{port}"
        for n in args.workers:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
            with cluster, Client(cluster) as client:
                client.run(lambda: __import__("inat_hf.prepare.task"))
                rates = []
                for round_ in range(args.repeat):
                    out = work / f"out-{n}-{round_}"
                    report = prepare(str(out), str(data), ["family_user"], images_dir=images,
                                     cache_dir=str(work / "cache"), scheduler=client, file_rows=args.file_rows,
                                     progress=None)  # fmt: skip
                    rates.append(report["images_per_s"])
                    shutil.rmtree(out, ignore_errors=True)
                    print(f"{n} worker(s), round {round_ + 1}: {report['images_per_s']:,.0f} images/s", flush=True)
            results.append({"workers": n, "images_per_s": max(rates), "runs": rates})
    finally:
        for process in servers:
            process.terminate()
        shutil.rmtree(work, ignore_errors=True)
    base = next((r["images_per_s"] for r in results if r["workers"] == 1), None)
    for r in results:
        r["efficiency"] = None if base is None else r["images_per_s"] / (r["workers"] * base)
    summary = {
        "bench": "scaling",
        "scale": args.scale,
        "images": counts.jpegs_written,
        "file_rows": args.file_rows,
        "server_procs": args.server_procs,
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "results": results,
        "target_efficiency": TARGET_EFFICIENCY,
        "meets_target": all((r["efficiency"] or 0) >= TARGET_EFFICIENCY for r in results),
    }
    print(f"{'workers':>8}{'images/s':>10}{'efficiency':>11}")
    for r in results:
        eff = "" if r["efficiency"] is None else f"{r['efficiency']:.2f}"
        print(f"{r['workers']:>8}{r['images_per_s']:>10,.0f}{eff:>11}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_scaling.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--server-procs", type=int, default=4, help="processes of the HTTP blob server")
    parser.add_argument("--file-rows", type=int, default=60, help="rows per file (enough files for 8 workers)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", default=os.environ.get("OUT", "bench_out/scaling"))
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
