"""Tables and figures from result files (metrics JSON, mask files, training logs, benchmarks).

Every kcs result names its run in its content (kcs.labels); only Snakemake's benchmark files, which
kcs does not write, are labelled by their path:
- `layout`: file-name patterns such as `results/x/benchmarks/{rule}/{model}/{job}.tsv`.
- `collect`: metrics files -> one tidy row per evaluation (`runs.csv`).
- `tables`: the paper's main table, the ablation table, per-KG detail, the compute-cost table.
- `formats`: one summary table written as CSV, Markdown and LaTeX.
- `masks`: subnetwork density per layer and module type, read from mask files.
- `figures`: matplotlib figures (density, perplexity change, training curves, overlap).
- `downstream`: the downstream finetuning summary (`kcs.downstream.summary`) as CSV, Markdown and a figure.
"""
