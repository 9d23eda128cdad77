#!/usr/bin/env bash
# Runs once inside the new conda environment (Snakemake's post-deploy hook): install kcs itself
# from the checkout, without touching the pinned dependencies. Snakemake runs it from the working
# directory, which must be the repository root (as every pipeline command in docs/pipeline.md).
set -euo pipefail
if ! grep -q '^name = "kcs"' pyproject.toml 2>/dev/null; then
    echo "kcs.post-deploy.sh: run snakemake from the kcs repository root (no kcs pyproject.toml in $PWD)" >&2
    exit 1
fi
python -m pip install --no-deps --editable .
