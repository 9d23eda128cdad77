"""Checkpoints over training: the `kcs evaluate-steps` files as one table, and their figure."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from kcs.errors import KcsError

GROUP_LABELS = ("model", "kg")  # lines of one (model, TargetKG) share a colour; seeds/variants are its runs
PANELS = (  # (column, y label, scale to the plotted unit, reference line)
    ("targetkg_ratio", "TargetKG ppl ratio (remaining / full)", 1.0, 1.0),
    ("controlkg_change", "ControlKG ppl change (%)", 100.0, 0.0),
    ("controllm_change", "ControlLM ppl change (%)", 100.0, 0.0),
    ("sparsity", "sparsity (%)", 100.0, None),
)


def read_steps(path: str | Path) -> pd.DataFrame:
    """The rows of one steps file, with its labels as columns and `run` = the file."""
    from kcs.step_evaluation import read_steps_file

    path = Path(path)
    data = read_steps_file(path)
    frame = pd.DataFrame(data["rows"])
    for key, value in reversed(list((data.get("labels") or {}).items())):  # label columns first, in order
        frame.insert(0, key, value)
    frame.insert(0, "run", str(path))
    return frame


def plot_steps(frames: Sequence[pd.DataFrame], out: str | Path) -> None:
    """TargetKG ratio, ControlKG and ControlLM change and sparsity against the step: one line per
    run, coloured by its model/kg labels (the runs of one group, e.g. its seeds, share a colour)."""
    from kcs.reporting.figures import _panels, save

    if not frames:
        raise KcsError("no steps files to plot")
    data = pd.concat(frames, ignore_index=True)
    group_keys = [key for key in GROUP_LABELS if key in data.columns]
    group_of = (data[group_keys].astype(str).agg("/".join, axis=1) if group_keys
                else pd.Series("all runs", index=data.index))
    groups = list(dict.fromkeys(group_of))
    colours = {group: f"C{i % 10}" for i, group in enumerate(groups)}
    fig, axes = _panels(len(PANELS), ncols=2)
    for ax, (column, label, scale, reference) in zip(axes, PANELS):
        named = set()
        for run, rows in data.groupby("run", sort=False):
            rows = rows.sort_values("step")
            group = group_of[rows.index[0]]
            ax.plot(rows["step"], rows[column] * scale, marker="o", ms=3, color=colours[group],
                    label=None if group in named else group)  # one legend entry per group
            named.add(group)
        if reference is not None:
            ax.axhline(reference, color="black", lw=0.8, ls="--")
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Step masks on validation data")
    save(fig, out)
