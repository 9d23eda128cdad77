"""The loss terms of mask training (docs/method.md section 2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def suppression_kl(logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(uniform || softmax(logits)) = -log V - mean_v log p_v."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return (-math.log(logits.shape[-1]) - log_probs.mean(dim=-1)).mean()


def maintenance_kl(logits: torch.Tensor, hidden: torch.Tensor, expected_embedding: torch.Tensor,
                   offset: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of KL(p_full || softmax(logits)), logits = hidden W^T + b (the output layer),
    from the full model's statistics per row (kcs.reference): offset + logsumexp(logits) -
    hidden . expected_embedding. Exact, and its backward is softmax(logits) W - expected_embedding:
    the full model's logits are never needed. Rows can be weighted (0 for padding)."""
    per_row = offset + torch.logsumexp(logits.float(), dim=-1) - (hidden.float() * expected_embedding).sum(dim=-1)
    if weights is None:
        return per_row.mean()
    return (per_row * weights).sum() / weights.sum()


def expression_loss(logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the subnetwork-only model on the tail token (ablation term)."""
    return F.cross_entropy(logits.float(), gold)


def lambda_reg(step: int, total_steps: int, initial: float, final: float) -> float:
    """The regulariser weight: `initial` until half-way, then linear to `final` at the last step."""
    half = total_steps / 2
    if step <= half:
        return initial
    return initial + (final - initial) * (step - half) / max(total_steps - half, 1)


def warmup_factor(step: int, total_steps: int, warmup_frac: float) -> float:
    """Linear warm-up from ~0 to 1 over `warmup_frac` of the steps, then constant (docs/method.md 2.3)."""
    warmup = int(total_steps * warmup_frac)
    if warmup <= 0 or step >= warmup:
        return 1.0
    return max(1e-10, (step + 1) / warmup)


def noise_scale(step: int, total_steps: int, initial: float, final: float) -> float:
    """Scale of the logistic sampling noise: linear from `initial` at step 0 to `final` at the last step.

    The paper keeps it at 1. The hard sample 1[l + noise > 0] does not depend on the temperature
    (which only scales the straight-through gradient), so shrinking the noise is what brings the
    training samples towards the deterministic mask that is evaluated (docs/method.md).
    """
    if initial == final:
        return initial
    return initial + (final - initial) * step / max(total_steps - 1, 1)
