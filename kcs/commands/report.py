"""`kcs report ...`: the paper's tables (CSV, Markdown, LaTeX) and figures from result files.

Result files name their run in their content (labels: model, kg, variant, seed, method, ...). Only
Snakemake's benchmark files, which carry none, are labelled by a path pattern (--layout).

  kcs report collect --out runs.csv METRICS.json ...   # one row per evaluation
  kcs report main-table --runs runs.csv --csv T.csv --markdown T.md --latex T.tex
  kcs report kg-table | ablation-table --runs runs.csv --csv ... --markdown ... --latex ...
  kcs report compute-cost --layout 'results/demo/benchmarks/{rule}/{model}/{job}.tsv' --csv ... BENCH.tsv ...
  kcs report density --out density.png [--csv density.csv] MASK.safetensors ...
  kcs report delta-figure --runs runs.csv --out delta.png
  kcs report combined-table --runs combined_runs.csv --csv ... | combined-figure --runs combined_runs.csv --out F.png
  kcs report paraphrase-table --runs runs.csv --csv ... | paraphrase-figure --runs runs.csv --out F.png
  kcs report curves --out curves.png train_log.csv ...
  kcs report overlap --out overlap.png [--csv overlap.csv] OVERLAP.json ...
  kcs report structure --model NAME=DIR --out structure.png MASK ...
"""

from __future__ import annotations

import argparse


def _order(text: str | None) -> list[str] | None:
    return [item for item in text.split(",") if item] if text else None


def _table_outputs(p) -> None:
    p.add_argument("--csv", help="CSV file (raw means, standard deviations, n)")
    p.add_argument("--markdown", help="Markdown file (mean ± std)")
    p.add_argument("--latex", help="LaTeX tabular (booktabs)")
    p.add_argument("--model-order", help="comma-separated models in display order (default: first appearance)")


def _write(summary, args) -> int:
    from kcs.errors import KcsError
    from kcs.reporting.formats import write_summary

    if not (args.csv or args.markdown or args.latex):
        raise KcsError("give at least one of --csv, --markdown, --latex")
    write_summary(summary, args.csv, args.markdown, args.latex)
    return 0


def run_collect(args) -> int:
    from kcs.atomic import write_text
    from kcs.reporting.collect import collect_metrics

    runs = collect_metrics(args.files)
    write_text(args.out, runs.to_csv(index=False, float_format="%.8g"))
    return 0


def run_main_table(args) -> int:
    from kcs.reporting.collect import read_runs
    from kcs.reporting.tables import main_table

    return _write(main_table(read_runs(args.runs), _order(args.model_order)), args)


def run_kg_table(args) -> int:
    from kcs.reporting.collect import read_runs
    from kcs.reporting.tables import kg_table

    return _write(kg_table(read_runs(args.runs), _order(args.model_order), _order(args.kg_order)), args)


def run_ablation_table(args) -> int:
    from kcs.reporting.collect import read_runs
    from kcs.reporting.tables import ablation_table

    return _write(ablation_table(read_runs(args.runs), _order(args.model_order), _order(args.variant_order)), args)


def run_compute_cost(args) -> int:
    from kcs.reporting.tables import compute_cost_table, read_benchmarks

    return _write(compute_cost_table(read_benchmarks(args.files, args.layout), _order(args.model_order)), args)


def run_density(args) -> int:
    from kcs.atomic import write_text
    from kcs.reporting.figures import density_figure
    from kcs.reporting.masks import collect_densities

    densities = collect_densities(args.files)
    density_figure(densities, args.out, _order(args.model_order))
    if args.csv:
        write_text(args.csv, densities.to_csv(index=False, float_format="%.6g"))
    return 0


def run_delta_figure(args) -> int:
    from kcs.reporting.collect import read_runs
    from kcs.reporting.figures import delta_figure

    delta_figure(read_runs(args.runs), args.out, _order(args.model_order))
    return 0


def run_combined_table(args) -> int:
    from kcs.reporting.collect import read_runs
    from kcs.reporting.tables import combined_table

    return _write(combined_table(read_runs(args.runs), _order(args.model_order)), args)


def run_combined_figure(args) -> int:
    from kcs.reporting.collect import read_runs
    from kcs.reporting.figures import delta_figure
    from kcs.reporting.formats import ordered
    from kcs.reporting.tables import COMBINATION_LABELS

    runs = read_runs(args.runs)
    runs["panel"] = runs["model"].astype(str) + ": " + runs["combination"].map(COMBINATION_LABELS).fillna(runs["combination"])
    order = [f"{m}: {COMBINATION_LABELS.get(c, c)}" for m in ordered(runs["model"], _order(args.model_order))
             for c in COMBINATION_LABELS]
    delta_figure(runs, args.out, order, panel="panel",
                 title="Removing seed-combined subnetworks: learned vs random of the same size")
    return 0


def run_paraphrase_table(args) -> int:
    from kcs.reporting.collect import read_runs
    from kcs.reporting.tables import paraphrase_table

    return _write(paraphrase_table(read_runs(args.runs), _order(args.model_order), _order(args.kg_order)), args)


def run_paraphrase_figure(args) -> int:
    from kcs.reporting.collect import read_runs
    from kcs.reporting.figures import delta_figure
    from kcs.reporting.tables import with_paraphrase_change

    delta_figure(with_paraphrase_change(read_runs(args.runs)), args.out, _order(args.model_order),
                 title="TargetKG suppression on the training sentence and on its paraphrases",
                 columns={"chosen sentence": "targetkg_relative_delta_ppl",
                          "paraphrases": "targetkg_paraphrase_relative_delta_ppl"})
    return 0


def run_curves(args) -> int:
    from kcs.reporting.figures import curves_figure, read_train_logs

    logs = read_train_logs(args.files)
    curves_figure(logs, args.out, _order(args.model_order))
    return 0


def run_overlap(args) -> int:
    from kcs.atomic import write_text
    from kcs.reporting.figures import overlap_figure
    from kcs.reporting.overlap import overlap_matrices, overlap_summary, read_overlaps

    summary = overlap_summary(read_overlaps(args.files))
    overlap_figure(overlap_matrices(summary, _order(args.model_order)), args.out,
                   "Overlap of knowledge-critical subnetworks (Jaccard)")
    if args.csv:
        write_text(args.csv, summary.to_csv(index=False, float_format="%.6g"))
    return 0


def run_structure(args) -> int:
    from kcs.atomic import write_text
    from kcs.errors import KcsError
    from kcs.reporting.formats import write_summary
    from kcs.reporting.structure import collect_structure, head_counts, structure_figure, structure_summary

    bad_kv_heads = args.kv_heads is not None and (args.kv_heads < 1 or not args.heads)
    if (args.heads is not None and args.heads < 1) or bad_kv_heads:
        raise KcsError("--heads must be >= 1, and --kv-heads (>= 1) needs --heads")
    models = {}
    for item in args.model:
        name, _, folder = item.partition("=")
        if not (name and folder):
            raise KcsError(f"--model {item!r}: expected NAME=DIR (the {{model}} field value and its model folder)")
        models[name] = head_counts(folder)

    def heads_for(labels: dict, path: str) -> tuple[int, int | None]:
        model = str(labels.get("model"))
        if model in models:
            return models[model]
        if args.heads:
            return args.heads, args.kv_heads
        raise KcsError(f"{path}: no head count for model '{model}': give --model {model}=DIR or --heads N")

    heads, neurons, summary = collect_structure(args.files, heads_for, random_draw=args.random_draw)
    structure_figure(heads, summary, args.out, _order(args.model_order))
    for path, table in ((args.csv, heads), (args.neuron_csv, neurons), (args.mask_csv, summary)):
        if path:
            write_text(path, table.to_csv(index=False, float_format="%.6g"))
    if args.summary_csv or args.summary_markdown or args.summary_latex:
        write_summary(structure_summary(summary, _order(args.model_order)), args.summary_csv,
                      args.summary_markdown, args.summary_latex)
    return 0


def _runs_figure(sub, name: str, help: str, func) -> None:
    """A figure made from a `kcs report collect` runs table."""
    p = sub.add_parser(name, help=help)
    p.add_argument("--runs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model-order")
    p.set_defaults(func=func)


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="tables and figures from result files", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="report_command", metavar="WHAT", required=True)

    p = sub.add_parser("collect", help="metrics JSON files -> one CSV row per evaluation")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("files", nargs="+", metavar="METRICS")
    p.set_defaults(func=run_collect)

    p = sub.add_parser("main-table", help="per model and method: sparsity and perplexities, mean ± std over KGs and seeds")
    p.add_argument("--runs", required=True, help="CSV from `kcs report collect`")
    _table_outputs(p)
    p.set_defaults(func=run_main_table)

    p = sub.add_parser("kg-table", help="per model, TargetKG and method, mean ± std over seeds")
    p.add_argument("--runs", required=True)
    p.add_argument("--kg-order", help="comma-separated TargetKGs in display order")
    _table_outputs(p)
    p.set_defaults(func=run_kg_table)

    p = sub.add_parser("ablation-table", help="per model and training variant (learned subnetworks)")
    p.add_argument("--runs", required=True)
    p.add_argument("--variant-order", help="comma-separated ablations in display order (default first)")
    _table_outputs(p)
    p.set_defaults(func=run_ablation_table)

    p = sub.add_parser("compute-cost", help="runtime and peak memory per step and model from Snakemake benchmark files")
    p.add_argument("--layout", required=True, help="path pattern with {rule} (and {model}) fields")
    p.add_argument("files", nargs="+", metavar="BENCHMARK")
    _table_outputs(p)
    p.set_defaults(func=run_compute_cost)

    p = sub.add_parser("density", help="figure: subnetwork density per layer and module type")
    p.add_argument("--out", required=True, help="figure file (.png, .pdf, .svg)")
    p.add_argument("--csv", help="also write the densities per mask, block and module")
    p.add_argument("--model-order")
    p.add_argument("files", nargs="+", metavar="MASK")
    p.set_defaults(func=run_density)

    p = sub.add_parser("combined-table", help="seed-combined subnetworks (union / intersection / majority) vs random")
    p.add_argument("--runs", required=True, help="`kcs report collect` CSV of the combined metrics (combination label)")
    _table_outputs(p)
    p.set_defaults(func=run_combined_table)

    _runs_figure(sub, "combined-figure", "figure: perplexity change of seed-combined subnetworks vs random",
                 run_combined_figure)

    p = sub.add_parser("paraphrase-table", help="TargetKG suppression on the training sentence vs its paraphrases")
    p.add_argument("--runs", required=True)
    p.add_argument("--kg-order")
    _table_outputs(p)
    p.set_defaults(func=run_paraphrase_table)

    _runs_figure(sub, "paraphrase-figure", "figure: suppression on the training sentence vs its paraphrases",
                 run_paraphrase_figure)
    _runs_figure(sub, "delta-figure", "figure: perplexity change, learned vs random subnetworks", run_delta_figure)

    p = sub.add_parser("curves", help="figure: training losses and sparsity against the step")
    p.add_argument("--out", required=True)
    p.add_argument("--model-order")
    p.add_argument("files", nargs="+", metavar="TRAIN_LOG")
    p.set_defaults(func=run_curves)

    p = sub.add_parser("overlap", help="figure: Jaccard overlap between seeds and between TargetKGs")
    p.add_argument("--out", required=True)
    p.add_argument("--csv", help="also write the mean overlap per model and pair")
    p.add_argument("--model-order")
    p.add_argument("files", nargs="+", metavar="OVERLAP")
    p.set_defaults(func=run_overlap)

    p = sub.add_parser("structure", help="figure, tables: density per attention head, dead neurons, attention vs MLP")
    p.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                   help="model folder of a model label, for its head counts (config.json); repeatable")
    p.add_argument("--heads", type=int, help="attention heads, for models not given with --model")
    p.add_argument("--kv-heads", type=int, help="key/value heads (GQA) with --heads (default: from the shapes)")
    p.add_argument("--out", required=True, help="figure file (.png, .pdf, .svg)")
    p.add_argument("--csv", help="density per mask, block, head and part (q/k/v/o)")
    p.add_argument("--neuron-csv", help="dead output units per mask, block and module (+ mlp.hidden)")
    p.add_argument("--mask-csv", help="attention/MLP shares and densities, dead neuron share, per mask")
    p.add_argument("--summary-csv", help="the per-mask numbers: mean, std, n per model (variant) and method")
    p.add_argument("--summary-markdown")
    p.add_argument("--summary-latex")
    p.add_argument("--model-order")
    p.add_argument("--random-draw", action="store_true",
                   help="with each learned mask, also its run's first random draw, drawn here as `kcs random-mask "
                        "--like MASK --seed SEED` draws it (SEED: the mask's seed label) instead of read from a file")
    p.add_argument("files", nargs="+", metavar="MASK", help="learned and random mask files (their labels say which)")
    p.set_defaults(func=run_structure)
