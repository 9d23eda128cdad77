"""The downstream table and figure from several `kcs finetune` result files.

Runs are grouped into experiments by (experiment name, model, finetuning style); inside one, every
run must have scored the same evaluation questions in the same groups. For each experiment and
stage (`before` = zero-shot, `after` = finetuned) and each starting point (full / remaining /
random) it reports the accuracy per group, the gap linked - other, the change of that gap against
the full model (negative: the linked questions lost more than the others) and the change of
each group's accuracy against the full model, all with bootstrap intervals (`stats`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kcs.downstream.experiment import RESULT_FORMAT, STARTS
from kcs.downstream.stats import bootstrap_comparison
from kcs.errors import KcsError

STAGES = ("before", "after")
COLUMNS = ("experiment", "model", "style", "stage", "start", "quantity", "group", "estimate", "ci_low",
           "ci_high", "p_boot", "n_questions", "n_seeds", "seed_sd")


def load_results(paths: Sequence[str | os.PathLike]) -> list[dict]:
    results = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise KcsError(f"{path}: result file not found")
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise KcsError(f"{path}: not valid JSON ({err.msg})") from None
        if not isinstance(result, dict) or result.get("kcs_format") != RESULT_FORMAT:
            raise KcsError(f"{path}: not a `kcs finetune` result (kcs_format != {RESULT_FORMAT!r})")
        result["_path"] = str(path)
        results.append(result)
    if not results:
        raise KcsError("no result files given")
    return results


def _key(result: dict) -> tuple[str, str, str]:
    return (result.get("experiment") or "", result.get("model") or "", result.get("style") or "")


def _start_order(starts) -> list[str]:
    return sorted(starts, key=lambda s: (STARTS.index(s) if s in STARTS else len(STARTS), s))


def summarise_experiment(runs: list[dict], n_boot: int, confidence: float, seed: int) -> dict:
    first = runs[0]
    ids, groups = first["predictions"]["ids"], first["groups"]
    seen: set[tuple[str, int]] = set()
    for run in runs:
        if run["predictions"]["ids"] != ids or run["groups"] != groups:
            raise KcsError(f"{run['_path']} and {first['_path']} scored different evaluation questions or groups; "
                           "summarise runs of different tasks or removed KGs separately (or set --experiment)")
        tag = (run["start"], run["seed"])
        if tag in seen:
            raise KcsError(f"{run['_path']}: a second run of start '{run['start']}' with seed {run['seed']}")
        seen.add(tag)
    index = {qid: i for i, qid in enumerate(ids)}
    group_idx = {g: np.array([index[q] for q in members], dtype=int) for g, members in groups.items()}
    gold = np.asarray(first["predictions"]["gold"])
    out: dict[str, Any] = {"starts": _start_order({r["start"] for r in runs}),
                           "groups": {g: len(m) for g, m in groups.items()},
                           "runs": [r["_path"] for r in runs], "stages": {}}
    for stage in STAGES:
        by_start: dict[str, list[np.ndarray]] = {}
        for run in runs:
            predicted = run["predictions"].get(stage)
            if predicted is None:
                continue
            by_start.setdefault(run["start"], []).append(np.asarray(predicted) == gold)
        if not by_start:
            continue
        correct = {s: np.stack(by_start[s]).astype(float) for s in _start_order(by_start)}
        out["stages"][stage] = bootstrap_comparison(correct, group_idx, n_boot=n_boot, confidence=confidence,
                                                    seed=seed)
    seconds = [r["train"].get("seconds_per_step") for r in runs if r["train"].get("seconds_per_step")]
    out["chance_accuracy"] = first.get("chance_accuracy")
    out["seconds_per_step_mean"] = float(np.mean(seconds)) if seconds else None
    out["train_seconds_mean"] = float(np.mean([r["train"]["train_seconds"] for r in runs]))
    return out


def summarise(results: list[dict], n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    experiments: dict[tuple[str, str, str], list[dict]] = {}
    for result in results:
        experiments.setdefault(_key(result), []).append(result)
    return {"experiments": [
        {"experiment": k[0], "model": k[1], "style": k[2], **summarise_experiment(runs, n_boot, confidence, seed)}
        for k, runs in experiments.items()
    ], "confidence": confidence, "n_boot": n_boot}


def table_rows(summary: dict) -> list[dict]:
    rows = []
    for exp in summary["experiments"]:
        base = {"experiment": exp["experiment"], "model": exp["model"], "style": exp["style"]}
        for stage, stats in exp["stages"].items():
            for start, groups in stats["accuracy"].items():
                for group, s in groups.items():
                    rows.append({**base, "stage": stage, "start": start, "quantity": "accuracy", "group": group,
                                 "estimate": s["estimate"], "ci_low": s["ci_low"], "ci_high": s["ci_high"],
                                 "p_boot": None, "n_questions": s["n_questions"], "n_seeds": s["n_seeds"],
                                 "seed_sd": s["seed_sd"]})
            for quantity, group in (("gap", "linked-other"), ("gap_change_vs_full", "linked-other")):
                for start, s in stats[quantity.removesuffix("_vs_full")].items():
                    rows.append({**base, "stage": stage, "start": start, "quantity": quantity, "group": group,
                                 "estimate": s["estimate"], "ci_low": s["ci_low"], "ci_high": s["ci_high"],
                                 "p_boot": s["p_boot"], "n_questions": None, "n_seeds": None, "seed_sd": None})
            for start, groups in stats["group_change"].items():
                for group, s in groups.items():
                    rows.append({**base, "stage": stage, "start": start, "quantity": "change_vs_full", "group": group,
                                 "estimate": s["estimate"], "ci_low": s["ci_low"], "ci_high": s["ci_high"],
                                 "p_boot": s["p_boot"], "n_questions": None, "n_seeds": None, "seed_sd": None})
    return rows


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
        title = " / ".join(x for x in (exp["experiment"], exp["model"], exp["style"]) if x)
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(exp, stage) for exp in summary["experiments"] for stage in exp["stages"]]
    cols = 2
    rows = max(1, (len(panels) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    colours = {"linked": "#c0392b", "other": "#7f8c8d", "other_linked": "#2980b9", "unlinked": "#bdc3c7"}
    for ax, (exp, stage) in zip(axes.flat, panels):
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
                   color=colours.get(group))
        if exp.get("chance_accuracy"):
            ax.axhline(100 * exp["chance_accuracy"], color="black", linestyle=":", linewidth=1, label="chance")
        ax.set_xticks(range(len(starts)), starts)
        ax.set_ylim(0, 118)
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("accuracy (%)")
        title = " / ".join(x for x in (exp["experiment"], exp["model"], exp["style"]) if x)
        ax.set_title(f"{title}\n{'zero-shot' if stage == 'before' else 'after finetuning'}", fontsize=9)
        ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    from kcs.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=150)
    plt.close(fig)


def write_csv(rows: list[dict], path: str | os.PathLike) -> None:
    import csv
    import io

    from kcs.atomic import write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})
    write_text(path, buffer.getvalue())
