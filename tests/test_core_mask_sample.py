"""kcs.mask_sample: the rational form of the mask sample equals its definition, the fused CPU
kernels equal the torch executor bit for bit, and the per-step caches never serve a stale step."""

from __future__ import annotations

import pytest
import torch

from kcs import mask_sample
from kcs.masking import WeightMask
from kcs.models import load_model
from kcs.training import mask_optimiser


def _operands(shape=(64, 48), seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=gen) * 6
    logits.view(-1)[:6] = torch.tensor([0.0, 1e-6, -1e-6, 40.0, -40.0, 17.0])  # ties and saturated sigmoids
    uniform = torch.rand(shape, generator=gen)
    uniform.view(-1)[6:9] = torch.tensor([0.0, 1.0 - 2**-24, 0.5])  # the ends of U[0, 1) and the middle
    return logits, uniform, torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)


def _p_q(logits, temperature):
    return torch.sigmoid(logits / temperature), torch.sigmoid(logits / -temperature)


@pytest.mark.parametrize("invert", [True, False])
@pytest.mark.parametrize("noise_scale,temperature", [(1.0, 1.0), (0.4, 1.0), (1.0, 2.0), (0.0, 1.0)])
def test_the_rational_form_is_the_gumbel_sigmoid_sample(invert, noise_scale, temperature):
    logits, uniform, _, _ = _operands()
    # the definition (docs/method.md 1.4), in float64 from u clamped in float32: s = sigmoid((l + c logit(u)) / tau)
    clamped = uniform.clamp(mask_sample.NOISE_EPS, 1 - mask_sample.NOISE_EPS).double()
    soft = torch.sigmoid((logits.double() + noise_scale * torch.logit(clamped)) / temperature)
    p, q = _p_q(logits, temperature)
    v = None if noise_scale == 0 else mask_sample.noise_to_v(uniform.clone(), noise_scale, temperature)
    hard = mask_sample.select_torch(torch.ones_like(logits), p, q, v, invert)
    expected = (soft <= 0.5) if invert else (soft > 0.5)
    clear = (soft - 0.5).abs() > 1e-5  # float32 may round a sample that sits on the threshold either way
    assert clear.float().mean() > 0.95
    assert torch.equal(hard.bool()[clear], expected[clear])
    slope = mask_sample.slope_torch(p, q, v, invert, temperature)
    reference = (-1 if invert else 1) * soft * (1 - soft) / temperature
    torch.testing.assert_close(slope.double(), reference, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("invert", [True, False])
@pytest.mark.parametrize("stochastic", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_the_fused_cpu_kernels_equal_the_torch_executor_bit_for_bit(invert, stochastic, temperature):
    logits, uniform, weight, grad_weight = _operands(shape=(300, 257))
    p, q = _p_q(logits, temperature)
    v = mask_sample.noise_to_v(uniform, 1.0, temperature) if stochastic else None
    assert mask_sample.fused_applies(weight, p)
    fused = mask_sample.select_fused(weight, p, q, v, invert)
    assert torch.equal(fused, mask_sample.select_torch(weight, p, q, v, invert))
    assert 0 < int((fused == 0).sum()) < fused.numel()
    grad = mask_sample.grad_fused(grad_weight, weight, p, q, v, invert, temperature)
    assert torch.equal(grad, grad_weight * weight * mask_sample.slope_torch(p, q, v, invert, temperature))
    assert torch.isfinite(grad).all()


def test_the_kernels_are_used_only_where_they_apply():
    weight, p = torch.zeros(4, 3), torch.zeros(4, 3)
    assert mask_sample.fused_applies(weight, p)
    assert not mask_sample.fused_applies(weight, torch.zeros(4, 1))  # a neuron mask broadcasts
    assert not mask_sample.fused_applies(weight.double(), p.double())
    assert not mask_sample.fused_applies(torch.zeros(3, 4).t(), torch.zeros(4, 3))  # not contiguous


def _tiny_mask(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    mask = WeightMask.for_model(model, [1])
    return model, mask, [dict(model.named_parameters())[name] for name in mask.names]


def test_keep_probabilities_follow_every_optimiser_step_and_in_place_write(tiny_model_dir):
    _, mask, _ = _tiny_mask(tiny_model_dir)
    optimiser = mask_optimiser(mask, lr=0.5)  # fused Adam: its step does not bump version counters itself
    before = [p.clone() for p in mask.keep_probabilities()[0]]
    for logits in mask.logits:
        logits.grad = torch.ones_like(logits)
    optimiser.step()
    after = mask.keep_probabilities()[0]
    assert all(torch.equal(p, torch.sigmoid(logits.detach())) for p, logits in zip(after, mask.logits))
    assert not torch.equal(before[0], after[0])
    with torch.no_grad():
        mask.logits[0].fill_(3.0)
    assert torch.equal(mask.keep_probabilities()[0][0], torch.sigmoid(torch.full_like(before[0], 3.0)))


def test_a_backward_after_the_step_that_changed_the_logits_is_refused(tiny_model_dir):
    # the noise buffers and p, q are reused from step to step: a stale graph must not read them
    _, mask, weights = _tiny_mask(tiny_model_dir)
    optimiser = mask_optimiser(mask, lr=0.5)
    stale = mask.masked_weight(0, weights[0].detach(), "remaining", True).sum()
    mask.masked_weight(0, weights[0].detach(), "remaining", True).sum().backward()
    optimiser.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        stale.backward()


def test_each_sample_of_a_step_gets_its_own_noise_and_the_next_step_reuses_the_buffers(tiny_model_dir):
    _, mask, _ = _tiny_mask(tiny_model_dir)
    optimiser = mask_optimiser(mask, lr=0.5)
    first_step = [mask.uniform_draws(True)[0] for _ in range(3)]
    first_outputs = [mask.sample_buffers()[0] for _ in range(3)]
    assert len({d.data_ptr() for d in first_step + first_outputs}) == 6
    assert not torch.equal(first_step[0], first_step[1])
    for logits in mask.logits:
        logits.grad = torch.ones_like(logits)
    optimiser.step()
    second_step = [mask.uniform_draws(True)[0] for _ in range(3)]
    assert [d.data_ptr() for d in second_step] == [d.data_ptr() for d in first_step]
    assert [mask.sample_buffers()[0].data_ptr() for _ in range(3)] == [d.data_ptr() for d in first_outputs]
    # the default temperature and the paper's noise scale leave u as it is: v = u in [0, 1)
    assert all(0 <= float(d.min()) and float(d.max()) < 1 for d in second_step)


def test_the_fused_density_gradient_equals_the_torch_one_bit_for_bit():
    logits, _, _, _ = _operands(shape=(300, 257))
    p, q = _p_q(logits, 1.0)
    scale = torch.tensor(0.37) / logits.numel()
    assert torch.equal(mask_sample.density_grad(p, q, scale), torch.mul(p, q).mul_(scale))
    assert torch.equal(mask_sample.density_grad(p.double(), q.double(), scale), p.double() * q.double() * scale)
