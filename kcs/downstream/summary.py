"""The downstream statistics from several `kcs finetune` result files (written as tables and a figure
by `kcs.reporting.downstream`).

Runs are grouped into experiments by (experiment name, model, finetuning style); inside one, every
run must have scored the same evaluation questions in the same groups. For each experiment and
stage (`before` = zero-shot, `after` = finetuned) and each starting point (full / remaining /
random) it reports the accuracy per group, the gap linked - other, the change of that gap against
the full model (negative: the linked questions lost more than the others) and the change of
each group's accuracy against the full model, all with bootstrap intervals (`stats`).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from kcs.downstream.experiment import RESULT_FORMAT, STARTS
from kcs.downstream.stats import bootstrap_comparison
from kcs.errors import KcsError
from kcs.readers import read_json

STAGES = ("before", "after")


def load_results(paths: Sequence[str | os.PathLike]) -> list[dict]:
    results = []
    for path in paths:
        result = read_json(path, "`kcs finetune` result file", made_by="kcs finetune")
        if result.get("kcs_format") != RESULT_FORMAT:
            raise KcsError(f"{path}: not a `kcs finetune` result (kcs_format != {RESULT_FORMAT!r})")
        result["_path"] = str(path)
        results.append(result)
    if not results:
        raise KcsError("no result files given")
    return results


def _key(result: dict) -> tuple[str, str, str]:
    return (result.get("experiment") or "", result.get("model") or "", result.get("style") or "")


def _start_order(starts) -> list[str]:
    return sorted(starts, key=lambda s: (STARTS.index(s) if s in STARTS else len(STARTS), s))


def summarise_experiment(runs: list[dict], n_boot: int, confidence: float, seed: int) -> dict:
    first = runs[0]
    ids, groups = first["predictions"]["ids"], first["groups"]
    seen: set[tuple[str, int]] = set()
    for run in runs:
        if run["predictions"]["ids"] != ids or run["groups"] != groups:
            raise KcsError(f"{run['_path']} and {first['_path']} scored different evaluation questions or groups; "
                           "summarise runs of different tasks or removed KGs separately (or set --experiment)")
        tag = (run["start"], run["seed"])
        if tag in seen:
            raise KcsError(f"{run['_path']}: a second run of start '{run['start']}' with seed {run['seed']}")
        seen.add(tag)
    index = {qid: i for i, qid in enumerate(ids)}
    group_idx = {g: np.array([index[q] for q in members], dtype=int) for g, members in groups.items()}
    gold = np.asarray(first["predictions"]["gold"])
    out: dict[str, Any] = {"starts": _start_order({r["start"] for r in runs}),
                           "groups": {g: len(m) for g, m in groups.items()},
                           "runs": [r["_path"] for r in runs], "stages": {}}
    for stage in STAGES:
        by_start: dict[str, list[np.ndarray]] = {}
        for run in runs:
            predicted = run["predictions"].get(stage)
            if predicted is None:
                continue
            by_start.setdefault(run["start"], []).append(np.asarray(predicted) == gold)
        if not by_start:
            continue
        correct = {s: np.stack(by_start[s]).astype(float) for s in _start_order(by_start)}
        out["stages"][stage] = bootstrap_comparison(correct, group_idx, n_boot=n_boot, confidence=confidence,
                                                    seed=seed)
    seconds = [r["train"].get("seconds_per_step") for r in runs if r["train"].get("seconds_per_step")]
    out["chance_accuracy"] = first.get("chance_accuracy")
    out["seconds_per_step_mean"] = float(np.mean(seconds)) if seconds else None
    out["train_seconds_mean"] = float(np.mean([r["train"]["train_seconds"] for r in runs]))
    return out


def summarise(results: list[dict], n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    experiments: dict[tuple[str, str, str], list[dict]] = {}
    for result in results:
        experiments.setdefault(_key(result), []).append(result)
    return {"experiments": [
        {"experiment": k[0], "model": k[1], "style": k[2], **summarise_experiment(runs, n_boot, confidence, seed)}
        for k, runs in experiments.items()
    ], "confidence": confidence, "n_boot": n_boot}

