"""The downstream finetuning summary (`kcs.downstream.summary.summarise`) written as a long CSV table,
Markdown tables (one per experiment and stage) and a bar chart.

The statistics are computed in `kcs.downstream.summary`; this module only lays them out.
"""

from __future__ import annotations

import os

import pandas as pd

from kcs.atomic import write_text
from kcs.errors import KcsError

KEYS = ("experiment", "model", "style", "stage", "start", "quantity", "group")
VALUES = ("estimate", "ci_low", "ci_high", "p_boot", "n_questions", "n_seeds", "seed_sd")
COLUMNS = KEYS + VALUES  # of the CSV table
GROUP_COLOURS = {"linked": "#c0392b", "other": "#7f8c8d", "other_linked": "#2980b9", "unlinked": "#bdc3c7"}


def _title(exp: dict) -> str:
    return " / ".join(x for x in (exp["experiment"], exp["model"], exp["style"]) if x)


def _row(base: dict, stage: str, start: str, quantity: str, group: str, s: dict) -> dict:
    # accuracies have no p_boot, differences no question or seed counts: those cells stay empty
    return {**base, "stage": stage, "start": start, "quantity": quantity, "group": group,
            **{k: s.get(k) for k in VALUES}}


def table_rows(summary: dict) -> list[dict]:
    """One row per (experiment, stage, start, quantity, group), in the order of COLUMNS."""
    rows = []
    for exp in summary["experiments"]:
        base = {"experiment": exp["experiment"], "model": exp["model"], "style": exp["style"]}
        for stage, stats in exp["stages"].items():
            for start, groups in stats["accuracy"].items():
                rows += [_row(base, stage, start, "accuracy", group, s) for group, s in groups.items()]
            for quantity, key in (("gap", "gap"), ("gap_change_vs_full", "gap_change")):
                rows += [_row(base, stage, start, quantity, "linked-other", s) for start, s in stats[key].items()]
            for start, groups in stats["group_change"].items():
                rows += [_row(base, stage, start, "change_vs_full", group, s) for group, s in groups.items()]
    return rows


def write_csv(rows: list[dict], path: str | os.PathLike) -> None:
    # object dtype keeps ints as ints where a column also holds None (no "4.0"); None is an empty cell
    frame = pd.DataFrame(rows, columns=list(COLUMNS), dtype=object)
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def _fmt(s: dict | None, pct: bool = True) -> str:
    if not s:
        return ""
    scale = 100.0 if pct else 1.0
    return f"{s['estimate'] * scale:.1f} [{s['ci_low'] * scale:.1f}, {s['ci_high'] * scale:.1f}]"


def markdown(summary: dict) -> str:
    conf = f"{summary['confidence']:.0%}"
    legend = (f"Accuracy (%) with {conf} bootstrap intervals; gap = linked - other (points); Δgap = gap(start) - "
              "gap(full): negative means the questions linked to the removed facts lost more than the others.")
    lines = [legend, ""]
    for exp in summary["experiments"]:
        title = _title(exp)
        counts = ", ".join(f"{g} n={n}" for g, n in exp["groups"].items())
        for stage, stats in exp["stages"].items():
            groups = list(exp["groups"])
            lines.append(f"**{title}, {'zero-shot (before finetuning)' if stage == 'before' else 'after finetuning'}** "
                         f"({counts})")
            lines.append("")
            lines.append("| start | seeds | " + " | ".join(groups) + " | gap | Δgap vs full | p |")
            lines.append("|---" * (len(groups) + 5) + "|")
            for start in exp["starts"]:
                acc = stats["accuracy"].get(start)
                if not acc:
                    continue
                seeds = next(iter(acc.values()))["n_seeds"]
                change = stats["gap_change"].get(start)
                cells = [_fmt(acc.get(g)) for g in groups]
                p_value = "" if not change else f"{change['p_boot']:.3f}"
                lines.append(f"| {start} | {seeds} | " + " | ".join(cells) + f" | {_fmt(stats['gap'].get(start))} | "
                             f"{_fmt(change)} | {p_value} |")
            lines.append("")
        if exp.get("seconds_per_step_mean"):
            lines.append(f"Training: {exp['seconds_per_step_mean']:.3f} s per step, {exp['train_seconds_mean']:.1f} s "
                         "per run (mean).")
            lines.append("")
    return "\n".join(lines)


def figure(summary: dict, path: str | os.PathLike) -> None:
    """Accuracy by group and starting point (bars with interval whiskers); one panel per experiment and stage."""
    from kcs.reporting.figures import _panels, save  # matplotlib only when a figure is asked for

    panels = [(exp, stage) for exp in summary["experiments"] for stage in exp["stages"]]
    if not panels:
        raise KcsError("no finetuning results to plot")
    fig, axes = _panels(len(panels), width=5.2, height=3.6, ncols=2)
    for ax, (exp, stage) in zip(axes, panels):
        stats = exp["stages"][stage]
        groups = list(exp["groups"])
        starts = [s for s in exp["starts"] if s in stats["accuracy"]]
        width = 0.8 / max(1, len(groups))
        for gi, group in enumerate(groups):
            xs, ys, lo, hi = [], [], [], []
            for si, start in enumerate(starts):
                s = stats["accuracy"][start].get(group)
                if not s:
                    continue
                xs.append(si + (gi - (len(groups) - 1) / 2) * width)
                ys.append(100 * s["estimate"])
                lo.append(100 * (s["estimate"] - s["ci_low"]))
                hi.append(100 * (s["ci_high"] - s["estimate"]))
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=f"{group} (n={exp['groups'][group]})",
                   color=GROUP_COLOURS.get(group))
        if exp.get("chance_accuracy"):
            ax.axhline(100 * exp["chance_accuracy"], color="black", linestyle=":", linewidth=1, label="chance")
        ax.set_xticks(range(len(starts)), starts)
        ax.set_ylim(0, 118)  # room above 100 % for the legend
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{_title(exp)}\n{'zero-shot' if stage == 'before' else 'after finetuning'}", fontsize=9)
        ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
    save(fig, path)
