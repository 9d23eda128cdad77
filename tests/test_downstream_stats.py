"""Confidence intervals and the paired bootstrap behind the downstream table."""

from __future__ import annotations

import numpy as np
import pytest

from kcs.downstream.stats import accuracy_summary, bootstrap_comparison, difference_interval, wilson_interval


def test_wilson_interval_matches_closed_form_values():
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(1.959964**2 / (10 + 1.959964**2), abs=1e-6)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0


def test_newcombe_difference_matches_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80 -> 0.2000 (0.0524, 0.3339)
    a = [True] * 56 + [False] * 14
    b = [True] * 48 + [False] * 32
    result = difference_interval(a, b)
    assert result["difference"] == pytest.approx(0.2)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_accuracy_summary_counts():
    s = accuracy_summary([True, False, True, True])
    assert (s["accuracy"], s["correct"], s["n"]) == (0.75, 3, 4) and s["ci_low"] < 0.75 < s["ci_high"]
    assert accuracy_summary([])["accuracy"] is None


def test_bootstrap_detects_a_drop_specific_to_linked_questions():
    rng = np.random.default_rng(0)
    n_linked, n_other, seeds = 40, 200, 3
    groups = {"linked": np.arange(n_linked), "other": np.arange(n_linked, n_linked + n_other)}
    full = (rng.random((seeds, n_linked + n_other)) < 0.7).astype(float)
    remaining = full.copy()
    remaining[:, :n_linked] = (rng.random((seeds, n_linked)) < 0.25)  # linked questions collapse
    random_start = full.copy()
    out = bootstrap_comparison({"full": full, "remaining": remaining, "random": random_start}, groups, n_boot=500)
    acc = out["accuracy"]
    assert acc["full"]["linked"]["estimate"] == pytest.approx(full[:, :n_linked].mean())
    assert acc["remaining"]["linked"]["n_seeds"] == 3 and acc["remaining"]["linked"]["n_questions"] == n_linked
    change = out["gap_change"]["remaining"]
    assert change["estimate"] < -0.3 and change["ci_high"] < 0 and change["p_boot"] < 0.01
    same = out["gap_change"]["random"]
    assert same["estimate"] == pytest.approx(0.0) and same["ci_low"] <= 0 <= same["ci_high"]
    assert out["group_change"]["remaining"]["other"]["estimate"] == pytest.approx(0.0)
    assert "full" not in out["gap_change"]


def test_bootstrap_is_reproducible_and_needs_shared_questions():
    groups = {"linked": np.arange(3), "other": np.arange(3, 8)}
    data = {"full": np.ones((2, 8)), "remaining": np.zeros((2, 8))}
    assert bootstrap_comparison(data, groups, n_boot=200, seed=4) == bootstrap_comparison(data, groups, n_boot=200,
                                                                                         seed=4)
    with pytest.raises(ValueError, match="same questions"):
        bootstrap_comparison({"full": np.ones((2, 8)), "remaining": np.ones((2, 7))}, groups, n_boot=200)
