"""The mask samples' uniform draws (kcs.noise): reproducible from torch's seed, uniform, and
independent of how many threads fill them."""

import math

import pytest
import torch

from kcs import noise


def _draw(n: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return noise.uniform_(torch.empty(n))


def test_draws_follow_torchs_seed_and_advance_it():
    n = 3 * noise.CHUNK + 17  # several streams, the last one partial
    a, b = _draw(n, 0), _draw(n, 0)
    assert torch.equal(a, b)
    assert not torch.equal(a, _draw(n, 1))
    torch.manual_seed(0)
    first, second = noise.uniform_like(a), noise.uniform_like(a)
    assert torch.equal(first, a) and not torch.equal(first, second)
    # chunks come from distinct streams: no chunk repeats another
    assert not torch.equal(a[: noise.CHUNK], a[noise.CHUNK: 2 * noise.CHUNK])


def test_draws_do_not_depend_on_the_thread_count(monkeypatch):
    n = 2 * noise.CHUNK + 5
    reference = _draw(n, 3)
    monkeypatch.setattr(noise, "_pool", None)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(_draw(n, 3), reference)
    finally:
        torch.set_num_threads(threads)
        noise._pool = None


def test_draws_are_uniform_on_the_unit_interval():
    u = _draw(2 * noise.CHUNK, 5)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    # mean and variance of U(0, 1) within 6 standard errors
    n = u.numel()
    assert abs(float(u.mean()) - 0.5) < 6 * math.sqrt(1 / 12 / n)
    assert float(u.var()) == pytest.approx(1 / 12, rel=0.01)
    counts = torch.histc(u, bins=10, min=0.0, max=1.0)
    assert float((counts / n - 0.1).abs().max()) < 0.002


def test_other_tensors_use_torchs_generator():
    torch.manual_seed(0)
    doubles = noise.uniform_(torch.empty(1000, dtype=torch.float64))
    torch.manual_seed(0)
    assert torch.equal(doubles, torch.empty(1000, dtype=torch.float64).uniform_())
