"""The smoke configuration end to end on this machine: outputs, a no-op rerun, the HTML report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workflow_fixtures import load_config, run_snakemake

pytestmark = pytest.mark.integration

SMOKE = load_config()


def test_every_table_and_figure_is_written(smoke_run):
    for name in ("main", "kgs", "ablations", "compute_cost", "downstream"):
        assert (smoke_run.results / "tables" / f"{name}.csv").stat().st_size > 0, name
    for name in ("main", "kgs", "ablations", "compute_cost"):
        assert "\\begin{tabular}" in (smoke_run.results / "tables" / f"{name}.tex").read_text()
        assert "| --- |" in (smoke_run.results / "tables" / f"{name}.md").read_text()
    for name in ("density", "delta_ppl", "curves", "overlap", "downstream"):
        assert (smoke_run.results / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name


def test_main_table_has_every_model_and_method(smoke_run):
    main = smoke_run.table("main")
    models = [m["name"] for m in SMOKE["models"]]
    assert list(zip(main["model"], main["method"])) == [(m, x) for m in models for x in ("learned", "random")]
    table_kgs = [k for k in SMOKE["targetkgs"] if k.get("tables", True)]
    runs = len(table_kgs) * len(SMOKE["seeds"])
    assert list(main["n"]) == [runs, runs * SMOKE["random_draws"]] * len(models)  # random: every draw of every run
    assert ((main["sparsity_mean"] > 0.5) & (main["sparsity_mean"] < 1)).all()  # non-empty subnetworks


def test_random_baseline_matches_each_learned_subnetwork(smoke_run):
    runs = smoke_run.table("runs")
    keys = ["model", "kg", "variant", "seed"]
    pairs = runs[runs["method"] == "learned"].merge(runs[runs["method"] == "random"], on=keys, suffixes=("", "_random"))
    assert len(pairs) == len(SMOKE["models"]) * 2 * len(SMOKE["seeds"]) * SMOKE["random_draws"]
    assert sorted(set(pairs["draw_random"])) == list(range(1, SMOKE["random_draws"] + 1))
    assert (pairs["removed_weights"] == pairs["removed_weights_random"]).all()
    # both evaluated against the same full-model numbers
    assert (pairs["targetkg_ppl_full"] == pairs["targetkg_ppl_full_random"]).all()


def test_full_model_is_evaluated_once_per_model_and_targetkg(smoke_run):
    full = sorted(p.relative_to(smoke_run.results).as_posix() for p in (smoke_run.results / "full_model").rglob("*.json"))
    assert full == sorted(f"full_model/{m['name']}/{k}.json" for m in SMOKE["models"] for k in ("fruit", "swimming"))
    runs = smoke_run.table("runs")
    # every seed, variant and method of a (model, TargetKG) reuses the same full-model numbers
    assert (runs.groupby(["model", "kg"])[["targetkg_ppl_full", "controllm_ppl_full", "controlkg_test_ppl_full"]]
            .nunique() == 1).all().all()


def test_every_mask_is_evaluated_on_the_held_out_controlkg_test_split(smoke_run):
    test_facts = len((smoke_run.workdir / SMOKE["controlkgs"][0]["triplets"]["test"]).read_text().splitlines())
    runs = smoke_run.table("runs")
    assert set(runs["method"]) == {"learned", "random"} and len(set(runs["variant"])) == 2
    assert runs["controlkg_test_ppl_remaining"].notna().all() and (runs["controlkg_test_n"] == test_facts).all()
    assert (runs["controlkg_test_n"] != runs["controlkg_n"]).all()  # its own facts, not the validation split's
    metrics = json.loads((smoke_run.results / "metrics/tiny-gpt2/fruit/default/seed1/random.json").read_text())
    assert set(metrics["controlkg_test"]) == set(metrics["controlkg"])
    for name in ("main", "kgs"):
        table = smoke_run.table(name)
        assert table["controlkg_test_ppl_remaining_mean"].notna().all(), name
        assert "ControlKG (test) PPL remaining" in (smoke_run.results / "tables" / f"{name}.md").read_text(), name
    # what training read (its command line, recorded in the mask): never the test split
    learned = sorted((smoke_run.results / "metrics").rglob("learned.json"))
    assert learned
    for path in learned:
        recorded = json.dumps(json.loads(path.read_text())["provenance"]["mask_provenance"])
        assert "--controlkg-val" in recorded and "test.jsonl" not in recorded, path


def test_every_metrics_file_names_the_deviations_from_the_paper_with_their_reasons(smoke_run):
    reasons = SMOKE["training"]["deviations"]
    ablation = SMOKE["ablations"][0]
    files = sorted((smoke_run.results / "metrics").rglob("*.json"))
    assert files
    for path in files:
        deviations = json.loads(path.read_text())["deviations"]
        assert {key: deviations[key]["why"] for key in reasons} == reasons, path
        assert deviations["steps"]["used"] == SMOKE["training"]["steps"] and deviations["steps"]["paper"] == 40_000
        assert ("use_controllm" in deviations) == (f"/{ablation['name']}/" in path.as_posix()), path
    ablated = json.loads(next(p for p in files if f"/{ablation['name']}/" in p.as_posix()).read_text())["deviations"]
    assert ablated["use_controllm"]["why"] == f"ablation {ablation['name']}: {ablation['description']}"
    assert "Hyper-parameters that are not the paper's: steps 6 (paper: 40000); init_p 0.5 (paper: 0.45)" in (
        smoke_run.results / "tables" / "main.md").read_text()


def test_compute_cost_covers_the_heavy_steps(smoke_run):
    cost = smoke_run.table("compute_cost")
    steps = set(cost["rule"])
    assert {"train_mask", "evaluate_mask", "evaluate_full", "prepare_model", "verbalise_targetkg", "finetune"} <= steps
    train = cost[(cost["rule"] == "train_mask") & (cost["model"] == "tiny-gpt2")].iloc[0]
    assert train["n"] == 2 * len(SMOKE["seeds"]) + 2 + 1  # 2 KGs x seeds, the ablation, the downstream KG
    assert train["runtime_s_mean"] > 0 and train["max_rss_mb_max"] > 50


def test_training_curves_are_kept(smoke_run):
    curves = pd.read_csv(smoke_run.results / "curves/tiny-llama/swimming/default/seed2.csv")
    assert list(curves["step"]) == list(range(1, SMOKE["training"]["steps"] + 1))


def test_rerun_of_the_finished_dag_does_nothing(smoke_run):
    result = run_snakemake(smoke_run.workdir, "-n", "--cores", "all", "--configfile", "configs/smoke.yaml")
    assert "Nothing to be done" in result.stdout, result.stdout[-2000:]


def test_html_report_has_every_table_and_figure(smoke_run):
    report = smoke_run.workdir / "report.html"
    run_snakemake(smoke_run.workdir, "--configfile", "configs/smoke.yaml", "--report", str(report))
    html = report.read_text()
    for name in ("main.csv", "kgs.csv", "ablations.csv", "compute_cost.csv", "downstream.csv", "runs.csv",
                 "density.png", "delta_ppl.png", "curves.png", "overlap.png", "downstream.png",
                 "combined.csv", "paraphrases.csv", "structure.csv",
                 "combined.png", "paraphrases.png", "structure.png", "steps.png"):
        assert name in html, name
