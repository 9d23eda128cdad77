"""The frozen full model's distributions that the maintenance KL terms compare to.

Vocabulary-wide log-probabilities of every ControlLM position do not fit in memory (the demo's
200 blocks of 128 tokens would take ~5 GB for SmolLM2's 49,152-token vocabulary), so the full
model's *last hidden states* are cached instead, d_model floats per position (85x smaller for
SmolLM2), and the output layer and log-softmax are applied per batch: the same numbers as
recomputing the full model, without its forward pass. Rows past the budget are recomputed from
the frozen prefix (kcs.prefix) when a batch needs them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kcs.prefix import PrefixCache


class FullModelReference:
    """The full model's last hidden states over one input set: at one position per row (a KG,
    `positions` [N]) or at every position (ControlLM text, `positions` None)."""

    def __init__(self, lm, prefix: PrefixCache, positions: torch.Tensor | None, budget_bytes: int, chunk: int = 16):
        self.lm, self.prefix, self.positions = lm, prefix, positions
        d_model = lm.model.config.get_text_config().hidden_size
        per_row = 1 if positions is not None else prefix.input_ids.shape[1]
        self.n_cached = min(len(prefix), max(budget_bytes, 0) // (per_row * d_model * 4))
        self.hidden: torch.Tensor | None = None
        if self.n_cached:  # in fixed chunks, so cached values never depend on the batch order
            self.hidden = torch.cat([self._compute(torch.arange(s, min(s + chunk, self.n_cached)))
                                     for s in range(0, self.n_cached, chunk)])

    @property
    def nbytes(self) -> int:
        return 0 if self.hidden is None else self.hidden.numel() * self.hidden.element_size()

    @torch.no_grad()
    def _compute(self, rows: torch.Tensor) -> torch.Tensor:
        ids, att = self.prefix.rows(rows)
        device = self.lm.device
        ids, att = ids.to(device), None if att is None else att.to(device)
        hidden = self.lm.upper("full", self.prefix.block_inputs(rows, ids, att), stochastic=False)
        if self.positions is None:
            return hidden
        return hidden[torch.arange(len(rows), device=device), self.positions[rows].to(device)]

    @torch.no_grad()
    def log_probs(self, rows: torch.Tensor) -> torch.Tensor:
        """log p_full: [B, V] for a KG, [B, T, V] for text."""
        rows = rows.cpu()
        cached = rows < self.n_cached
        if bool(cached.all()):
            hidden = self.hidden[rows.to(self.hidden.device)]
        elif not bool(cached.any()):
            hidden = self._compute(rows)
        else:  # only the rows past the budget are recomputed
            computed = self._compute(rows[~cached])
            hidden = computed.new_empty((len(rows), *computed.shape[1:]))
            hidden[(~cached).to(hidden.device)] = computed
            hidden[cached.to(hidden.device)] = self.hidden[rows[cached].to(self.hidden.device)]
        return F.log_softmax(self.lm.head(hidden).float(), dim=-1)
