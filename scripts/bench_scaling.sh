#!/usr/bin/env bash
# Scaling of `inat-fl prepare` with 1, 2, 4 and 8 Dask worker processes, for a 16-core machine (under 8 minutes).
# Images come from an HTTP blob server on the same machine (4 processes); writes bench_scaling.json and
# bench_scaling.log under $OUT (default bench_out/scaling). Target: at least 0.7 of linear up to 8 workers.
# LATENCY=1 then also runs scripts/bench_latency.py (images/s against concurrent fetches when each GET waits 0, 20
# and 50 ms; under 8 minutes more), by default on a 16-core grid: 1 to 8 client processes, 1 to 512 fetches in
# flight, 4 server processes; LATENCY_ARGS replaces those options. Writes bench_latency.json, .png and .log.
#   OUT=/tmp/out scripts/bench_scaling.sh                 # the full run (1 2 4 8)
#   OUT=/tmp/out LATENCY=1 scripts/bench_scaling.sh       # and the latency curve
#   OUT=/tmp/out scripts/bench_scaling.sh --workers 1 2   # a small machine
#   OUT=/tmp/out LATENCY=1 LATENCY_ARGS=--dry scripts/bench_scaling.sh --workers 1 --repeat 1 --scale tiny  # smoke
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench_out/scaling}
mkdir -p "$OUT"
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 470 "$PYTHON" scripts/bench_scaling.py --out "$OUT" "$@" \
  2>&1 | tee "$OUT/bench_scaling.log"
if [ "${LATENCY:-0}" = 1 ]; then
  read -r -a latency_args <<< "${LATENCY_ARGS:---procs 1 2 4 8 --server-procs 4 --concurrency 1 4 16 64 128 256 512}"
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 470 "$PYTHON" scripts/bench_latency.py --out "$OUT" \
    "${latency_args[@]}" 2>&1 | tee "$OUT/bench_latency.log"
fi
