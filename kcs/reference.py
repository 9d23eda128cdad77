"""The frozen full model's distributions that the maintenance KL terms compare to.

KL(p_full || q) with q = softmax(h W^T + b), the masked model's output at last hidden state h,
needs only two statistics of p_full per position (docs/method.md 2.2):

    KL = sum_v p_v log p_v - p.b  +  logsumexp(h W^T + b)  -  h . (p W)
         '------ offset -------'                                '- e -'

so the full model's *expected output embedding* e = p_full W (d_model floats) and one scalar
offset are cached per position instead of vocabulary-wide log-probabilities (the demo's 200
ControlLM blocks of 128 tokens would take ~5 GB for SmolLM2's 49,152-token vocabulary; these take
85x less). A training step then applies the output layer once per position (the masked model's
logits), not twice: the full model's logits are never recomputed. Rows past the budget are
computed from the frozen prefix (kcs.prefix) when a batch needs them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kcs.errors import KcsError
from kcs.prefix import PrefixCache

_POSITIONS_PER_CHUNK = 512  # positions whose vocabulary-wide distributions exist at once while caching (~100 MB for SmolLM2)


def output_layer(lm) -> nn.Linear:
    """The LM head as the linear map the statistics assume (logits = h W^T + b, nothing after it)."""
    head = lm.model.get_output_embeddings()
    config = lm.model.config.get_text_config()
    if not isinstance(head, nn.Linear) or getattr(config, "final_logit_softcapping", None):
        raise KcsError(f"{type(lm.model).__name__}: kcs needs a plain linear output layer (logits = h W^T + b); "
                       "this model transforms its logits further, which the maintenance KL does not support")
    return head


class FullModelReference:
    """The full model's expected output embedding and KL offset over one input set: at one position
    per row (a KG, `positions` [N]) or at every position (ControlLM text, `positions` None)."""

    def __init__(self, lm, prefix: PrefixCache, positions: torch.Tensor | None, budget_bytes: int):
        self.lm, self.prefix, self.positions = lm, prefix, positions
        self.head = output_layer(lm)
        d_model = self.head.in_features
        per_row = 1 if positions is not None else prefix.input_ids.shape[1]
        self.n_cached = min(len(prefix), max(budget_bytes, 0) // (per_row * (d_model + 1) * 4))
        self.expected: torch.Tensor | None = None
        self.offset: torch.Tensor | None = None
        if self.n_cached:  # in fixed chunks, so cached values never depend on the batch order
            chunk = max(1, _POSITIONS_PER_CHUNK // per_row)
            parts = [self._compute(torch.arange(s, min(s + chunk, self.n_cached))) for s in range(0, self.n_cached, chunk)]
            self.expected = torch.cat([e for e, _ in parts])
            self.offset = torch.cat([o for _, o in parts])

    @property
    def nbytes(self) -> int:
        if self.expected is None:
            return 0
        return (self.expected.numel() + self.offset.numel()) * self.expected.element_size()

    @torch.no_grad()
    def _compute(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids, att = self.prefix.rows(rows)
        device = self.lm.device
        ids, att = ids.to(device), None if att is None else att.to(device)
        hidden = self.lm.upper("full", self.prefix.block_inputs(rows, ids, att), stochastic=False)
        if self.positions is not None:
            hidden = hidden[torch.arange(len(rows), device=device), self.positions[rows].to(device)]
        log_p = F.log_softmax(self.head(hidden).float(), dim=-1)
        p = log_p.exp()
        expected = p @ self.head.weight.float()
        offset = (p * log_p).sum(dim=-1)
        if self.head.bias is not None:
            offset -= p @ self.head.bias.float()
        return expected, offset

    @torch.no_grad()
    def statistics(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(expected output embedding, offset): [B, d] and [B] for a KG, [B, T, d] and [B, T] for text."""
        rows = rows.cpu()
        cached = rows < self.n_cached
        if bool(cached.all()):
            index = rows.to(self.expected.device)
            return self.expected[index], self.offset[index]
        if not bool(cached.any()):
            return self._compute(rows)
        # only the rows past the budget are computed
        computed = self._compute(rows[~cached])
        out = []
        for fresh, stored in zip(computed, (self.expected, self.offset)):
            merged = fresh.new_empty((len(rows), *fresh.shape[1:]))
            merged[(~cached).to(merged.device)] = fresh
            merged[cached.to(merged.device)] = stored[rows[cached].to(stored.device)]
            out.append(merged)
        return out[0], out[1]
