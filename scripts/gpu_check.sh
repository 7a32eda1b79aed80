#!/usr/bin/env bash
# The GPU path, measured: one short script (under 8 minutes on one GPU) that writes $OUT/gpu_check.json and
# $OUT/gpu_check.log. Results go in BENCHMARKS.md ("The GPU path").
#
#   OUT=out/gpu scripts/gpu_check.sh                 # on a GPU machine
#   OUT=out/gpu scripts/gpu_check.sh --cpu-smoke     # the same steps at tiny sizes, on CPU (checks the script)
#   PYTHON=.venv/bin/python ...                      # the interpreter to use (default python3)
#
# Steps, each timed (wall seconds in the JSON):
#   1. install what is missing: the package with its flower extra, from $WHEELS (a folder of wheels, for a
#      machine without a registry: pip download them elsewhere) or from the registry; torch, transformers and
#      the CUDA stack are the machine's own and are not reinstalled;
#   2. write the small replica (images up to 500 px) and prepare family_user with the builder;
#   3. scripts/finetune_vit.py --bench-pipeline: ViT-B/16 (random weights, 224 px) training images/s with
#      bf16 autocast, and the input pipeline's images/s with 0, 4, 8 and 14 DataLoader workers (the
#      ViTImageProcessor path and the fast ImageTransform);
#   4. scripts/finetune_vit.py --mode fedavg, 3 rounds of ViT-B/16 on the small replica;
#   5. scripts/flower_sim.py, 2 rounds through flwr.simulation.run_simulation (Ray);
#   6. inat-fl baselines: the baselines grid with ViT-B/16 (random weights) on the small replica, at a size a
#      GPU finishes in minutes (3 configs x central, FedAvg, FedAdam; 5 rounds): $OUT/baselines/results.md.
# The JSON names the bottleneck: the pipeline with every core (best worker count) against the GPU's step rate.
# A step that fails is recorded with its exit status and the tail of its log; the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
if [ "${1:-}" = "--cpu-smoke" ]; then SMOKE=1; elif [ -n "${1:-}" ]; then
  echo "usage: OUT=DIR $0 [--cpu-smoke]" >&2
  exit 2
fi
OUT=${OUT:-out/gpu_check}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-$OUT/work}
mkdir -p "$WORK"
LOG="$OUT/gpu_check.log"
: >"$LOG"
STEPS="$OUT/steps.jsonl"
: >"$STEPS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$SMOKE" = 1 ]; then
  MODEL=tiny BATCH=8 BENCH_WORKERS=0,1 BENCH_BATCHES=2 BENCH_STEPS=1 WORKERS=0
  ROUNDS_ARGS="--clients-per-round 2 --max-local-steps 2 --val-limit 32"
  FLOWER_ARGS="--num-supernodes 4 --clients-per-round 2 --max-local-steps 2 --val-limit 32 --client-gpus 0"
  SIDE_SET="--set max_image_side=64"
  BASELINES_ARGS="--model tiny --rounds 1 --clients-per-round 2 --val-limit 32 --client-cpus 1
    --configs family_user family_iid:num_partitions=8 --algorithms central fedavg"
else
  MODEL=base BATCH=128 BENCH_WORKERS=0,4,8,14 BENCH_BATCHES=10 BENCH_STEPS=10 WORKERS=8
  ROUNDS_ARGS="--clients-per-round 10 --val-limit 300"
  FLOWER_ARGS="--num-supernodes 20 --clients-per-round 4 --client-cpus 3 --client-gpus 0.25 --val-limit 300"
  SIDE_SET=""
  BASELINES_ARGS="--model base --rounds 5 --clients-per-round 10 --local-epochs 1 --val-limit 300 --client-cpus 3
    --configs family_user family_dirichlet:alpha=0.1 family_iid --algorithms central fedavg fedadam"
fi

step() {  # step NAME COMMAND...: run, log, record wall seconds and exit status
  local name=$1
  shift
  echo "=== $name: $*" | tee -a "$LOG"
  local start end status
  start=$(date +%s.%N)
  "$@" >>"$LOG" 2>&1
  status=$?
  end=$(date +%s.%N)
  "$PYTHON" - "$name" "$start" "$end" "$status" "$LOG" >>"$STEPS" <<'PY'
import json, sys
name, start, end, status, log = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
tail = open(log, encoding="utf-8", errors="replace").read()[-2000:] if status else ""
print(json.dumps({"step": name, "seconds": round(end - start, 2), "status": status, "log_tail": tail}))
PY
  echo "=== $name: exit $status, $(awk "BEGIN {print $end - $start}") s" | tee -a "$LOG"
  return 0
}

install() {
  if [ "$SMOKE" = 1 ]; then
    echo "cpu smoke: using the current environment"
  elif [ -n "${WHEELS:-}" ]; then
    "$PYTHON" -m pip install --no-index --find-links "$WHEELS" -e ".[flower]" &&
      "$PYTHON" -m pip install --no-index --find-links "$WHEELS" --no-deps "flwr-datasets==0.6.1"
  else
    "$PYTHON" -m pip install -e ".[flower]" && "$PYTHON" -m pip install --no-deps "flwr-datasets==0.6.1"
  fi
  "$PYTHON" -c "import datasets, flwr, ray, torch, transformers; print('datasets', datasets.__version__, 'flwr', \
flwr.__version__, 'ray', ray.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
}

env_info() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  nproc
  "$PYTHON" - <<'PY' >"$OUT/env.json" || return 1
import json, os, platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "gpu": gpu, "cpus": os.cpu_count(),
                  "bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())}))
PY
  cat "$OUT/env.json"
}

data() {
  "$PYTHON" -m inat_hf.cli sample "$WORK/small" --scale small &&
    "$PYTHON" - "$WORK" "$SMOKE" <<'PY'
import sys
from inaturalist_fl import INaturalistFL
work, smoke = sys.argv[1], sys.argv[2] == "1"
overrides = {"max_image_side": 64} if smoke else {}
builder = INaturalistFL(config_name="family_user", data_dir=f"{work}/small", cache_dir=f"{work}/cache", **overrides)
builder.download_and_prepare(num_proc=4)
print({name: builder.as_dataset(name).num_rows for name in ("train", "validation")})
PY
}

DATA=(--data-dir "$WORK/small" --cache-dir "$WORK/cache")
# shellcheck disable=SC2206  # word splitting of the option strings is intended
SIDE=($SIDE_SET)

step install install
step env env_info
step data data
step bench_pipeline "$PYTHON" scripts/finetune_vit.py "${DATA[@]}" "${SIDE[@]}" --bench-pipeline \
  --bench-models "$MODEL" --bench-transforms processor,fast --bench-workers "$BENCH_WORKERS" \
  --batch-size "$BATCH" --bench-batches "$BENCH_BATCHES" --bench-steps "$BENCH_STEPS" --out "$OUT/bench"
# shellcheck disable=SC2086
step finetune_fedavg "$PYTHON" scripts/finetune_vit.py "${DATA[@]}" "${SIDE[@]}" --size "$MODEL" --mode fedavg \
  --rounds 3 $ROUNDS_ARGS --batch-size 32 --workers "$WORKERS" --out "$OUT/fedavg"
# shellcheck disable=SC2086
step flower_sim "$PYTHON" scripts/flower_sim.py "${DATA[@]}" "${SIDE[@]}" --size "$MODEL" --rounds 2 \
  $FLOWER_ARGS --batch-size 32 --workers 2 --out "$OUT/flower"
# shellcheck disable=SC2086
step baselines "$PYTHON" -m inat_hf.cli baselines "${DATA[@]}" $BASELINES_ARGS --out "$OUT/baselines" \
  --measured-on "the synthetic small replica (gpu_check.sh, $MODEL ViT, random weights)"

"$PYTHON" - "$OUT" "$SMOKE" <<'PY'
import json, pathlib, sys
out, smoke = pathlib.Path(sys.argv[1]), sys.argv[2] == "1"
def load(path):
    return json.loads(path.read_text()) if path.exists() else None
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
bench = load(out / "bench" / "bench.json")
summary = {"mode": "cpu-smoke" if smoke else "gpu", "env": load(out / "env.json"), "steps": steps, "bench": bench,
           "fedavg": load(out / "fedavg" / "metrics.json"), "flower": load(out / "flower" / "metrics.json"),
           "baselines": (out / "baselines" / "results.md").read_text() if (out / "baselines" / "results.md").exists()
           else None}
if bench and bench["rows"]:
    fast = [r for r in bench["rows"] if r["transform"] == "fast"] or bench["rows"]
    best = max(fast, key=lambda r: r["pipeline_images_per_s"])
    model_rate = best["model_images_per_s"]
    summary["bottleneck"] = {
        "model_images_per_s": model_rate,
        "best_pipeline_images_per_s": best["pipeline_images_per_s"],
        "best_pipeline_workers": best["workers"],
        "bound_by": "input pipeline" if best["pipeline_images_per_s"] < model_rate else "model step",
    }
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps({k: summary.get(k) for k in ("mode", "env", "bottleneck")}))
print("steps:", ", ".join(f"{s['step']} {s['seconds']} s (exit {s['status']})" for s in steps))
failed = [s["step"] for s in steps if s["status"]]
sys.exit(1 if failed else 0)
PY
