"""The tables people read: the paper's main table, the ablation table, per-KG detail, compute cost.

All numbers are means and sample standard deviations over TargetKGs and seeds (docs/method.md 9).
Perplexities follow docs/method.md 4.1-4.2: `ppl_full` (the pretrained model),
`ppl_remaining` (the model with the subnetwork removed), `delta_ppl` = remaining - full and
`relative_delta_ppl` = remaining / full - 1. Sparsity counts only the masked weight matrices (docs/method.md 1.6).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kcs.errors import KcsError
from kcs.reporting.formats import Metric, Summary, summarise
from kcs.reporting.layout import parse_paths

# controlkg is the ControlKG's validation split; controlkg_test its held-out test split, whose columns
# appear only when the metrics have one (summarise skips columns the runs table lacks).
DATASET_LABELS = {"targetkg": "TargetKG", "controlkg": "ControlKG", "controlkg_test": "ControlKG (test)",
                  "controllm": "ControlLM"}
METHOD_LABELS = {"learned": "Knowledge-critical subnetwork", "random": "Random subnetwork (same size)"}
DEFAULT_VARIANT = "default"

SPARSITY = Metric("sparsity", "Sparsity", "pct")


def _ppl_metrics(keys: tuple[str, ...]) -> list[Metric]:
    labels = {"ppl_full": ("PPL full", "ppl"), "ppl_remaining": ("PPL remaining", "ppl"),
              "delta_ppl": ("ΔPPL", "signed"), "relative_delta_ppl": ("ΔPPL rel.", "relpct")}
    return [Metric(f"{dataset}_{key}", labels[key][0], labels[key][1], DATASET_LABELS[dataset])
            for dataset in DATASET_LABELS for key in keys]


MAIN_METRICS = [SPARSITY] + _ppl_metrics(("ppl_full", "ppl_remaining", "delta_ppl", "relative_delta_ppl"))
KG_METRICS = [SPARSITY] + _ppl_metrics(("ppl_full", "ppl_remaining", "relative_delta_ppl"))
ABLATION_METRICS = [SPARSITY] + _ppl_metrics(("ppl_remaining", "relative_delta_ppl"))


def _require(runs: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in runs.columns]
    if missing:
        raise KcsError(f"the runs table lacks column(s) {', '.join(missing)} needed for the {what}; "
                       "results of the pipeline carry these labels; elsewhere label the runs (kcs train --label KEY=VALUE)")


def _default_only(runs: pd.DataFrame) -> pd.DataFrame:
    if "variant" in runs.columns:
        runs = runs[runs["variant"] == DEFAULT_VARIANT]
    if runs.empty:
        raise KcsError(f"no evaluation of the '{DEFAULT_VARIANT}' training variant in the runs table")
    return runs


def main_table(runs: pd.DataFrame, model_order: list[str] | None = None) -> Summary:
    """Per model and method: the learned subnetwork vs a random one of the same size."""
    _require(runs, ["model", "method"], "main table")
    data = _default_only(runs)
    frame = summarise(data, ["model", "method"], MAIN_METRICS,
                      orders={"model": model_order, "method": list(METHOD_LABELS)})
    return Summary(frame, ["model", "method"], MAIN_METRICS, {"model": "Model", "method": "Method"},
                   {"method": METHOD_LABELS}, "Knowledge-critical vs random subnetworks",
                   "Mean ± standard deviation over TargetKGs and seeds; n = number of (TargetKG, seed) runs. "
                   "Sparsity counts the masked weight matrices only. ΔPPL = remaining − full; "
                   "ΔPPL rel. = remaining / full − 1." + deviations_note(data))


def deviations_note(runs: pd.DataFrame) -> str:
    """What the table's runs changed of the paper's hyper-parameters (the runs table's `deviations`),
    per model where the models differ; nothing when the runs do not record it."""
    if "deviations" not in runs.columns or runs["deviations"].isna().any():
        return ""
    per_model = {model: sorted(set(group["deviations"])) for model, group in runs.groupby("model", sort=False)}
    texts = {" | ".join(texts) for texts in per_model.values()}
    if texts == {"none"}:
        return " Every run used the paper's hyper-parameters."
    if len(texts) == 1:
        return f" Hyper-parameters that are not the paper's: {texts.pop()}."
    return " Hyper-parameters that are not the paper's, " + " ".join(
        f"{model}: {' | '.join(group)}." for model, group in per_model.items())


def kg_table(runs: pd.DataFrame, model_order: list[str] | None = None, kg_order: list[str] | None = None) -> Summary:
    """Per model, TargetKG and method, over seeds."""
    _require(runs, ["model", "kg", "method"], "per-KG table")
    data = _default_only(runs)
    frame = summarise(data, ["model", "kg", "method"], KG_METRICS,
                      orders={"model": model_order, "kg": kg_order, "method": list(METHOD_LABELS)})
    return Summary(frame, ["model", "kg", "method"], KG_METRICS,
                   {"model": "Model", "kg": "TargetKG", "method": "Method"}, {"method": METHOD_LABELS},
                   "Per-TargetKG detail", "Mean ± standard deviation over seeds.")


def ablation_table(runs: pd.DataFrame, model_order: list[str] | None = None,
                   variant_order: list[str] | None = None) -> Summary:
    """Learned subnetworks of each training variant, on the (model, TargetKG, seed) runs ablated.

    The default variant's row of a model is computed over the same TargetKGs as its ablations, so
    the rows of one model compare like with like.
    """
    _require(runs, ["model", "kg", "variant", "method"], "ablation table")
    learned = runs[runs["method"] == "learned"]
    ablated = learned[learned["variant"] != DEFAULT_VARIANT]
    if ablated.empty:
        raise KcsError("the runs table has no ablation (no variant other than 'default')")
    pieces = []
    for model, rows in ablated.groupby("model", sort=False):
        default = learned[(learned["model"] == model) & (learned["variant"] == DEFAULT_VARIANT)
                          & learned["kg"].isin(set(rows["kg"]))]
        pieces += [default, rows]
    data = pd.concat(pieces, ignore_index=True)
    orders = {"model": model_order, "variant": [DEFAULT_VARIANT] + list(variant_order or [])}
    frame = summarise(data, ["model", "variant"], ABLATION_METRICS, orders=orders)
    return Summary(frame, ["model", "variant"], ABLATION_METRICS, {"model": "Model", "variant": "Training variant"},
                   {}, "Ablations of the training objective",
                   "Learned subnetworks only; mean ± standard deviation over the ablated TargetKGs and seeds.")


COMBINATION_LABELS = {"union": "Union", "intersection": "Intersection", "majority": "Majority"}


def combined_table(runs: pd.DataFrame, model_order: list[str] | None = None) -> Summary:
    """Subnetworks combined across seeds (union, intersection, majority), removed and evaluated, each
    against a random subnetwork of the same size per matrix."""
    _require(runs, ["model", "combination", "method"], "seed-combined table")
    frame = summarise(runs, ["model", "combination", "method"], ABLATION_METRICS,
                      orders={"model": model_order, "combination": list(COMBINATION_LABELS),
                              "method": list(METHOD_LABELS)})
    return Summary(frame, ["model", "combination", "method"], ABLATION_METRICS,
                   {"model": "Model", "combination": "Seed masks combined", "method": "Method"},
                   {"combination": COMBINATION_LABELS, "method": METHOD_LABELS}, "Subnetworks combined across seeds",
                   "The seed masks of each (model, TargetKG) combined: union (removed in any seed), intersection "
                   "(in every seed), majority (in more than half); mean ± standard deviation over TargetKGs.")


PARAPHRASE_METRICS = [
    Metric("targetkg_relative_delta_ppl", "ΔPPL rel., chosen sentence", "relpct", "TargetKG"),
    Metric("targetkg_paraphrase_relative_delta_ppl", "ΔPPL rel., paraphrases", "relpct", "TargetKG"),
    Metric("targetkg_paraphrase_ppl_full", "PPL full, paraphrases", "ppl", "TargetKG"),
    Metric("targetkg_paraphrase_ppl_remaining", "PPL remaining, paraphrases", "ppl", "TargetKG"),
]


def with_paraphrase_change(runs: pd.DataFrame) -> pd.DataFrame:
    """Adds the relative TargetKG perplexity change on the paraphrases (remaining / full - 1)."""
    columns = ["targetkg_paraphrase_ppl_full", "targetkg_paraphrase_ppl_remaining"]
    runs = runs.dropna(subset=columns) if set(columns) <= set(runs.columns) else runs.iloc[0:0]
    if runs.empty:
        raise KcsError("no evaluation in the runs table has TargetKG paraphrases (KG files whose facts carry "
                       "`paraphrases`: verbalised KGs, or the authors' KGs with kcs's templates added)")
    runs = runs.copy()
    runs["targetkg_paraphrase_relative_delta_ppl"] = (runs["targetkg_paraphrase_ppl_remaining"]
                                                      / runs["targetkg_paraphrase_ppl_full"] - 1)
    return runs


def paraphrase_table(runs: pd.DataFrame, model_order: list[str] | None = None,
                     kg_order: list[str] | None = None) -> Summary:
    """TargetKG suppression on the sentence training saw and on its paraphrases (the templates not
    chosen), learned vs random: was the knowledge removed, or one phrasing of it?"""
    _require(runs, ["model", "kg", "method"], "paraphrase table")
    data = with_paraphrase_change(_default_only(runs))
    frame = summarise(data, ["model", "kg", "method"], PARAPHRASE_METRICS,
                      orders={"model": model_order, "kg": kg_order, "method": list(METHOD_LABELS)})
    return Summary(frame, ["model", "kg", "method"], PARAPHRASE_METRICS,
                   {"model": "Model", "kg": "TargetKG", "method": "Method"}, {"method": METHOD_LABELS},
                   "Paraphrase robustness",
                   "TargetKG perplexity change (remaining / full − 1) on the sentence used in training and on the "
                   "same facts in the other templates; mean ± standard deviation over seeds.")


BENCHMARK_COLUMNS = {"s": "runtime_s", "max_rss": "max_rss_mb", "cpu_time": "cpu_time_s"}
COST_METRICS = [Metric("runtime_s", "Runtime (s)", "ppl"), Metric("max_rss_mb", "Peak RSS (MB)", "int"),
                Metric("cpu_time_s", "CPU time (s)", "ppl")]


def read_benchmarks(files: list[str | Path], layout: str) -> pd.DataFrame:
    """Snakemake `benchmark:` TSVs (one row per run of a job; the last one counts), labelled by path."""
    rows = []
    for path, labels in zip(files, parse_paths(layout, files)):
        try:
            table = pd.read_csv(path, sep="\t")
        except (FileNotFoundError, pd.errors.EmptyDataError) as err:
            raise KcsError(f"{path}: not a Snakemake benchmark file ({err})") from None
        missing = [c for c in BENCHMARK_COLUMNS if c not in table.columns]
        if missing or table.empty:
            raise KcsError(f"{path}: not a Snakemake benchmark file (missing {', '.join(missing) or 'rows'})")
        last = table.iloc[-1]
        row = dict(labels)
        for source, target in BENCHMARK_COLUMNS.items():
            row[target] = pd.to_numeric(last[source], errors="coerce")
        rows.append(row)
    if not rows:
        raise KcsError("no benchmark files given")
    return pd.DataFrame(rows)


def compute_cost_table(benchmarks: pd.DataFrame, model_order: list[str] | None = None) -> Summary:
    """Runtime and peak memory per rule kind and model (max over jobs kept in the CSV)."""
    keys = [k for k in ("rule", "model") if k in benchmarks.columns]
    if "rule" not in keys:
        raise KcsError("the benchmark layout pattern needs a {rule} field")
    frame = summarise(benchmarks, keys, COST_METRICS, with_max=True, orders={"model": model_order})
    return Summary(frame, keys, COST_METRICS, {"rule": "Step", "model": "Model"}, {},
                   "Compute cost per pipeline step",
                   "Mean ± standard deviation over the jobs of each step (CSV: also the maximum); wall-clock "
                   "runtime and peak resident memory from Snakemake's benchmark files, on the machine that ran them.")
