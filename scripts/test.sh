#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run lint and the whole test suite.
# Used by the README and by .ci/run. Needs python3 (3.10+), node and npm; reaches only the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# torch first: 2.13.0 is the CPU build this machine image keeps on disk (any other torch spec would
# download a CUDA build of several GB); then the package with its dev, training and dask extras.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev,train,dask]"
# flwr-datasets declares datasets<5 but works on datasets 5: --no-deps keeps the current datasets.
python -m pip install --quiet --no-deps "flwr-datasets==0.6.1"
# The Flower simulation extra (flwr 1.42 with Ray 2.55). flwr does not depend on datasets, so this leaves
# datasets 5 in place; it pins packaging<26 and typer<0.21, which pip downgrades (datasets, transformers,
# dask and pytest work with both). The check below fails the run if datasets was changed after all.
python -m pip install --quiet -e ".[flower]"
python - <<'PY'
import datasets
if int(datasets.__version__.split(".")[0]) < 5:
    raise SystemExit(f"installing flwr changed datasets to {datasets.__version__}; the tests need datasets 5")
PY

# Azurite, the Azure Blob Storage emulator the tests start (3.35.0 is the last release that runs on Node 20).
if [ ! -x .tools/node_modules/.bin/azurite-blob ]; then
  npm install --prefix .tools --no-audit --no-fund --silent azurite@3.35.0
fi
export AZURITE_BLOB_BIN="$PWD/.tools/node_modules/.bin/azurite-blob"

# Lint (ruff, with numpy-style docstrings on public names) and types (mypy over inat_hf and inaturalist_fl.py).
ruff check inat_hf tests scripts inaturalist_fl.py
ruff format --check inat_hf tests scripts inaturalist_fl.py
mypy

set +e
python -m pytest -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
