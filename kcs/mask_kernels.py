"""The fused CPU kernels of kcs.mask_sample (numba; imported on first use, since importing numba
takes about half a second). Each reads every operand once; the float32 operations and their
order are those of kcs.mask_sample's torch executor, so both give the same numbers."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kcs.mask_sample import NOISE_EPS

LOW, HIGH = np.float32(NOISE_EPS), np.float32(1.0 - NOISE_EPS)
ONE, HALF, ZERO = np.float32(1.0), np.float32(0.5), np.float32(0.0)


@njit(parallel=True, cache=True)
def select(weight, p, q, v, stochastic, invert, out):
    """out = weight * 1[s > 0.5] (1[s <= 0.5] when inverted), s = a / (a + b)."""
    for i in prange(weight.size):
        vi = min(max(v[i], LOW), HIGH) if stochastic else HALF
        a = vi * p[i]
        b = (ONE - vi) * q[i]
        keep = (a <= b) if invert else (a > b)
        out[i] = weight[i] if keep else ZERO


@njit(parallel=True, cache=True)
def grad(grad_weight, weight, p, q, v, stochastic, invert, temperature, out):
    """out = (grad_weight * weight) * (+/-) a b / (a + b)^2 / temperature."""
    for i in prange(weight.size):
        vi = min(max(v[i], LOW), HIGH) if stochastic else HALF
        a = vi * p[i]
        b = (ONE - vi) * q[i]
        total = a + b
        slope = a * b / (total * total)
        if invert:
            slope = -slope
        if temperature != ONE:
            slope = slope / temperature
        out[i] = (grad_weight[i] * weight[i]) * slope


@njit(parallel=True, cache=True)
def density_grad(p, q, scale, out):
    """out = (p * q) * scale: d mean(sigmoid(l)) / dl, scale = 1 / n times the upstream gradient."""
    for i in prange(p.size):
        out[i] = (p[i] * q[i]) * scale
