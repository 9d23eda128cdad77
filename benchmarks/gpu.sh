#!/usr/bin/env bash
# The GPU table users ask for, in one run of a few minutes on one CUDA machine: seconds per mask
# step (cached / uncached) against a fine-tuning step, and peak GPU memory, for GPT-2 small to XL
# and SmolLM2-135M at the paper's batch sizes (random init: no download), then the tiny core tests
# on CUDA. Each part has its own time limit, so one that runs long or out of memory costs only itself.
#
#     bash benchmarks/gpu.sh OUT_DIR        # OUT_DIR gets one JSON per shape and the logs
set -uo pipefail
out=${1:?usage: benchmarks/gpu.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# GPT-2 XL at the paper's batches needs ~13 GB less fragmentation than the default allocator leaves
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
PYTHON=${PYTHON:-python3}
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PYTHON -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__)"
} >"$out/environment.txt" 2>&1
# The paper's batches; ControlLM pool of 200 blocks: a fully cached step costs the same for any
# pool that fits the budget, and 200 blocks of 512 tokens are cached in seconds.
for shape in ${SHAPES:-gpt2 smollm2-135m gpt2-medium gpt2-large gpt2-xl}; do
    timeout "${SHAPE_TIMEOUT:-100}" $PYTHON benchmarks/mask_step.py --data paper --device cuda --shape "$shape" \
        --controllm-blocks 200 --prefix-cache-mb 8192 --reference-cache-mb 8192 --warmup 2 --repeats 5 --no-eval \
        --out "$out/gpu-$shape.json" >>"$out/benchmark.log" 2>&1 || echo "$shape: exit $?" >>"$out/benchmark.log"
done
# the tiny models' masking, caches, noise and training on CUDA (the CLI tests start a process per call)
timeout "${TEST_TIMEOUT:-150}" $PYTHON -m pytest -q -p no:cacheprovider -rfE --durations=5 tests/test_core_masking.py \
    tests/test_core_prefix_cache.py tests/test_core_noise.py tests/test_core_training.py tests/test_core_step_evaluation.py >"$out/tests-cuda.log" 2>&1
echo "core tests on CUDA: exit $?" >>"$out/tests-cuda.log"
