"""Metrics of the full, remaining and subnetwork views (method-spec section 4).

KG perplexity, the paper's variant: for each batch of `eval_batch_size` facts, exp(mean NLL of the
last target token); reported PPL = unweighted mean over batches (depends on the batch size, as in
the paper: keep 250 to compare). `tail_ppl_*` is the corpus-level perplexity over all target tokens.
ControlLM perplexity: mean over batches of exp(mean token NLL) over text blocks.
Rank: 0-based rank of the gold last token; logprob: its natural-log probability.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from kcs.encoding import KGEncoding, encode_verbalisations, paraphrase_items
from kcs.kg import Fact
from kcs.masking import MaskedLM

KG_SETS = ("targetkg", "controlkg")


@torch.no_grad()
def kg_statistics(lm: MaskedLM, view: str, enc: KGEncoding, batch_size: int) -> dict[str, torch.Tensor | float]:
    device = next(lm.model.parameters()).device
    nll_last, rank_last, batch_ppls = [], [], []
    tail_nll_sum, tail_tokens = 0.0, 0
    for start in range(0, len(enc), batch_size):
        batch = enc.subset(slice(start, start + batch_size)).to(device)
        logits = lm(view, stochastic=False, input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        rows = torch.arange(len(batch), device=device)
        predicting = logits[rows, batch.last_index - 1].float()
        gold = batch.gold_last()
        log_probs = F.log_softmax(predicting, dim=-1)
        nll = -log_probs[rows, gold]
        rank = (predicting > predicting[rows, gold][:, None]).sum(dim=-1)
        nll_last.append(nll.cpu())
        rank_last.append(rank.cpu())
        batch_ppls.append(math.exp(nll.mean().item()))
        labels = batch.tail_labels()[:, 1:]
        token_nll = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
        )
        tail_nll_sum += token_nll.item()
        tail_tokens += int((labels != -100).sum())
    nll_all = torch.cat(nll_last)
    return {
        "ppl": sum(batch_ppls) / len(batch_ppls),
        "tail_ppl": math.exp(tail_nll_sum / tail_tokens),
        "nll": nll_all,
        "rank": torch.cat(rank_last).float(),
    }


@torch.no_grad()
def lm_perplexity(lm: MaskedLM, view: str, blocks: torch.Tensor, batch_size: int = 8) -> float:
    device = next(lm.model.parameters()).device
    batch_ppls = []
    for start in range(0, blocks.shape[0], batch_size):
        ids = blocks[start:start + batch_size].to(device)
        loss = lm(view, stochastic=False, input_ids=ids, labels=ids).loss
        batch_ppls.append(math.exp(loss.item()))
    return sum(batch_ppls) / len(batch_ppls)


def _kg_view_metrics(lm, view, facts, tokenizer, batch_size, where) -> dict:
    stats = kg_statistics(lm, view, encode_verbalisations(facts, tokenizer, where), batch_size)
    out = {
        "ppl": stats["ppl"],
        "tail_ppl": stats["tail_ppl"],
        "rank_mean": stats["rank"].mean().item(),
        "logprob_mean": (-stats["nll"]).mean().item(),
        "nll": stats["nll"].tolist(),
        "rank": stats["rank"].tolist(),
    }
    paraphrases = paraphrase_items(facts)
    if paraphrases:
        para = kg_statistics(lm, view, encode_verbalisations(paraphrases, tokenizer, f"{where} paraphrases"), batch_size)
        out["paraphrase_ppl"] = para["ppl"]
    return out


def evaluate_views(lm: MaskedLM, tokenizer, views: Sequence[str], kgs: dict[str, Sequence[Fact]],
                   text_blocks: torch.Tensor | None, kg_batch_size: int = 250, lm_batch_size: int = 8) -> dict:
    """Raw metrics of each view on each KG and on the text: {view: {"targetkg": {...}, ..., "controllm": {...}}}."""
    results: dict[str, dict] = {}
    for view in views:
        results[view] = {name: _kg_view_metrics(lm, view, facts, tokenizer, kg_batch_size, name) for name, facts in kgs.items()}
        if text_blocks is not None:
            results[view]["controllm"] = {"ppl": lm_perplexity(lm, view, text_blocks, lm_batch_size), "n_blocks": int(text_blocks.shape[0])}
    return results


def compare(full: dict, remaining: dict, facts: Sequence[Fact] | None = None, subnetwork: dict | None = None) -> dict:
    """The reported block of one dataset: full vs remaining (the paper's delta = remaining - full)."""
    out = {
        "ppl_full": full["ppl"],
        "ppl_remaining": remaining["ppl"],
        "delta_ppl": remaining["ppl"] - full["ppl"],
        "relative_delta_ppl": remaining["ppl"] / full["ppl"] - 1.0,
    }
    if "n_blocks" in full:
        out["n_blocks"] = full["n_blocks"]
        return out
    out.update(
        n=len(full["nll"]),
        tail_ppl_full=full["tail_ppl"],
        tail_ppl_remaining=remaining["tail_ppl"],
        rank_full_mean=full["rank_mean"],
        rank_remaining_mean=remaining["rank_mean"],
        delta_rank_mean=remaining["rank_mean"] - full["rank_mean"],
        logprob_full_mean=full["logprob_mean"],
        logprob_remaining_mean=remaining["logprob_mean"],
        delta_logprob_mean=remaining["logprob_mean"] - full["logprob_mean"],
    )
    if "paraphrase_ppl" in full and "paraphrase_ppl" in remaining:
        out["paraphrase_ppl_full"] = full["paraphrase_ppl"]
        out["paraphrase_ppl_remaining"] = remaining["paraphrase_ppl"]
        out["paraphrase_delta_ppl"] = remaining["paraphrase_ppl"] - full["paraphrase_ppl"]
    if subnetwork is not None:
        out["ppl_subnetwork"] = subnetwork["ppl"]
    if facts is not None:
        out["per_fact"] = [
            {
                "head": f.head, "relation": f.relation, "tail": f.tail,
                "nll_full": nf, "nll_remaining": nr, "rank_full": rf, "rank_remaining": rr,
            }
            for f, nf, nr, rf, rr in zip(facts, full["nll"], remaining["nll"], full["rank"], remaining["rank"])
        ]
    return out


def _inputs_fingerprint(targetkg, controlkg, controllm, config) -> dict:
    from kcs.provenance import file_sha256

    return {
        "targetkg": file_sha256(targetkg),
        "controlkg": file_sha256(controlkg),
        "controllm": [file_sha256(p) for p in controllm],
        "eval_batch_size": config.eval_batch_size,
        "eval_lm_batch_size": config.eval_lm_batch_size,
        "controllm_block_size": config.controllm_block_size,
    }


def _load_inputs(tokenizer, targetkg, controlkg, controllm, config):
    from kcs.encoding import read_text_blocks
    from kcs.kg import read_kg

    kgs = {"targetkg": read_kg(targetkg), "controlkg": read_kg(controlkg)}
    text = read_text_blocks(controllm, tokenizer, config.controllm_block_size)
    return kgs, text


def evaluate_full_model(model: str, targetkg, controlkg, controllm: Sequence, config, device=None) -> dict:
    """Metrics of the unmasked model, computed once per (model, data) and reused by every mask."""
    from kcs.models import load_model
    from kcs.provenance import provenance

    lm_model, tokenizer = load_model(model, device=device)
    lm = MaskedLM(lm_model, None).eval()
    kgs, text = _load_inputs(tokenizer, targetkg, controlkg, controllm, config)
    raw = evaluate_views(lm, tokenizer, ["full"], kgs, text, config.eval_batch_size, config.eval_lm_batch_size)["full"]
    return {
        "kind": "full",
        "inputs": _inputs_fingerprint(targetkg, controlkg, controllm, config),
        "raw": raw,
        "provenance": provenance(config=config.to_dict(), model=str(model)),
    }


def evaluate_mask(model: str, mask_path, targetkg, controlkg, controllm: Sequence, config,
                  full_metrics: dict | None = None, device=None) -> dict:
    """The metrics file of one mask: sparsity and full vs remaining on TargetKG, ControlKG, ControlLM."""
    from kcs.errors import KcsError
    from kcs.maskfile import load_mask
    from kcs.models import load_model
    from kcs.provenance import provenance

    lm_model, tokenizer = load_model(model, device=device)
    mask = load_mask(mask_path, model=lm_model)
    lm = MaskedLM(lm_model, mask).eval()
    kgs, text = _load_inputs(tokenizer, targetkg, controlkg, controllm, config)
    fingerprint = _inputs_fingerprint(targetkg, controlkg, controllm, config)
    if full_metrics is not None:
        if full_metrics.get("inputs") != fingerprint:
            raise KcsError(
                "the --full-metrics file was computed on other data or batch sizes than this evaluation; "
                "recompute it with `kcs evaluate-full` on the same files and config"
            )
        full = full_metrics["raw"]
    else:
        full = evaluate_views(lm, tokenizer, ["full"], kgs, text, config.eval_batch_size, config.eval_lm_batch_size)["full"]
    views = evaluate_views(lm, tokenizer, ["remaining"], kgs, text, config.eval_batch_size, config.eval_lm_batch_size)
    subnetwork = evaluate_views(lm, tokenizer, ["subnetwork"], {"targetkg": kgs["targetkg"]}, None, config.eval_batch_size)
    remaining = views["remaining"]
    result = dict(mask.sparsity_report())
    result["targetkg"] = compare(full["targetkg"], remaining["targetkg"], kgs["targetkg"], subnetwork["subnetwork"]["targetkg"])
    result["controlkg"] = compare(full["controlkg"], remaining["controlkg"])
    result["controllm"] = compare(full["controllm"], remaining["controllm"])
    result["per_fact"] = {"targetkg": result["targetkg"].pop("per_fact")}
    metadata = getattr(mask, "metadata", {})
    result["mask"] = {"path": str(mask_path), "kind": metadata.get("kind", "learned"), "step": metadata.get("step")}
    result["provenance"] = provenance(config=config.to_dict(), model=str(model), inputs=fingerprint,
                                      mask_provenance=metadata.get("provenance"))
    return result
