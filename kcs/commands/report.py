"""`kcs report ...`: the paper's tables (CSV, Markdown, LaTeX) and figures from result files.

Files are labelled by a layout pattern with `{field}` placeholders, e.g.
`--layout 'results/demo/metrics/{model}/{kg}/{variant}/seed{seed}/{method}.json'`.

  kcs report collect --layout P --out runs.csv METRICS.json ...   # one row per evaluation
  kcs report main-table --runs runs.csv --csv T.csv --markdown T.md --latex T.tex
  kcs report kg-table | ablation-table --runs runs.csv --csv ... --markdown ... --latex ...
  kcs report compute-cost --layout 'results/demo/benchmarks/{rule}/{model}/{job}.tsv' --csv ... BENCH.tsv ...
  kcs report density --layout P --out density.png [--csv density.csv] MASK.safetensors ...
  kcs report delta-figure --runs runs.csv --out delta.png
  kcs report curves --layout P --out curves.png train_log.csv ...
  kcs report overlap --mask-layout P --out overlap.png [--csv overlap.csv] OVERLAP.json ...
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

    runs = collect_metrics(args.files, args.layout)
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

    densities = collect_densities(args.files, args.layout)
    density_figure(densities, args.out, _order(args.model_order))
    if args.csv:
        write_text(args.csv, densities.to_csv(index=False, float_format="%.6g"))
    return 0


def run_delta_figure(args) -> int:
    from kcs.reporting.collect import read_runs
    from kcs.reporting.figures import delta_figure

    delta_figure(read_runs(args.runs), args.out, _order(args.model_order))
    return 0


def run_curves(args) -> int:
    from kcs.reporting.figures import curves_figure, read_train_logs
    from kcs.reporting.layout import parse_paths

    logs = read_train_logs(args.files, parse_paths(args.layout, args.files))
    curves_figure(logs, args.out, _order(args.model_order))
    return 0


def run_overlap(args) -> int:
    from kcs.atomic import write_text
    from kcs.reporting.figures import overlap_figure
    from kcs.reporting.overlap import overlap_matrices, overlap_summary, read_overlaps

    summary = overlap_summary(read_overlaps(args.files, args.mask_layout))
    overlap_figure(overlap_matrices(summary, _order(args.model_order)), args.out,
                   "Overlap of knowledge-critical subnetworks (Jaccard)")
    if args.csv:
        write_text(args.csv, summary.to_csv(index=False, float_format="%.6g"))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="tables and figures from result files", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="report_command", metavar="WHAT", required=True)

    p = sub.add_parser("collect", help="metrics JSON files -> one CSV row per evaluation")
    p.add_argument("--layout", required=True, help="path pattern naming the fields, e.g. .../{model}/{kg}/seed{seed}/{method}.json")
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
    p.add_argument("--layout", required=True, help="mask path pattern with a {model} field")
    p.add_argument("--out", required=True, help="figure file (.png, .pdf, .svg)")
    p.add_argument("--csv", help="also write the densities per mask, block and module")
    p.add_argument("--model-order")
    p.add_argument("files", nargs="+", metavar="MASK")
    p.set_defaults(func=run_density)

    p = sub.add_parser("delta-figure", help="figure: perplexity change, learned vs random subnetworks")
    p.add_argument("--runs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model-order")
    p.set_defaults(func=run_delta_figure)

    p = sub.add_parser("curves", help="figure: training losses and sparsity against the step")
    p.add_argument("--layout", required=True, help="training-log path pattern with a {model} field")
    p.add_argument("--out", required=True)
    p.add_argument("--model-order")
    p.add_argument("files", nargs="+", metavar="TRAIN_LOG")
    p.set_defaults(func=run_curves)

    p = sub.add_parser("overlap", help="figure: Jaccard overlap between seeds and between TargetKGs")
    p.add_argument("--mask-layout", required=True, help="the mask path pattern the overlap files name")
    p.add_argument("--out", required=True)
    p.add_argument("--csv", help="also write the mean overlap per model and pair")
    p.add_argument("--model-order")
    p.add_argument("files", nargs="+", metavar="OVERLAP")
    p.set_defaults(func=run_overlap)
