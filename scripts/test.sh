#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run lint and the tests on both `datasets` lines:
#  1. .venv, datasets 5 (what `pip install inaturalist-fl` gets), every extra: lint, types, the whole suite.
#  2. .venv-ds4, made as a Flower user makes it: this package and flwr-datasets==0.6.1 with pip's own
#     resolution, which gives datasets 4.8 (flwr-datasets requires datasets>=4,<5). It runs the tests of
#     what calls `datasets` (DATASETS4_TESTS below). DATASETS4=0 skips it (a quick local run).
# Used by the README and by .ci/run. Needs python3 (3.10+), node and npm; reaches only the package registries.
# Extra arguments go to pytest in the first job. pytest's exit status 5 (no test collected) fails the run.
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
from inat_hf.federated.compat import LINE
if LINE != 5:
    raise SystemExit(f"installing flwr changed datasets to line {LINE}; this job tests datasets 5")
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

# pytest in environment $1 with the other arguments; exit status 5 (no test collected) is a failure.
run_pytest() {
  local venv=$1 status=0
  shift
  "$venv/bin/python" -m pytest -q "$@" || status=$?
  if [ "$status" -eq 5 ]; then
    echo "pytest in $venv collected no tests: that is a failure" >&2
    return 1
  fi
  return "$status"
}

full=0
run_pytest .venv "$@" || full=$?
deactivate
if [ "${DATASETS4:-1}" = "0" ]; then
  exit "$full"
fi

# --- 2. datasets 4, as a Flower user installs it ---------------------------------------------------------
# The modules whose subject is a `datasets` API: the builder (GeneratorBasedBuilder, as_dataset, streaming),
# ClientData (Dataset slices and their private state), the export and `inat-fl prepare`'s output read back
# with load_dataset (normal and streaming, Image and ClassLabel features, attach_images), the Flower
# partitioner (with FederatedDataset), by_column batches (skipped on 4, with the reason) and the compat
# module itself. The rest need not run twice: they test our own code below `datasets` (metadata, storage,
# faults, partitions, the manifest, the replica, check, extract, the card text), or go through the same
# builder calls as test_builder (images_dir, train_mini, determinism), or need torch, transformers and Ray,
# which a Flower user's data environment does not have (training, the Flower simulation). "not slow" leaves
# out the datasets 3.6 check (its own venv) and the killed Dask run (Dask's process handling, not datasets).
DATASETS4_TESTS=(tests/test_datasets_compat.py tests/test_builder.py tests/test_clients.py tests/test_export.py
  tests/test_prepare.py tests/test_client_batches.py tests/test_flower.py)
DS4=.venv-ds4
if [ ! -x "$DS4/bin/python" ]; then
  "$PYTHON" -m venv "$DS4"
fi
"$DS4/bin/python" -m pip install --quiet --upgrade pip
# What a Flower user runs: pip resolves datasets (and pyarrow, fsspec) for both packages together.
"$DS4/bin/python" -m pip install --quiet -e . "flwr-datasets==0.6.1"
# Then what the tests need (pytest, Azure's SDK for Azurite) and the Dask extra for `inat-fl prepare`;
# none of them constrains datasets, and the check below fails the run if one changed it.
"$DS4/bin/python" -m pip install --quiet -e ".[test,dask]" "flwr-datasets==0.6.1"
"$DS4/bin/python" - <<'PY'
import datasets, fsspec, pyarrow
from inat_hf.federated.compat import LINE
print(f"datasets-4 job: datasets {datasets.__version__}, pyarrow {pyarrow.__version__}, fsspec {fsspec.__version__}")
if LINE != 4:
    raise SystemExit(f"pip resolved datasets line {LINE} next to flwr-datasets==0.6.1; this job tests datasets 4")
PY
ds4=0
run_pytest "$DS4" -m "not slow" "${DATASETS4_TESTS[@]}" || ds4=$?
if [ "$full" -ne 0 ] || [ "$ds4" -ne 0 ]; then
  echo "tests failed: datasets 5 job exit status $full, datasets 4 job exit status $ds4" >&2
  exit 1
fi
