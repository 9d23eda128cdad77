"""Tables and figures from result files (metrics JSON, mask files, training logs, benchmarks).

- `layout`: file-name patterns such as `results/x/metrics/{model}/{kg}/{variant}/seed{seed}/{method}.json`
  tell which run a file belongs to; the Snakemake rules pass the pattern they write files under.
- `collect`: metrics files -> one tidy row per evaluation (`runs.csv`).
- `tables`: the paper's main table, the ablation table, per-KG detail, the compute-cost table.
- `formats`: one summary table written as CSV, Markdown and LaTeX.
- `masks`: subnetwork density per layer and module type, read from mask files.
- `figures`: matplotlib figures (density, perplexity change, training curves, overlap).
"""
