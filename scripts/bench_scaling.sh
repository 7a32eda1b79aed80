#!/usr/bin/env bash
# Scaling of `inat-fl prepare` with 1, 2, 4 and 8 Dask worker processes, for a 16-core machine (under 8 minutes).
# Images come from an HTTP blob server on the same machine (4 processes); writes bench_scaling.json and
# bench_scaling.log under $OUT (default bench_out/scaling). Target: at least 0.7 of linear up to 8 workers.
#   OUT=/tmp/out scripts/bench_scaling.sh                 # the full run (1 2 4 8)
#   OUT=/tmp/out scripts/bench_scaling.sh --workers 1 2   # a small machine
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench_out/scaling}
mkdir -p "$OUT"
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 470 "$PYTHON" scripts/bench_scaling.py --out "$OUT" "$@" \
  2>&1 | tee "$OUT/bench_scaling.log"
