"""The benchmark script runs the step `kcs train` takes and reports what it measured."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from kcs import mask_sample

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "mask_step.py"


@pytest.fixture(scope="module")
def mask_step_benchmark():
    spec = importlib.util.spec_from_file_location("mask_step_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("shape", ["tiny-gpt2", "tiny-llama"])
def test_benchmark_reports_cached_and_uncached_steps(mask_step_benchmark, shape, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert mask_step_benchmark.main(["--shape", shape, "--data", "tiny", "--repeats", "1", "--no-memory",
                                     "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert set(row["seconds"]) == {"mask_cached", "mask_uncached", "finetune", "eval_cached", "eval_uncached"}
    assert all(value > 0 for value in row["seconds"].values())
    # the tiny data fit the default budgets: every row of every set is cached
    assert row["caches"]["prefix/controllm"] == {"rows": 12, "of": 12, "mb": pytest.approx(0.0, abs=0.1)}
    assert row["caches"]["reference/controllm"]["rows"] == 12
    assert "rows cached: prefix/targetkg 6/6" in capsys.readouterr().out


def test_a_budget_too_small_caches_part_of_the_rows(mask_step_benchmark, tmp_path):
    out = tmp_path / "bench.json"
    mask_step_benchmark.main(["--shape", "tiny-gpt2", "--data", "paper", "--repeats", "1", "--warmup", "0", "--no-memory",
                              "--no-eval", "--prefix-cache-mb", "20", "--reference-cache-mb", "0", "--out", str(out)])
    (row,) = json.loads(out.read_text())["results"]
    controllm = row["caches"]["prefix/controllm"]
    assert 0 < controllm["rows"] < controllm["of"] == 4656
    assert row["caches"]["reference/controllm"]["rows"] == 0


def test_dry_run_benchmark_counts_the_jobs_it_plans(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("dry_run_benchmark", BENCHMARK.parent / "dry_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "dry-run.json"
    assert module.main(["--config", "smoke", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["config"] == "smoke" and row["jobs"] > 100 and row["seconds"] > 0
    assert row["ms_per_job"] == pytest.approx(1000 * row["seconds"] / row["jobs"], rel=0.01)
    assert f"smoke: {row['jobs']} jobs planned" in capsys.readouterr().out


@pytest.mark.parametrize("shape", ["tiny-gpt2", "tiny-llama"])
def test_mask_sample_benchmark_splits_the_elementwise_cost(shape):
    spec = importlib.util.spec_from_file_location("mask_sample_benchmark", BENCHMARK.parent / "mask_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.measure(shape, repeats=1)
    assert result["masked_weights"] > 0 and result["blocks"] == [2, 3]  # the top half of 4 blocks
    assert all(result[key] > 0 for key in ("probabilities_s", "noise_s", "forward_s", "forward_backward_s", "step_s",
                                           "step_s_torch_executor"))
    assert result["fused_over_torch_executor"] == pytest.approx(result["step_s"] / result["step_s_torch_executor"])
    assert module.mask_sample.fused_applies is mask_sample.fused_applies  # the executor switch is undone
