#!/usr/bin/env bash
# Install what is missing, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PYTHON=${PYTHON:-python3}
export IRIS_PROGRESS=0
$PYTHON -m ruff check iris tests benchmarks
$PYTHON -m mypy
$PYTHON -m pytest -q "$@"
