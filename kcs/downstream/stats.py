"""Accuracy with confidence intervals and differences between groups and starting points.

One run (one seed): Wilson score interval per group, Newcombe's hybrid score interval for the
difference of two groups (independent proportions).

Several runs: a two-level bootstrap. Seeds are resampled within each starting point and questions
are resampled within each group, the same question resample for every starting point (so the
comparison between starting points is paired on questions). Accuracy = mean over seeds of the
per-seed accuracy = mean over questions of the per-question share of correct seeds. Intervals are
percentile intervals; `p_boot` is the two-sided bootstrap share of the other sign.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Mapping, Sequence

import numpy as np


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sensible at 0 %, 100 % and small n)."""
    if n == 0:
        return (float("nan"), float("nan"))
    z = _z(confidence)
    p = correct / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_summary(correct: Sequence[bool], confidence: float = 0.95) -> dict:
    k, n = int(sum(bool(c) for c in correct)), len(correct)
    low, high = wilson_interval(k, n, confidence)
    return {"accuracy": k / n if n else None, "correct": k, "n": n,
            "ci_low": None if n == 0 else low, "ci_high": None if n == 0 else high}


def difference_interval(correct_a: Sequence[bool], correct_b: Sequence[bool],
                        confidence: float = 0.95) -> dict:
    """Accuracy(a) - accuracy(b) with Newcombe's hybrid score interval (method 10)."""
    ka, na = int(sum(map(bool, correct_a))), len(correct_a)
    kb, nb = int(sum(map(bool, correct_b))), len(correct_b)
    if na == 0 or nb == 0:
        return {"difference": None, "ci_low": None, "ci_high": None}
    pa, pb = ka / na, kb / nb
    la, ua = wilson_interval(ka, na, confidence)
    lb, ub = wilson_interval(kb, nb, confidence)
    d = pa - pb
    low = d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    high = d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return {"difference": d, "ci_low": max(-1.0, low), "ci_high": min(1.0, high)}


def _interval(samples: np.ndarray, point: float, confidence: float) -> dict:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    below, above = float(np.mean(samples <= 0)), float(np.mean(samples >= 0))
    return {"estimate": float(point), "ci_low": float(low), "ci_high": float(high),
            "p_boot": float(min(1.0, 2 * min(below, above)))}


def bootstrap_comparison(correct: Mapping[str, np.ndarray], groups: Mapping[str, np.ndarray],
                         baseline: str | None = "full", contrast: tuple[str, str] = ("linked", "other"),
                         n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Accuracy per (start, group), group gaps, and gap changes against `baseline`, with intervals.

    `correct[start]` is a [seeds, questions] 0/1 array over one shared question order; `groups[g]`
    holds question indices into that order.
    """
    rng = np.random.default_rng(seed)
    starts = list(correct)
    n_questions = {arr.shape[1] for arr in correct.values()}
    if len(n_questions) != 1:
        raise ValueError("every starting point must be scored on the same questions")
    # seed resampling, per start: [B, questions] per-question share of correct seeds
    resampled = {}
    for start, arr in correct.items():
        arr = np.asarray(arr, dtype=float)
        idx = rng.integers(0, arr.shape[0], size=(n_boot, arr.shape[0]))
        resampled[start] = arr[idx].mean(axis=1)
    point_q = {start: np.asarray(arr, dtype=float).mean(axis=0) for start, arr in correct.items()}
    question_idx = {g: np.asarray(ix)[rng.integers(0, len(ix), size=(n_boot, len(ix)))]
                    for g, ix in groups.items() if len(ix)}
    rows = np.arange(n_boot)[:, None]
    acc_point = {s: {g: float(point_q[s][np.asarray(ix)].mean()) for g, ix in groups.items() if len(ix)}
                 for s in starts}
    acc_boot = {s: {g: resampled[s][rows, qi].mean(axis=1) for g, qi in question_idx.items()} for s in starts}
    out: dict = {"accuracy": {}, "gap": {}, "gap_change": {}, "group_change": {}}
    for s in starts:
        out["accuracy"][s] = {}
        for g in acc_point[s]:
            stats = _interval(acc_boot[s][g], acc_point[s][g], confidence)
            stats.pop("p_boot")
            seeds = np.asarray(correct[s], dtype=float)[:, np.asarray(groups[g])].mean(axis=1)
            stats.update(n_questions=len(groups[g]), n_seeds=int(seeds.size),
                         seed_sd=float(seeds.std(ddof=1)) if seeds.size > 1 else None)
            out["accuracy"][s][g] = stats
    a, b = contrast
    if a in acc_point[starts[0]] and b in acc_point[starts[0]]:
        for s in starts:
            out["gap"][s] = _interval(acc_boot[s][a] - acc_boot[s][b], acc_point[s][a] - acc_point[s][b],
                                      confidence)
        if baseline in starts:
            for s in starts:
                if s == baseline:
                    continue
                boot = (acc_boot[s][a] - acc_boot[s][b]) - (acc_boot[baseline][a] - acc_boot[baseline][b])
                point = out["gap"][s]["estimate"] - out["gap"][baseline]["estimate"]
                out["gap_change"][s] = _interval(boot, point, confidence)
    if baseline in starts:
        for s in starts:
            if s == baseline:
                continue
            out["group_change"][s] = {
                g: _interval(acc_boot[s][g] - acc_boot[baseline][g], acc_point[s][g] - acc_point[baseline][g],
                             confidence)
                for g in acc_point[s]
            }
    out["method"] = (f"two-level percentile bootstrap ({n_boot} resamples, {confidence:.0%}): seeds within each "
                     "starting point, questions within each group, paired across starting points")
    return out
