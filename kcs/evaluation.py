"""Metrics of the full, remaining and subnetwork views (docs/method.md section 4).

KG perplexity, the paper's variant: for each batch of `eval_batch_size` facts, exp(mean NLL of the
last target token); reported PPL = unweighted mean over batches (depends on the batch size, as in
the paper: keep 250 to compare). `tail_ppl_*` is the corpus-level perplexity over all target tokens.
ControlLM perplexity: mean over batches of exp(mean token NLL) over text blocks.
Rank: 0-based rank of the gold last token; logprob: its natural-log probability.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from kcs.encoding import KGEncoding, encode_verbalisations, paraphrase_items
from kcs.kg import Fact
from kcs.masking import MaskedLM
from kcs.prefix import PrefixCache, PrefixStore
from kcs.progress import ProgressLog

log = logging.getLogger(__name__)

KG_SETS = ("targetkg", "controlkg")


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield torch.arange(start, min(start + batch_size, n))


def _progress(label: str | None, n: int, batch_size: int, every: int) -> ProgressLog | None:
    # only evaluation jobs name themselves: the validation inside training stays quiet
    return ProgressLog(log, label, math.ceil(n / batch_size), every, unit="batch") if label else None


def _running_ppl(batch_ppls: dict[str, list[float]]) -> dict[str, float]:
    return {f"ppl_{view}": sum(values) / len(values) for view, values in batch_ppls.items()}


def _check_prefix(lm: MaskedLM, prefix: PrefixCache | None, input_ids: torch.Tensor) -> None:
    if prefix is None:
        return
    if prefix.first_block != lm.first_block:
        raise ValueError(f"the prefix cache ends at block {prefix.first_block}, the mask starts at {lm.first_block}")
    if not torch.equal(prefix.input_ids[: len(input_ids), : input_ids.shape[1]], input_ids):
        raise ValueError("the prefix cache holds other rows than the data being evaluated")


@torch.no_grad()
def kg_statistics(lm: MaskedLM, views: Sequence[str], enc: KGEncoding, batch_size: int,
                  prefix: PrefixCache | None = None, log_label: str | None = None,
                  log_every: int = 20) -> dict[str, dict[str, torch.Tensor | float]]:
    """Per view: the paper's KG perplexity, tail-token perplexity, NLL and rank of each fact.

    Each batch runs the frozen prefix once (or takes it from `prefix`, whose first rows are
    `enc`'s) and only the masked blocks per view. With `log_label`, progress lines (batches done,
    running perplexity) are logged every `log_every` batches or minute.
    """
    _check_prefix(lm, prefix, enc.input_ids)
    device = lm.device
    acc = {view: {"nll": [], "rank": [], "batch_ppl": [], "tail_nll": 0.0, "tail_tokens": 0} for view in views}
    progress = _progress(log_label, len(enc), batch_size, log_every)
    for batch_number, rows in enumerate(_batches(len(enc), batch_size), 1):
        batch = enc.subset(rows).to(device)
        inputs = (prefix.block_inputs(rows, batch.input_ids, batch.attention_mask) if prefix is not None
                  else lm.lower(batch.input_ids, batch.attention_mask))
        index = torch.arange(len(batch), device=device)
        gold = batch.gold_last()
        labels = batch.tail_labels()[:, 1:]
        # the output layer only where a target token is predicted (not at every prompt/padding position)
        tail_rows, tail_positions = (labels != -100).nonzero(as_tuple=True)
        for view in views:
            hidden = lm.upper(view, inputs, stochastic=False)
            predicting = lm.head(hidden[index, batch.last_index - 1]).float()
            nll = -F.log_softmax(predicting, dim=-1)[index, gold]
            a = acc[view]
            a["nll"].append(nll.cpu())
            a["rank"].append((predicting > predicting[index, gold][:, None]).sum(dim=-1).cpu())
            a["batch_ppl"].append(math.exp(nll.mean().item()))
            tail_logits = lm.head(hidden[tail_rows, tail_positions]).float()
            a["tail_nll"] += F.cross_entropy(tail_logits, labels[tail_rows, tail_positions], reduction="sum").item()
            a["tail_tokens"] += len(tail_rows)
        if progress:
            progress.update(batch_number, **_running_ppl({view: a["batch_ppl"] for view, a in acc.items()}))
    return {
        view: {
            "ppl": sum(a["batch_ppl"]) / len(a["batch_ppl"]),
            "tail_ppl": math.exp(a["tail_nll"] / a["tail_tokens"]),
            "nll": torch.cat(a["nll"]),
            "rank": torch.cat(a["rank"]).float(),
        }
        for view, a in acc.items()
    }


@torch.no_grad()
def lm_perplexity(lm: MaskedLM, views: Sequence[str], blocks: torch.Tensor, batch_size: int = 8,
                  prefix: PrefixCache | None = None, log_label: str | None = None,
                  log_every: int = 20) -> dict[str, float]:
    """Per view: mean over batches of exp(mean next-token NLL) over the text blocks (`log_label`:
    as in `kg_statistics`)."""
    _check_prefix(lm, prefix, blocks)
    device = lm.device
    batch_ppls: dict[str, list[float]] = {view: [] for view in views}
    progress = _progress(log_label, blocks.shape[0], batch_size, log_every)
    for batch_number, rows in enumerate(_batches(blocks.shape[0], batch_size), 1):
        ids = blocks[rows].to(device)
        inputs = prefix.block_inputs(rows, ids) if prefix is not None else lm.lower(ids)
        for view in views:
            logits = lm.head(lm.upper(view, inputs, stochastic=False)).float()
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
            batch_ppls[view].append(math.exp(loss.item()))
        if progress:
            progress.update(batch_number, **_running_ppl(batch_ppls))
    return {view: sum(values) / len(values) for view, values in batch_ppls.items()}


def stored_prefix(lm: MaskedLM, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  store: PrefixStore | None) -> PrefixCache | None:
    """Every row's prefix, read from (or added to) `store`; None without a store or a prefix."""
    if store is None or lm.first_block == 0:
        return None
    return PrefixCache.for_lm(lm, input_ids, attention_mask, budget_bytes=2**62, store=store)


def _kg_view_metrics(lm, views, facts, tokenizer, batch_size, where, with_paraphrases: bool,
                     store: PrefixStore | None = None) -> dict[str, dict]:
    enc = encode_verbalisations(facts, tokenizer, where)
    stats = kg_statistics(lm, views, enc, batch_size, stored_prefix(lm, enc.input_ids, enc.attention_mask, store),
                          log_label=f"evaluate {where}")
    out = {
        view: {
            "ppl": s["ppl"],
            "tail_ppl": s["tail_ppl"],
            "rank_mean": s["rank"].mean().item(),
            "logprob_mean": (-s["nll"]).mean().item(),
            "nll": s["nll"].tolist(),
            "rank": s["rank"].tolist(),
        }
        for view, s in stats.items()
    }
    paraphrases = paraphrase_items(facts) if with_paraphrases else []
    if paraphrases:
        para_enc = encode_verbalisations(paraphrases, tokenizer, f"{where} paraphrases")
        para = kg_statistics(lm, views, para_enc, batch_size,
                             stored_prefix(lm, para_enc.input_ids, para_enc.attention_mask, store),
                             log_label=f"evaluate {where} paraphrases")
        for view in views:
            out[view]["paraphrase_ppl"] = para[view]["ppl"]
    return out


def evaluate_views(lm: MaskedLM, tokenizer, views: Sequence[str], kgs: dict[str, Sequence[Fact]],
                   text_blocks: torch.Tensor | None, kg_batch_size: int = 250, lm_batch_size: int = 8,
                   paraphrase_kgs: Sequence[str] = ("targetkg",), prefix_store: PrefixStore | None = None) -> dict:
    """Raw metrics of each view on each KG and on the text: {view: {"targetkg": {...}, ..., "controllm": {...}}}.

    All views are computed batch by batch, so the frozen prefix runs once per batch for all of them.
    Paraphrase perplexity is computed for the KGs in `paraphrase_kgs` only: it answers whether the
    TargetKG's knowledge or only one phrasing was removed (a ControlKG's ~20 paraphrases per fact
    would multiply the evaluation's cost for a number no table shows). With a `prefix_store`, the
    prefix of each set is read from it when another job has computed it (kcs.prefix.PrefixStore).
    """
    results: dict[str, dict] = {view: {} for view in views}
    for name, facts in kgs.items():
        with_paraphrases = name in paraphrase_kgs
        for view, metrics in _kg_view_metrics(lm, views, facts, tokenizer, kg_batch_size, name, with_paraphrases,
                                              prefix_store).items():
            results[view][name] = metrics
    if text_blocks is not None:
        prefix = stored_prefix(lm, text_blocks, None, prefix_store)
        for view, ppl in lm_perplexity(lm, views, text_blocks, lm_batch_size, prefix,
                                       log_label="evaluate controllm").items():
            results[view]["controllm"] = {"ppl": ppl, "n_blocks": int(text_blocks.shape[0])}
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


def _inputs_fingerprint(targetkg, controlkg, controllm, config, controlkg_test=None) -> dict:
    from kcs.provenance import file_sha256

    out = {
        "targetkg": file_sha256(targetkg),
        "controlkg": file_sha256(controlkg),
        "controllm": [file_sha256(p) for p in controllm],
        "eval_batch_size": config.eval_batch_size,
        "eval_lm_batch_size": config.eval_lm_batch_size,
        "controllm_block_size": config.controllm_block_size,
    }
    if controlkg_test is not None:  # only when given, so fingerprints without a test split stay as they were
        out["controlkg_test"] = file_sha256(controlkg_test)
    return out


def _overlap_records(controlkg, controlkg_test=None) -> dict:
    """The facts each ControlKG split lost to the run's own TargetKG (kcs.kg.overlap_record; None
    where the split is used as given)."""
    from kcs.kg import overlap_record

    paths = {"controlkg": controlkg, "controlkg_test": controlkg_test}
    return {key: overlap_record(path) for key, path in paths.items() if path is not None}


def _load_inputs(tokenizer, targetkg, controlkg, controllm, config, controlkg_test=None):
    from kcs.encoding import read_text_blocks
    from kcs.kg import read_kg

    kgs = {"targetkg": read_kg(targetkg), "controlkg": read_kg(controlkg)}
    if controlkg_test is not None:
        kgs["controlkg_test"] = read_kg(controlkg_test)
    text = read_text_blocks(controllm, tokenizer, config.controllm_block_size)
    return kgs, text


def evaluate_full_model(model: str, targetkg, controlkg, controllm: Sequence, config, device=None,
                        controlkg_test=None) -> dict:
    """Metrics of the unmasked model, computed once per (model, data) and reused by every mask."""
    from kcs.models import load_model
    from kcs.provenance import provenance

    lm_model, tokenizer = load_model(model, device=device)
    lm = MaskedLM(lm_model, None).eval()
    kgs, text = _load_inputs(tokenizer, targetkg, controlkg, controllm, config, controlkg_test)
    raw = evaluate_views(lm, tokenizer, ["full"], kgs, text, config.eval_batch_size, config.eval_lm_batch_size)["full"]
    return {
        "kind": "full",
        "inputs": _inputs_fingerprint(targetkg, controlkg, controllm, config, controlkg_test),
        "controlkg_overlap": _overlap_records(controlkg, controlkg_test),
        "raw": raw,
        "provenance": provenance(config=config.to_dict(), model=str(model)),
    }


def mask_selection(metadata: dict) -> dict | None:
    """Which checkpoint of its run a learned mask is: the rule that chose it (`kcs select-checkpoint`),
    or the final mask (no step of its own); None for random and combined masks and hand-picked steps."""
    if "selection" in metadata:
        return json.loads(metadata["selection"])
    if metadata.get("kind", "learned") == "learned" and metadata.get("step") is None:
        return {"rule": "final"}
    return None


def evaluate_mask(model: str, mask_path, targetkg, controlkg, controllm: Sequence, config,
                  full_metrics: dict | None = None, device=None, controlkg_test=None,
                  prefix_store: str | None = None) -> dict:
    """The metrics file of one mask: sparsity and full vs remaining on TargetKG, ControlKG, ControlLM
    (and on the held-out ControlKG test split, `controlkg_test`, when given). `prefix_store`: a
    folder shared by the evaluations of one model (kcs.prefix.PrefixStore)."""
    from kcs.errors import KcsError
    from kcs.maskfile import load_mask
    from kcs.models import load_model
    from kcs.provenance import provenance

    lm_model, tokenizer = load_model(model, device=device)
    mask = load_mask(mask_path, model=lm_model)
    lm = MaskedLM(lm_model, mask).eval()
    kgs, text = _load_inputs(tokenizer, targetkg, controlkg, controllm, config, controlkg_test)
    fingerprint = _inputs_fingerprint(targetkg, controlkg, controllm, config, controlkg_test)
    if full_metrics is not None:
        recorded = full_metrics.get("inputs") or {}
        if recorded != fingerprint:
            differing = sorted(k for k in recorded.keys() | fingerprint.keys() if recorded.get(k) != fingerprint.get(k))
            raise KcsError(
                f"the --full-metrics file was computed on other data or batch sizes than this evaluation "
                f"(differing: {', '.join(differing)}); recompute it with `kcs evaluate-full` on the same files "
                "(--controlkg-test included) and config"
            )
        full = full_metrics["raw"]
    else:
        full = None  # computed below, in the same batches as the remaining model
    store = PrefixStore(prefix_store) if prefix_store else None
    views = evaluate_views(lm, tokenizer, ["full", "remaining"] if full_metrics is None else ["remaining"], kgs, text,
                           config.eval_batch_size, config.eval_lm_batch_size, prefix_store=store)
    subnetwork = evaluate_views(lm, tokenizer, ["subnetwork"], {"targetkg": kgs["targetkg"]}, None, config.eval_batch_size,
                                paraphrase_kgs=(), prefix_store=store)
    remaining = views["remaining"]
    full = views["full"] if full is None else full
    result = dict(mask.sparsity_report())
    result["targetkg"] = compare(full["targetkg"], remaining["targetkg"], kgs["targetkg"], subnetwork["subnetwork"]["targetkg"])
    result["controlkg"] = compare(full["controlkg"], remaining["controlkg"])
    if "controlkg_test" in kgs:
        result["controlkg_test"] = compare(full["controlkg_test"], remaining["controlkg_test"])
    result["controllm"] = compare(full["controllm"], remaining["controllm"])
    result["controlkg_overlap"] = _overlap_records(controlkg, controlkg_test)
    result["per_fact"] = {"targetkg": result["targetkg"].pop("per_fact")}
    metadata = getattr(mask, "metadata", {})
    result["mask"] = {"path": str(mask_path), "kind": metadata.get("kind", "learned"), "step": metadata.get("step"),
                      "selection": mask_selection(metadata)}
    result["provenance"] = provenance(config=config.to_dict(), model=str(model), inputs=fingerprint,
                                      mask_provenance=metadata.get("provenance"))
    return result
