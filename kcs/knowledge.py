"""How well a model knows each fact and each KG, before any mask is trained.

A TargetKG whose facts the model cannot express cannot be suppressed: the suppression loss pushes
the tail distribution towards uniform, and a model already near uniform has nothing to remove
(SmolLM2-135M gives the paper's magnitude.n.01 KG perplexity 9,550 against 49,152 for uniform).
These functions measure the full (unmasked) model on a KG with the same code as the evaluation:

- per fact (`fact_knowledge`): the 0-based rank of the gold last tail token among the vocabulary,
  its probability, log-probability and NLL, read from the distribution that predicts it;
- per KG (`kg_knowledge`): the paper's KG perplexity (`kcs.evaluation.kg_statistics`: mean over
  batches of `batch_size` facts of exp(mean last-token NLL); it depends on the batch size, keep the
  evaluation's 250 to compare), the uniform perplexity (the vocabulary size, i.e. the number of
  logits), `ppl_over_uniform` = ppl / vocabulary size (1 = knows nothing, lower = knows more),
  median rank, hits@1 and hits@10 (share of facts whose gold token ranks < 1, < 10) and mean
  probability.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

from torch import nn

from kcs.encoding import encode_verbalisations
from kcs.evaluation import kg_statistics
from kcs.kg import Fact
from kcs.masking import MaskedLM

DEFAULT_BATCH_SIZE = 250  # the paper's evaluation batch size; KG perplexity depends on it

# --rank-by keys: (summary key, True when larger is better)
RANK_KEYS: dict[str, tuple[str, bool]] = {
    "ppl_over_uniform": ("ppl_over_uniform", False),
    "ppl": ("ppl", False),
    "median_rank": ("median_rank", False),
    "hits_at_1": ("hits_at_1", True),
    "hits_at_10": ("hits_at_10", True),
    "mean_p": ("mean_p", True),
}


def as_masked_lm(model_or_lm: nn.Module) -> MaskedLM:
    """The full view of a causal LM (a MaskedLM is used as it is)."""
    if isinstance(model_or_lm, MaskedLM):
        return model_or_lm
    return MaskedLM(model_or_lm, None).eval()


def vocabulary_size(lm: MaskedLM) -> int:
    """The number of logits the model predicts over: the perplexity of the uniform distribution."""
    head = lm.model.get_output_embeddings()
    if getattr(head, "out_features", None):
        return int(head.out_features)
    return int(head.weight.shape[0])


def _measure(model_or_lm, tokenizer, facts: Sequence[Fact], batch_size: int, where: str):
    if batch_size < 1:
        from kcs.errors import KcsError

        raise KcsError(f"batch size must be at least 1, got {batch_size}")
    lm = as_masked_lm(model_or_lm)
    enc = encode_verbalisations(facts, tokenizer, where)
    stats = kg_statistics(lm, ["full"], enc, batch_size)["full"]
    gold = enc.gold_last().tolist()
    rows = []
    for fact, token, nll, rank in zip(facts, gold, stats["nll"].tolist(), stats["rank"].tolist()):
        rows.append({
            "head": fact.head,
            "relation": fact.relation,
            "tail": fact.tail,
            "sentence": fact.sentence,
            "gold_token_id": int(token),
            "gold_token": tokenizer.decode([int(token)]),
            "rank": int(rank),
            "prob": math.exp(-nll),
            "logprob": -nll,
            "nll": nll,
        })
    return lm, stats, rows


def summarise(rows: Sequence[dict[str, Any]], ppl: float, vocab: int, tail_ppl: float | None = None,
              batch_size: int | None = None) -> dict[str, Any]:
    """The per-KG summary of per-fact rows (from `fact_knowledge`) and the KG perplexity."""
    ranks = [row["rank"] for row in rows]
    n = len(rows)
    summary = {
        "n_facts": n,
        "ppl": ppl,
        "uniform_ppl": vocab,
        "ppl_over_uniform": ppl / vocab,
        "median_rank": float(statistics.median(ranks)),
        "hits_at_1": sum(r < 1 for r in ranks) / n,
        "hits_at_10": sum(r < 10 for r in ranks) / n,
        "mean_p": sum(row["prob"] for row in rows) / n,
        "mean_logprob": sum(row["logprob"] for row in rows) / n,
    }
    if tail_ppl is not None:
        summary["tail_ppl"] = tail_ppl
    if batch_size is not None:
        summary["batch_size"] = batch_size
    return summary


def fact_knowledge(model_or_lm, tokenizer, facts: Sequence[Fact], batch_size: int = DEFAULT_BATCH_SIZE,
                   where: str = "KG") -> list[dict[str, Any]]:
    """Per fact: head, relation, tail, sentence, gold last tail token, its rank (0-based), prob,
    logprob and NLL under the full model. `where` names the KG in error messages."""
    return _measure(model_or_lm, tokenizer, facts, batch_size, where)[2]


def kg_knowledge(model_or_lm, tokenizer, facts: Sequence[Fact], batch_size: int = DEFAULT_BATCH_SIZE,
                 where: str = "KG", with_facts: bool = False) -> dict[str, Any]:
    """Per KG: n_facts, ppl (the paper's), uniform_ppl, ppl_over_uniform, median_rank, hits_at_1,
    hits_at_10, mean_p, mean_logprob, tail_ppl, batch_size; plus the per-fact rows under "facts"
    when `with_facts` (one pass over the data computes both)."""
    lm, stats, rows = _measure(model_or_lm, tokenizer, facts, batch_size, where)
    summary = summarise(rows, stats["ppl"], vocabulary_size(lm), stats["tail_ppl"], batch_size)
    if with_facts:
        summary["facts"] = rows
    return summary


def rank_order(summaries: Sequence[dict[str, Any]], key: str | None) -> list[int]:
    """Indices of `summaries` best known first by `key` (one of RANK_KEYS); given order when None.
    Ties keep the given order."""
    indices = list(range(len(summaries)))
    if key is None:
        return indices
    field, larger_is_better = RANK_KEYS[key]
    return sorted(indices, key=lambda i: -summaries[i][field] if larger_is_better else summaries[i][field])
