"""The arithmetic of one mask sample, in a form with no transcendental function per sample
(docs/method.md 1.4).

The sample is s = sigmoid((l + c * logit(u)) / tau). With p = sigmoid(l / tau), q = sigmoid(-l / tau)
(once per optimiser step, shared by every sample of the step) and v = sigmoid((c / tau) * logit(u))
(v = u at the paper's c = tau = 1), it is rational:

    s = a / (a + b),  a = v p,  b = (1 - v) q,    so   s > 0.5  <=>  a > b,
    ds/dl = s (1 - s) / tau = a b / (a + b)^2 / tau.

q is computed as sigmoid(-l / tau), not 1 - p, so that s keeps its precision where p rounds to 1.
v is clamped to [1e-6, 1 - 1e-6], as u is before logit(u) (the logistic noise stays finite).

Two executors compute the same float32 operations in the same order: `torch` ops (any device,
neuron masks, and the reference the tests compare against) and fused CPU kernels (numba), which
read each operand once instead of once per operation: a sample's forward and backward over
SmolLM2's 53M masked weights are two passes instead of about ten (benchmarks/mask_sample.py).
"""

from __future__ import annotations

import numpy as np
import torch

NOISE_EPS = 1e-6  # clamp of u (and v); 1 - 1e-10 would round to 1.0 in float32


def noise_to_v(uniform: torch.Tensor, noise_scale: float, temperature: float) -> torch.Tensor:
    """v = sigmoid((c / tau) logit(u)) in u's own buffer (u itself when c / tau = 1)."""
    factor = noise_scale / temperature
    if factor != 1.0:
        uniform.logit_(NOISE_EPS).mul_(factor).sigmoid_()
    return uniform


def _terms(p: torch.Tensor, q: torch.Tensor, v: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """a = v p and b = (1 - v) q, as new tensors; v = None is the deterministic mask (no noise: v = 1/2)."""
    if v is None:
        return p * 0.5, q * 0.5
    v = v.clamp(NOISE_EPS, 1.0 - NOISE_EPS)
    return v * p, v.neg_().add_(1.0).mul_(q)  # -v + 1 rounds exactly as 1 - v


def select_torch(weight: torch.Tensor, p: torch.Tensor, q: torch.Tensor, v: torch.Tensor | None,
                 invert: bool) -> torch.Tensor:
    """weight * 1[s > 0.5] (1[s <= 0.5] when inverted); p, q, v broadcast for neuron masks."""
    a, b = _terms(p, q, v)
    keep = (a <= b) if invert else (a > b)
    return weight * keep


def slope_torch(p: torch.Tensor, q: torch.Tensor, v: torch.Tensor | None, invert: bool,
                temperature: float) -> torch.Tensor:
    """d(mask)/dl: s (1 - s) / tau = a b / (a + b)^2 / tau, negated for the inverted (remaining) mask."""
    a, b = _terms(p, q, v)
    total = a + b
    slope = a.mul_(b).div_(total.mul_(total))
    if invert:
        slope.neg_()
    return slope.div_(temperature) if temperature != 1.0 else slope


def fused_applies(weight: torch.Tensor, p: torch.Tensor) -> bool:
    """The CPU kernels take float32 contiguous weight-granularity tensors; everything else runs in torch."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32 and p.dtype == torch.float32
            and weight.shape == p.shape and weight.is_contiguous() and p.is_contiguous())


def select_fused(weight, p, q, v, invert: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """The masked weight, written into `out` when given (a buffer reused from step to step)."""
    out = torch.empty_like(weight) if out is None else out
    _run("select", _flat(weight), _flat(p), _flat(q), _flat_or_dummy(v), v is not None, invert, _flat(out))
    return out


def grad_fused(grad_weight, weight, p, q, v, invert: bool, temperature: float) -> torch.Tensor:
    """dL/dl = (dL/d(masked weight) * weight) * slope, in one pass."""
    out = torch.empty_like(weight)
    _run("grad", _flat(grad_weight.contiguous()), _flat(weight), _flat(p), _flat(q), _flat_or_dummy(v),
         v is not None, invert, np.float32(temperature), _flat(out))
    return out


def density_grad(p: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """d mean(sigmoid(l)) / dl times the upstream gradient: (p q) scale, scale = upstream / n (one pass on a CPU)."""
    if not fused_applies(p, q):
        return torch.mul(p, q).mul_(scale)
    out = torch.empty_like(p)
    _run("density_grad", _flat(p), _flat(q), np.float32(scale), _flat(out))
    return out


def _flat(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().view(-1).numpy()


def _flat_or_dummy(tensor: torch.Tensor | None) -> np.ndarray:
    return np.empty(1, dtype=np.float32) if tensor is None else _flat(tensor)


def _run(name: str, *args) -> None:
    import numba

    from kcs import mask_kernels  # numba compiles (or loads from its disk cache) on first use

    # as many threads as torch uses (kcs sets it from the job's cores), within numba's own pool
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    getattr(mask_kernels, name)(*args)
