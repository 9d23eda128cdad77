"""The GPU tier (`pytest -m gpu`): skipped where CUDA does not work.

Where it does, the unit tests' tiny models load on the GPU too (kcs.models.resolve_device), so every
core test runs there; this module makes sure the GPU is really used and that the cached mask step
equals the uncached one on it (an H200 ran the core tests: README, benchmarks/gpu.sh).
"""

import pytest
import torch

from core_fixtures import make_tiny_model
from test_core_prefix_cache import _losses_and_gradients, assert_same_step

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def deep_gpt2_on_gpu(tmp_path_factory, tiny_data):
    return make_tiny_model(tmp_path_factory.mktemp("gpu_gpt2"), "gpt2", tiny_data["text"], layers=4)


def test_cached_and_uncached_steps_agree_on_the_gpu(deep_gpt2_on_gpu, tiny_data):
    torch.cuda.reset_peak_memory_stats()
    *cached, _ = _losses_and_gradients(deep_gpt2_on_gpu, tiny_data["text"], 64)
    *plain, _ = _losses_and_gradients(deep_gpt2_on_gpu, tiny_data["text"], 0)
    assert all(grad.device.type == "cuda" for grad in cached[2])
    assert torch.cuda.max_memory_allocated() > 0
    assert_same_step(cached, plain)
