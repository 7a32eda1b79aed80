#!/usr/bin/env bash
# The whole job in one run, stage by stage: the replica with images, check, prepare on a real Dask cluster
# (killed part-way and resumed), load, one FedAvg round and one Flower round.
#
#   bash scripts/full_run.sh OUT [--scale full|small|tiny] [--image-side 32]
#
# Resumable by stage: a stage whose report (OUT/reports/N-name.json) exists is skipped; rerun the same command
# after a failure or a kill. Each stage logs to OUT/logs/N-name.log and reports (JSON) its seconds, the peak RSS
# of every process it started, its rows, bytes and checks; OUT/summary.md is the table of all stages.
# Needs the package with its dask, train and flower extras (pip install -e ".[dask,train,flower]"); uses the
# python, dask and inat-fl of the active environment (PYTHON=... to choose another python).
# The full scale takes the machine for about an hour (55 min on an idle 2-core machine, 85 min on a busy one)
# and about 22 GB of disk: 15 GB for the replica (3.3M small files), 3 GB prepared, 3 GB of datasets cache.
set -euo pipefail

usage() { echo "usage: bash scripts/full_run.sh OUT [--scale full|small|tiny] [--image-side PX]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUT=$1; shift
SCALE=full; SIDE=32
while [ $# -gt 0 ]; do
  case $1 in
    --scale) SCALE=${2:?}; shift 2 ;;
    --image-side) SIDE=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
# Rows per prepared file and when to kill the prepare run (in complete files), per scale: the kill must fall
# part-way (full: about 1,354 files planned; small: about 16; tiny: about 18); clients of the training rounds.
case $SCALE in
  full) FILE_ROWS=2000; KILL_AFTER=300; VAL_LIMIT=2000; NODES=100; PER_ROUND=10 ;;
  small) FILE_ROWS=200; KILL_AFTER=4; VAL_LIMIT=300; NODES=20; PER_ROUND=10 ;;
  tiny) FILE_ROWS=10; KILL_AFTER=3; VAL_LIMIT=40; NODES=4; PER_ROUND=4 ;;
  *) usage ;;
esac

PYTHON=${PYTHON:-python}
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
command -v dask >/dev/null || [ -x "$(dirname "$(command -v "$PYTHON")")/dask" ] ||
  { echo "full_run: the dask command is not found; pip install -e '.[dask]'" >&2; exit 2; }
mkdir -p "$OUT/reports" "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
DATA=$OUT/replica PREPARED=$OUT/prepared CACHE=$OUT/cache HF_CACHE=$OUT/hf-cache
INAT=("$PYTHON" -m inat_hf.cli)
RUN=("$PYTHON" -m inat_hf.fullrun run)

# stage NAME COMMAND...: run COMMAND unless OUT/reports/NAME.json exists; its output goes to OUT/logs/NAME.log.
stage() {
  local name=$1; shift
  if [ -f "$OUT/reports/$name.json" ]; then
    echo "[$name] done before (report $OUT/reports/$name.json): skipped"
    return
  fi
  echo "[$name] running; log: $OUT/logs/$name.log"
  local began=$SECONDS
  if ! "$@" >"$OUT/logs/$name.log" 2>&1; then
    echo "[$name] FAILED after $((SECONDS - began)) s; the end of $OUT/logs/$name.log:" >&2
    tail -n 30 "$OUT/logs/$name.log" >&2
    exit 1
  fi
  echo "[$name] done in $((SECONDS - began)) s"
}
report() { echo "$OUT/reports/$1.json"; }

stage 1-replica "${RUN[@]}" --stage 1-replica --report "$(report 1-replica)" --kind replica --data "$DATA" -- \
  "${INAT[@]}" sample "$DATA" --scale "$SCALE" --image-side "$SIDE" --no-summary

stage 2-check "${RUN[@]}" --stage 2-check --report "$(report 2-check)" --kind check --data "$OUT/check.json" \
  --stdout "$OUT/check.json" -- "${INAT[@]}" check "$DATA" --json

stage 3-prepare "$PYTHON" -m inat_hf.fullrun prepare --report "$(report 3-prepare)" --data "$DATA" \
  --out "$PREPARED" --config family_user --cache-dir "$CACHE" --file-rows "$FILE_ROWS" --kill-after "$KILL_AFTER"

stage 4-load "${RUN[@]}" --stage 4-load --report "$(report 4-load)" --kind load --data "$OUT/load.json" -- \
  "$PYTHON" -m inat_hf.fullrun load "$PREPARED" --config family_user --cache-dir "$HF_CACHE" --result "$OUT/load.json"

stage 5-fedavg "${RUN[@]}" --stage 5-fedavg --report "$(report 5-fedavg)" --kind train \
  --data "$OUT/fedavg/metrics.json" -- "$PYTHON" "$SCRIPTS/finetune_vit.py" --export "$PREPARED" \
  --config family_user --cache-dir "$HF_CACHE" --tiny --mode fedavg --rounds 1 --clients-per-round "$PER_ROUND" \
  --val-limit "$VAL_LIMIT" --out "$OUT/fedavg"

stage 6-flower "${RUN[@]}" --stage 6-flower --report "$(report 6-flower)" --kind train \
  --data "$OUT/flower/metrics.json" -- "$PYTHON" "$SCRIPTS/flower_sim.py" --export "$PREPARED" \
  --config family_user --cache-dir "$HF_CACHE" --tiny --rounds 1 --num-supernodes "$NODES" --clients-per-round "$PER_ROUND" \
  --val-limit "$VAL_LIMIT" --out "$OUT/flower"

"$PYTHON" -m inat_hf.fullrun summary "$OUT/reports" --out "$OUT/summary.md" \
  --title "Full run at scale $SCALE (image side $SIDE px), $(nproc) CPUs, $(date -u +%Y-%m-%d)"
