"""The paper's tables from metrics files: aggregation (mean, std, n), formats, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from kcs.errors import KcsError
from kcs.reporting.collect import collect_metrics
from kcs.reporting.formats import to_csv, to_latex, to_markdown
from kcs.reporting.layout import parse_path, pattern_regex
from kcs.reporting.tables import ablation_table, compute_cost_table, kg_table, main_table, read_benchmarks

LAYOUT = "res/metrics/{model}/{kg}/{variant}/seed{seed}/{method}.json"


def metrics(sparsity: float, target: tuple[float, float], control: tuple[float, float], lm: tuple[float, float]) -> dict:
    def block(full: float, remaining: float) -> dict:
        return {"ppl_full": full, "ppl_remaining": remaining, "delta_ppl": remaining - full,
                "relative_delta_ppl": remaining / full - 1, "n": 10}
    return {"sparsity": sparsity, "removed_weights": 10, "masked_weights": 1000,
            "targetkg": block(*target), "controlkg": block(*control), "controllm": block(*lm),
            "per_fact": {"targetkg": []}, "provenance": {}}


def write_run(root: Path, model: str, kg: str, variant: str, seed: int, method: str, data: dict) -> Path:
    path = root / f"res/metrics/{model}/{kg}/{variant}/seed{seed}/{method}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = {"model": model, "kg": kg, "variant": variant, "seed": seed, "method": method}
    path.write_text(json.dumps({"labels": labels, **data}))
    return path


@pytest.fixture
def runs(tmp_path, monkeypatch) -> pd.DataFrame:
    """2 models (in config order 'small', 'big') x 2 KGs x 2 seeds, learned and random, + an ablation."""
    monkeypatch.chdir(tmp_path)
    files = []
    for model, scale in (("small", 1.0), ("big", 2.0)):
        for k, kg in enumerate(("building", "change")):
            for seed in (84, 1318):
                bump = k + (seed == 1318)  # 0, 1, 1, 2 over the four (kg, seed) runs
                learned = metrics(0.98 + 0.001 * bump, (10 * scale, 40 * scale + bump), (20, 20.5), (30, 30.3))
                files.append(write_run(Path("."), model, kg, "default", seed, "learned", learned))
                files.append(write_run(Path("."), model, kg, "default", seed, "random",
                                       metrics(0.98 + 0.001 * bump, (10 * scale, 11 * scale), (20, 21), (30, 31))))
    for seed in (84, 1318):
        files.append(write_run(Path("."), "small", "building", "no_controllm", seed, "learned",
                               metrics(0.95, (10, 90), (20, 25), (30, 60))))
    return collect_metrics([f.as_posix() for f in files])


def test_layout_parses_fields_and_names_misfits():
    # only Snakemake's benchmark files are labelled by their path
    assert parse_path(LAYOUT, "res/metrics/gpt2/building.n.01/default/seed84/learned.json") == {
        "model": "gpt2", "kg": "building.n.01", "variant": "default", "seed": "84", "method": "learned"}
    assert pattern_regex("a/{x}/{x}.txt").match("a/1/1.txt") and not pattern_regex("a/{x}/{x}.txt").match("a/1/2.txt")
    with pytest.raises(KcsError, match=r"res/other/x\.json.*does not fit.*\{model\}"):
        parse_path(LAYOUT, "res/other/x.json")


def test_collect_labels_rows_and_types(runs):
    assert len(runs) == 18
    assert runs["seed"].dtype.kind == "i"
    assert {"targetkg_ppl_full", "controllm_relative_delta_ppl", "sparsity"} <= set(runs.columns)


def test_collect_reads_the_labels_from_the_content_not_the_path(tmp_path):
    moved = tmp_path / "anywhere.json"
    data = metrics(0.98, (10, 40), (20, 20.5), (30, 30.3))
    moved.write_text(json.dumps({"labels": {"model": "gpt2", "kg": "fruit", "seed": 7, "method": "random-3"}, **data}))
    row = collect_metrics([moved]).iloc[0]
    assert (row["model"], row["kg"], row["seed"], row["method"], row["draw"]) == ("gpt2", "fruit", 7, "random", 3)
    unlabelled = tmp_path / "unlabelled.json"
    unlabelled.write_text(json.dumps(data))
    with pytest.raises(KcsError, match=r"unlabelled\.json: no label 'model', 'method'.*--label"):
        collect_metrics([unlabelled])


def test_main_table_means_stds_and_order(runs):
    table = main_table(runs).frame
    # config order (first appearance) of models, learned before random; the ablation is left out
    assert list(zip(table["model"], table["method"])) == [
        ("small", "learned"), ("small", "random"), ("big", "learned"), ("big", "random")]
    assert list(table["n"]) == [4, 4, 4, 4]
    small = table.iloc[0]
    assert small["targetkg_ppl_remaining_mean"] == pytest.approx(41.0)  # 40 + mean(0, 1, 1, 2)
    assert small["targetkg_ppl_remaining_std"] == pytest.approx(pd.Series([0, 1, 1, 2]).std())  # sample std
    assert small["targetkg_relative_delta_ppl_mean"] == pytest.approx(3.1)
    assert small["sparsity_mean"] == pytest.approx(0.981)
    assert table.iloc[3]["targetkg_ppl_remaining_mean"] == pytest.approx(22.0)


def test_main_table_formats(runs):
    summary = main_table(runs)
    markdown = to_markdown(summary)
    assert "| small | Knowledge-critical subnetwork | 4 | 98.10% ± 0.08% |" in markdown
    assert "+310.0% ± 8.2%" in markdown  # TargetKG relative change of 'small'
    latex = to_latex(summary)
    assert "\\begin{tabular}" in latex and "\\toprule" in latex and "$\\pm$" in latex
    assert "\\multicolumn{4}{c}{TargetKG}" in latex and "98.10\\%" in latex
    csv = pd.read_csv(pd.io.common.StringIO(to_csv(summary)))
    assert {"model", "method", "n", "sparsity_mean", "sparsity_std", "targetkg_delta_ppl_mean"} <= set(csv.columns)


def test_latex_escapes_names(runs):
    runs = runs.assign(model=runs["model"].str.replace("small", "tiny_gpt2&co"))
    assert "tiny\\_gpt2\\&co" in to_latex(main_table(runs))


def test_kg_table_over_seeds(runs):
    table = kg_table(runs, kg_order=["change", "building"]).frame
    assert list(table["kg"][:4]) == ["change", "change", "building", "building"]
    row = table[(table["model"] == "small") & (table["kg"] == "change") & (table["method"] == "learned")].iloc[0]
    assert row["n"] == 2 and row["targetkg_ppl_remaining_mean"] == pytest.approx(41.5)


def test_ablation_table_compares_on_the_same_kgs(runs):
    table = ablation_table(runs).frame
    assert list(zip(table["model"], table["variant"])) == [("small", "default"), ("small", "no_controllm")]
    default = table.iloc[0]
    assert default["n"] == 2  # only 'building', the TargetKG the ablation ran on
    assert default["targetkg_ppl_remaining_mean"] == pytest.approx(40.5)
    assert table.iloc[1]["controllm_relative_delta_ppl_mean"] == pytest.approx(1.0)
    assert math.isnan(table.iloc[1]["targetkg_ppl_remaining_std"]) is False


def test_ablation_table_needs_an_ablation(runs):
    with pytest.raises(KcsError, match="no ablation"):
        ablation_table(runs[runs["variant"] == "default"])


def test_single_run_has_no_std(runs):
    one = runs[(runs["model"] == "big") & (runs["kg"] == "change") & (runs["seed"] == 84)]
    summary = main_table(one)
    assert math.isnan(summary.frame.iloc[0]["sparsity_std"])
    assert "| 1 | 98.10% |" in to_markdown(summary)


def test_controlkg_test_split_is_its_own_dataset_when_the_metrics_have_it(runs, tmp_path):
    # metrics without a test split: no such column anywhere
    assert not [c for c in runs.columns if c.startswith("controlkg_test")]
    assert "ControlKG (test)" not in to_markdown(main_table(runs)) + to_latex(kg_table(runs))
    files = []
    for seed, held_out in ((1, (20.0, 24.0)), (2, (20.0, 26.0))):
        data = metrics(0.98, (10, 40), (20, 20.5), (30, 30.3))
        data["controlkg_test"] = dict(data["controlkg"], ppl_full=held_out[0], ppl_remaining=held_out[1],
                                      delta_ppl=held_out[1] - held_out[0], relative_delta_ppl=held_out[1] / held_out[0] - 1)
        files.append(write_run(tmp_path / "t", "small", "building", "default", seed, "learned", data).as_posix())
    tested = collect_metrics(files)
    assert tested["controlkg_test_ppl_remaining"].tolist() == [24.0, 26.0]
    summary = main_table(tested)
    row = summary.frame.iloc[0]
    assert row["controlkg_test_ppl_remaining_mean"] == pytest.approx(25.0)
    assert row["controlkg_test_relative_delta_ppl_mean"] == pytest.approx(0.25)
    assert row["controlkg_ppl_remaining_mean"] == pytest.approx(20.5)  # the validation split stays apart
    markdown = to_markdown(summary)
    assert "ControlKG (test) PPL remaining" in markdown and "25.00 ± 1.41" in markdown
    assert "\\multicolumn{4}{c}{ControlKG (test)}" in to_latex(summary)
    assert kg_table(tested).frame.iloc[0]["controlkg_test_relative_delta_ppl_mean"] == pytest.approx(0.25)


def test_metrics_file_errors_name_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = write_run(Path("."), "m", "k", "default", 1, "learned", {"sparsity": 0.9})
    with pytest.raises(KcsError, match=r"seed1/learned\.json: no 'targetkg' section"):
        collect_metrics([bad.as_posix()])
    bad.write_text("{not json")
    with pytest.raises(KcsError, match=r"learned\.json: not valid JSON"):
        collect_metrics([bad.as_posix()])


BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_compute_cost_from_benchmarks(tmp_path):
    files = []
    for rule, model, job, seconds, rss in (("train_mask", "gpt2", "a", 100.0, 2000.0), ("train_mask", "gpt2", "b", 300.0, 2600.0),
                                           ("evaluate", "gpt2", "a", 10.0, 900.0), ("train_mask", "llama", "a", 50.0, "NA")):
        path = tmp_path / "bench" / rule / model / f"{job}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        # a retried job appends a row; the last one is the run that produced the output
        path.write_text(BENCH_HEADER + "1.0\t0:00:01\t1\t1\t1\t1\t0\t0\t1\t1\n"
                        + f"{seconds}\t0:01:40\t{rss}\t1\t1\t1\t0\t0\t90\t{seconds}\n")
        files.append(path)
    table = compute_cost_table(read_benchmarks(files, str(tmp_path / "bench/{rule}/{model}/{job}.tsv"))).frame
    row = table[(table["rule"] == "train_mask") & (table["model"] == "gpt2")].iloc[0]
    assert row["n"] == 2 and row["runtime_s_mean"] == pytest.approx(200.0) and row["max_rss_mb_max"] == pytest.approx(2600.0)
    llama = table[table["model"] == "llama"].iloc[0]
    assert math.isnan(llama["max_rss_mb_mean"]) and llama["runtime_s_mean"] == pytest.approx(50.0)
    with pytest.raises(KcsError, match="needs a \\{rule\\} field"):
        compute_cost_table(read_benchmarks(files[:1], str(tmp_path / "bench/train_mask/{model}/{job}.tsv")))
