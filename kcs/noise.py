"""Uniform draws for the mask samples: a fast CPU source that stays on torch's seed.

Every training step draws a fresh U(0, 1) value for every masked weight and every loss term
(docs/method.md 1.4): 159M draws per step for SmolLM2's top half. torch's CPU generator is one
serial Mersenne Twister (measured: 150 ms per 53M floats on this project's 2-core machine, a
seventh of a whole mask step); numpy's PCG64 fills the same buffer in 97 ms on one core and in
about 50 ms split over two threads (numpy releases the GIL while it fills).

The draws stay reproducible from torch's global RNG alone, so `torch.manual_seed`, checkpoints and
resume work as before: each call takes one 63-bit key from torch's generator and fills the tensor
in fixed chunks, chunk i from PCG64(SeedSequence([key, i])). The chunking depends on the tensor's
size only, never on the thread count, so the values are the same on every machine. On a GPU
torch's own (Philox) generator is already fast and is used as it is.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

CHUNK = 1 << 20  # values per PCG64 stream; small tensors are one stream
_pool: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(torch.get_num_threads(), 1), thread_name_prefix="kcs-noise")
    return _pool


def uniform_(out: torch.Tensor) -> torch.Tensor:
    """Fill `out` (float32, contiguous) with U[0, 1) draws in place and return it."""
    if out.device.type != "cpu" or out.dtype != torch.float32 or not out.is_contiguous():
        return out.uniform_()
    key = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
    flat = out.view(-1).numpy()
    n_chunks = max(1, math.ceil(flat.size / CHUNK))
    streams = [np.random.Generator(np.random.PCG64(np.random.SeedSequence([key, i]))) for i in range(n_chunks)]

    def fill(i: int) -> None:
        streams[i].random(out=flat[i * CHUNK:(i + 1) * CHUNK], dtype=np.float32)

    if n_chunks == 1:
        fill(0)
    else:
        list(_threads().map(fill, range(n_chunks)))
    return out


def uniform_like(tensor: torch.Tensor) -> torch.Tensor:
    """A new float32 tensor shaped like `tensor`, filled with U[0, 1) draws."""
    return uniform_(torch.empty(tensor.shape, dtype=torch.float32, device=tensor.device))
