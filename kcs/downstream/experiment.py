"""One downstream run: score the evaluation questions, finetune, score them again, by group.

The result (a JSON-serialisable dict, format `downstream/1`) holds the groups, the accuracy of
each group before (zero-shot) and after finetuning with Wilson intervals, the linked-minus-other
difference with Newcombe's interval, the training curve and timings, a check that the removed
weights are still zero, and every question's prediction (so `summary` can pool seeds and pair
starting points on the same questions).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import torch
from torch import nn

from kcs.downstream.choice_scoring import check_head_path
from kcs.downstream.finetune import DEFAULT_TEMPLATE, FinetuneConfig, Finetuner, Predictions, config_dict
from kcs.downstream.mcqa import MCTask, prepare
from kcs.downstream.stats import accuracy_summary, difference_interval
from kcs.kg import Fact

log = logging.getLogger(__name__)

RESULT_FORMAT = "downstream/1"
STARTS = ("full", "remaining", "random")


def stage_summary(predictions: Predictions, groups: dict[str, list[str]], confidence: float = 0.95) -> dict:
    correct = dict(zip(predictions.ids, predictions.correct))
    by_group = {g: [correct[qid] for qid in ids] for g, ids in groups.items()}
    return {
        "all": accuracy_summary(predictions.correct, confidence),
        "groups": {g: accuracy_summary(c, confidence) for g, c in by_group.items()},
        "linked_minus_other": difference_interval(by_group["linked"], by_group["other"], confidence),
    }


def run_experiment(model: nn.Module, tokenizer, task: MCTask, removed_facts: Sequence[Fact], *,
                   config: FinetuneConfig, control_facts: Sequence[Fact] = (),
                   removed: dict[str, torch.Tensor] | None = None, seed: int = 0, start: str = "full",
                   experiment: str = "", evaluate_before: bool = True) -> dict[str, Any]:
    """Finetune `model` (with `removed` zeroed and kept at zero) and evaluate it by group."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    if config.prompt_template is None:
        config = config.model_copy(update={"prompt_template": task.prompt_template or DEFAULT_TEMPLATE})
    prepared = prepare(task, removed_facts, control_facts, config.linked_in_train)
    log.info("downstream task: %d training questions, %d evaluation questions (%s)", len(prepared.train),
             len(prepared.evaluation), ", ".join(f"{g} {len(ids)}" for g, ids in prepared.groups.items()))
    finetuner = Finetuner(model, tokenizer, config, removed=removed, seed=seed)
    check_head_path(model, finetuner.scorer, prepared.evaluation)
    t0 = time.perf_counter()
    before = finetuner.evaluate(prepared.evaluation) if evaluate_before else None
    before_seconds = time.perf_counter() - t0
    train_stats = finetuner.train(prepared.train)
    t0 = time.perf_counter()
    after = finetuner.evaluate(prepared.evaluation)
    after_seconds = time.perf_counter() - t0
    nonzero = finetuner.removed_nonzero()
    if nonzero:
        raise RuntimeError(f"{nonzero} removed weights became non-zero during finetuning (a bug in kcs)")
    gold = [q.answer_index for q in prepared.evaluation]
    result: dict[str, Any] = {
        "kcs_format": RESULT_FORMAT,
        "experiment": experiment,
        "start": start,
        "seed": seed,
        "style": config.style,
        "config": config_dict(config),
        "counts": prepared.counts,
        "chance_accuracy": sum(1.0 / len(q.choices) for q in prepared.evaluation) / len(prepared.evaluation),
        "removal": {"removed_weights": finetuner.removed_count, "removed_nonzero_after": nonzero,
                    "removed_matrices": len(finetuner.removed)},
        "groups": prepared.groups,
        "before": stage_summary(before, prepared.groups) if before else None,
        "after": stage_summary(after, prepared.groups),
        "train": train_stats,
        "timing": {"evaluate_before_seconds": round(before_seconds, 3),
                   "evaluate_after_seconds": round(after_seconds, 3),
                   "total_seconds": round(time.perf_counter() - started, 3)},
        "predictions": {
            "ids": after.ids,
            "gold": gold,
            "before": before.predicted if before else None,
            "after": after.predicted,
            "scores_before": before.scores if before else None,
            "scores_after": after.scores,
        },
        "links": prepared.links,
    }
    acc = result["after"]["groups"]
    log.info("after finetuning (%s, seed %d): linked %.3f (n=%d), other %.3f (n=%d)", start, seed,
             acc["linked"]["accuracy"], acc["linked"]["n"], acc["other"]["accuracy"], acc["other"]["n"])
    return result
