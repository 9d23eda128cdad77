#!/usr/bin/env bash
# The project's test command (README, .ci/run): lint first, then every test tier with the 20
# slowest tests listed. Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slurm"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m ruff check .
"$PY" -m snakefmt --check Snakefile rules/
"$PY" -m pytest --durations=20 "$@"
