"""Sentence perplexity under a causal LM: how the best verbalisation of a fact is chosen.

`sentence_perplexities` gives, per sentence, exp(mean negative log-likelihood of its tokens),
each token predicted from the tokens before it (the authors' per-template `*_perp`). The first
token has no prefix and is not scored, as with Hugging Face's `labels=input_ids` loss; a tokenizer
that adds a BOS token makes the first word scored too. Sentences are batched by length (padding
never changes a score: padded positions are masked out) and the result keeps the input order.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from kcs.errors import KcsError


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


@torch.inference_mode()
def sentence_perplexities(model, tokenizer, sentences: Sequence[str], batch_size: int = 32) -> list[float]:
    """exp(mean token NLL) of each sentence under `model`, in the order given."""
    if batch_size < 1:
        raise KcsError(f"batch_size must be >= 1, got {batch_size}")
    encoded = [tokenizer(sentence)["input_ids"] for sentence in sentences]
    for sentence, ids in zip(sentences, encoded):
        if len(ids) < 2:
            raise KcsError(f"cannot score {sentence!r}: a perplexity needs at least 2 tokens, it has {len(ids)}")
    device = next(model.parameters()).device
    pad = _pad_id(tokenizer)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    result = [math.nan] * len(encoded)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
            attention[row, : len(encoded[i])] = 1
        ids, attention = ids.to(device), attention.to(device)
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        targets = ids[:, 1:]
        nll = -torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        scored = attention[:, 1:].float()
        mean_nll = (nll * scored).sum(dim=1) / scored.sum(dim=1)
        for row, i in enumerate(batch):
            result[i] = float(torch.exp(mean_nll[row]))
    return result
