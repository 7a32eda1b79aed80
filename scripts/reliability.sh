#!/usr/bin/env bash
# Regenerate RELIABILITY.md: run the reliability tests (storage faults against Azurite, hostile input, secrets,
# determinism) and write the table of what each checked case expected and observed. The ordinary test run
# never writes it. Needs the test environment of scripts/test.sh (.venv and Azurite under .tools).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export AZURITE_BLOB_BIN="${AZURITE_BLOB_BIN:-$PWD/.tools/node_modules/.bin/azurite-blob}"
modules=$(python -c "import sys; sys.path.insert(0, 'tests'); import reliability; print(' '.join(f'tests/{m}.py' for m in reliability.RELIABILITY_MODULES))")
python -m pytest -q $modules --reliability-report RELIABILITY.md "$@"
