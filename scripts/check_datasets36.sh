#!/usr/bin/env bash
# Check that inaturalist_fl.py still works as a loading script under datasets 3.6.0 (the last release that
# runs them): load_dataset("inaturalist_fl.py", "family_user", data_dir=..., trust_remote_code=True) on a
# tiny replica, split sizes checked against the replica's counts (scripts/check_datasets36.py).
#
# Makes its own virtual environment (default .venv36 in the repository root; VENV36=path to change) with
# datasets==3.6.0, the fsspec it pins, an adlfs that works with that fsspec, the other runtime dependencies,
# and this package with --no-deps (its pyproject asks for datasets>=4). Exits non-zero on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
# its own environment only: a PYTHONPATH inherited from the caller (Ray sets one for its workers in the
# process that ran a Flower simulation) would put that environment's datasets first
unset PYTHONPATH PYTHONHOME

PYTHON=${PYTHON:-python3}
VENV=${VENV36:-.venv36}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# pip picks the fsspec that datasets 3.6.0 allows (<=2025.3.0) and an adlfs release that accepts it.
"$VENV/bin/python" -m pip install --quiet "datasets==3.6.0" adlfs pyarrow pillow numpy orjson matplotlib
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "$VENV/bin/python" scripts/check_datasets36.py
