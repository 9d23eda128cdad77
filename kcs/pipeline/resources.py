"""Memory, time and thread requests of the pipeline's jobs, scaled by model size and growing with each
retry (`attempt`). Defaults for a GPU cluster; a profile adapts them per rule (slurm/config.yaml,
set-resources)."""

from __future__ import annotations


def train_mem_mb(size_m: float, attempt: int) -> int:
    # model + frozen reference outputs + mask logits, gradients and two Adam moments (16 B/weight)
    return int((3000 + 24 * size_m) * attempt)


def train_runtime(steps: int, size_m: float, attempt: int) -> int:
    """Minutes: ~1 h for GPT-2 small's 40,000 steps on one GPU (docs/method.md 8.1), scaled by size."""
    return int((15 + steps * size_m * 1.2e-5) * attempt)


def model_mem_mb(size_m: float, attempt: int) -> int:
    """Steps that load the model once (evaluation, verbalisation, conversion)."""
    return int((2000 + 12 * size_m) * attempt)


def model_runtime(size_m: float, attempt: int) -> int:
    return int((20 + size_m / 10) * attempt)


def model_threads(tiny: bool) -> int:
    """CPU threads of steps that run the model: 1 for tiny models (more threads only add overhead
    there, and two one-thread jobs share a 2-core machine better), else 4."""
    return 1 if tiny else 4
