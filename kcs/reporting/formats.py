"""A summary table (mean and standard deviation per group) written as CSV, Markdown and LaTeX.

The CSV keeps the raw numbers (`<metric>_mean`, `<metric>_std`, and `n`, the number of values
averaged) for further analysis; Markdown and LaTeX show `mean ± std` formatted for reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kcs.atomic import write_text


@dataclass(frozen=True)
class Metric:
    column: str  # column of the tidy input table
    label: str  # header shown to people
    kind: str = "num"  # how to format: pct | relpct | ppl | signed | num | int
    group: str = ""  # a header spanning several columns (LaTeX) / prefix (Markdown)


@dataclass
class Summary:
    frame: pd.DataFrame  # keys + <metric>_mean, <metric>_std (+ _max), n
    keys: list[str]  # grouping columns, in display order
    metrics: list[Metric]
    key_labels: dict[str, str] = field(default_factory=dict)
    value_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # key column -> raw -> shown
    title: str = ""
    note: str = ""


def ordered(values: pd.Series, order: list | None = None) -> list:
    """Order of first appearance, or the given order (values missing from it go last)."""
    seen = list(dict.fromkeys(values.tolist()))
    if order is None:
        return seen
    return [v for v in order if v in seen] + [v for v in seen if v not in order]


def summarise(data: pd.DataFrame, keys: list[str], metrics: list[Metric], with_max: bool = False,
              orders: dict[str, list] | None = None) -> pd.DataFrame:
    """Mean and sample standard deviation (ddof=1; empty when n = 1) of each metric per group."""
    orders = orders or {}
    columns = [m.column for m in metrics if m.column in data.columns]
    grouped = data.groupby(keys, sort=False, dropna=False)
    out = grouped.size().rename("n").reset_index()
    for column in columns:
        values = grouped[column]
        out[f"{column}_mean"] = values.mean().to_numpy()
        out[f"{column}_std"] = values.std(ddof=1).to_numpy()
        if with_max:
            out[f"{column}_max"] = values.max().to_numpy()
    # Stable sort by the requested order of each key (config order, first appearance otherwise).
    sort_cols = []
    for key in keys:
        rank = {value: i for i, value in enumerate(ordered(data[key], orders.get(key)))}
        out[f"_{key}_rank"] = out[key].map(rank)
        sort_cols.append(f"_{key}_rank")
    out = out.sort_values(sort_cols, kind="stable").drop(columns=sort_cols).reset_index(drop=True)
    return out


def _number(value: float, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if kind in ("relpct", "signed") and abs(value) < (5e-4 if kind == "relpct" else 5e-3):
        value = 0.0  # no "-0.0%": a change that rounds to zero is shown as +0
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "relpct":
        return f"{100 * value:+.1f}%" if abs(value) < 100 else f"{100 * value:+.3g}%"
    if kind == "pct1":
        return f"{100 * value:.1f}%" if abs(value) < 100 else f"{100 * value:.3g}%"
    if kind == "signed":
        return f"{value:+.2f}" if abs(value) < 1000 else f"{value:+.4g}"
    if kind == "int":
        return f"{value:.0f}"
    if kind == "ppl":
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.4g}"
    return f"{value:.3g}"


def cell(row: pd.Series, metric: Metric, plus_minus: str) -> str:
    mean = row.get(f"{metric.column}_mean")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    std = row.get(f"{metric.column}_std")
    text = _number(mean, metric.kind)
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        std_kind = {"relpct": "pct1", "signed": "ppl"}.get(metric.kind, metric.kind)
        text += f"{plus_minus}{_number(std, std_kind)}"
    return text


def _key_text(summary: Summary, key: str, value) -> str:
    return summary.value_labels.get(key, {}).get(value, str(value))


def _visible(summary: Summary) -> list[Metric]:
    return [m for m in summary.metrics if f"{m.column}_mean" in summary.frame.columns]


def to_csv(summary: Summary) -> str:
    return summary.frame.to_csv(index=False, float_format="%.6g")


def _markdown_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(summary: Summary) -> str:
    metrics = _visible(summary)
    headers = [summary.key_labels.get(k, k) for k in summary.keys] + ["n"]
    headers += [f"{m.group} {m.label}".strip() for m in metrics]
    lines = []
    if summary.title:
        lines += [f"**{summary.title}**", ""]
    lines.append("| " + " | ".join(_markdown_escape(h) for h in headers) + " |")
    lines.append("|" + "|".join([" --- "] * len(summary.keys) + [" ---: "] * (1 + len(metrics))) + "|")
    for _, row in summary.frame.iterrows():
        cells = [_key_text(summary, k, row[k]) for k in summary.keys] + [str(int(row["n"]))]
        cells += [cell(row, m, " ± ") for m in metrics]
        lines.append("| " + " | ".join(_markdown_escape(c) for c in cells) + " |")
    if summary.note:
        lines += ["", summary.note]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(summary: Summary) -> str:
    """A booktabs tabular; headers grouped by dataset with \\cmidrule; needs \\usepackage{booktabs}."""
    metrics = _visible(summary)
    n_keys = len(summary.keys) + 1
    lines = ["% Generated by `kcs report`; needs \\usepackage{booktabs}.",
             "\\begin{tabular}{" + "l" * n_keys + "r" * len(metrics) + "}", "\\toprule"]
    groups: list[tuple[str, int]] = []
    for metric in metrics:
        if groups and groups[-1][0] == metric.group:
            groups[-1] = (metric.group, groups[-1][1] + 1)
        else:
            groups.append((metric.group, 1))
    if any(name for name, _ in groups):
        header, rules, col = [""] * n_keys, [], n_keys + 1
        for name, width in groups:
            header.append(f"\\multicolumn{{{width}}}{{c}}{{{latex_escape(name)}}}" if width > 1 else latex_escape(name))
            if name:
                rules.append(f"\\cmidrule(lr){{{col}-{col + width - 1}}}")
            col += width
        lines.append(" & ".join(header) + " \\\\")
        lines.append(" ".join(rules))
    labels = [latex_escape(summary.key_labels.get(k, k)) for k in summary.keys] + ["$n$"]
    labels += [latex_escape(m.label) for m in metrics]
    lines += [" & ".join(labels) + " \\\\", "\\midrule"]
    for _, row in summary.frame.iterrows():
        cells = [latex_escape(_key_text(summary, k, row[k])) for k in summary.keys] + [str(int(row["n"]))]
        cells += [latex_escape(cell(row, m, " ± ")).replace(" ± ", " $\\pm$ ") for m in metrics]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_summary(summary: Summary, csv: str | Path | None = None, markdown: str | Path | None = None,
                  latex: str | Path | None = None) -> None:
    if csv:
        write_text(csv, to_csv(summary))
    if markdown:
        write_text(markdown, to_markdown(summary))
    if latex:
        write_text(latex, to_latex(summary))
