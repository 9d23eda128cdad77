"""Figures (matplotlib, written as PNG for the Snakemake report).

Each function takes tidy data (see `collect`, `masks`, `tables`) and an output path; the figure is
written atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window (cluster nodes have no display)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from kcs.atomic import atomic_path  # noqa: E402
from kcs.errors import KcsError  # noqa: E402
from kcs.reporting.formats import ordered  # noqa: E402
from kcs.reporting.tables import DATASET_LABELS, DEFAULT_VARIANT, METHOD_LABELS  # noqa: E402

METHOD_COLOURS = {"learned": "tab:red", "random": "tab:gray"}


def save(fig, out: str | Path) -> None:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=150, bbox_inches="tight")
    plt.close(fig)


def _panels(n: int, width: float = 4.2, height: float = 3.4, ncols: int | None = None):
    ncols = ncols or min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def density_figure(densities: pd.DataFrame, out: str | Path, model_order: list[str] | None = None) -> None:
    """Share of each weight matrix in the subnetwork, per block and module type; one panel per model.

    Lines are means over runs (TargetKGs, seeds); the band is ± one standard deviation.
    """
    if "model" not in densities.columns:
        raise KcsError("density data need masks labelled with their model (kcs train --label model=NAME)")
    models = ordered(densities["model"], model_order)
    fig, axes = _panels(len(models))
    for ax, model in zip(axes, models):
        rows = densities[densities["model"] == model]
        for module in ordered(rows["module"]):
            per_block = rows[rows["module"] == module].groupby("block")["density"]
            mean, std = per_block.mean() * 100, per_block.std(ddof=1).fillna(0) * 100
            ax.plot(mean.index, mean.values, marker="o", ms=3, label=module)
            ax.fill_between(mean.index, (mean - std).values, (mean + std).values, alpha=0.15)
        ax.set_title(str(model))
        ax.set_xlabel("block (layer index)")
        blocks = sorted(rows["block"].unique())
        ax.set_xlim(blocks[0] - 0.5, blocks[-1] + 0.5)
        if len(blocks) <= 16:
            ax.set_xticks(blocks)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("weights in the subnetwork (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Subnetwork density per layer and module type")
    save(fig, out)


def delta_figure(runs: pd.DataFrame, out: str | Path, model_order: list[str] | None = None,
                 panel: str = "model", title: str = "Removing the subnetwork: learned vs random of the same size",
                 columns: dict[str, str] | None = None) -> None:
    """Relative perplexity change (remaining vs full) per dataset, one panel per `panel` value:
    learned vs random subnetworks. `columns`: bar label -> column (default: every dataset's
    relative change the runs have; the ControlKG test split only where it was evaluated)."""
    data = runs[runs["variant"] == DEFAULT_VARIANT] if "variant" in runs.columns else runs
    if data.empty:
        raise KcsError("no default-variant evaluation to plot")
    panels = ordered(data[panel], model_order)
    methods = ordered(data["method"], list(METHOD_LABELS))
    columns = columns or {DATASET_LABELS[d]: f"{d}_relative_delta_ppl" for d in DATASET_LABELS
                          if f"{d}_relative_delta_ppl" in data.columns}
    fig, axes = _panels(len(panels))
    x = np.arange(len(columns))
    width = 0.8 / max(1, len(methods))
    for ax, model in zip(axes, panels):
        rows = data[data[panel] == model]
        for i, method in enumerate(methods):
            sub = rows[rows["method"] == method]
            cols = list(columns.values())
            means = [100 * sub[c].mean() if c in sub else np.nan for c in cols]
            stds = [100 * sub[c].std(ddof=1) if c in sub and len(sub) > 1 else 0 for c in cols]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
                   color=METHOD_COLOURS.get(method), label=METHOD_LABELS.get(method, method))
        ax.axhline(0, color="black", lw=0.8)
        ax.set_yscale("symlog", linthresh=10)
        ax.set_xticks(x, list(columns))
        ax.set_ylabel("PPL change, remaining vs full (%)")
        ax.set_title(str(model))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.suptitle(title)
    save(fig, out)


CURVE_PANELS = (("loss_targetkg", "TargetKG suppression loss"), ("loss_controlkg", "ControlKG maintenance loss"),
                ("loss_controllm", "ControlLM maintenance loss"), ("sparsity", "sparsity"))
MAX_POINTS = 400  # per run; long runs (40k steps) are thinned for plotting


def read_train_logs(files: list[str | Path]) -> pd.DataFrame:
    """The training logs, thinned for plotting; their leading label columns (model, kg, ...) say which run."""
    frames = []
    for path in files:
        try:
            frame = pd.read_csv(path)
        except (FileNotFoundError, pd.errors.EmptyDataError) as err:
            raise KcsError(f"{path}: not a training log ({err})") from None
        if "step" not in frame.columns:
            raise KcsError(f"{path}: not a training log (no 'step' column)")
        stride = max(1, len(frame) // MAX_POINTS)
        frame = frame.iloc[::stride].copy()
        if "model" not in frame.columns:
            raise KcsError(f"{path}: the training log has no 'model' label column; train with "
                           "`kcs train --label model=NAME` (the pipeline does)")
        frame["run"] = str(path)
        frames.append(frame)
    if not frames:
        raise KcsError("no training logs given")
    return pd.concat(frames, ignore_index=True)


def curves_figure(logs: pd.DataFrame, out: str | Path, model_order: list[str] | None = None) -> None:
    """Loss terms and sparsity against the training step; thin lines per run, one colour per model."""
    panels = [(c, t) for c, t in CURVE_PANELS if c in logs.columns and logs[c].notna().any()]
    if not panels:
        raise KcsError("the training logs have none of the columns " + ", ".join(c for c, _ in CURVE_PANELS))
    models = ordered(logs["model"], model_order) if "model" in logs.columns else [None]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = _panels(len(panels))
    for ax, (column, title) in zip(axes, panels):
        for i, model in enumerate(models):
            rows = logs if model is None else logs[logs["model"] == model]
            for j, (_, run) in enumerate(rows.groupby("run", sort=False)):
                ax.plot(run["step"], run[column], color=colours[i % len(colours)], lw=0.8, alpha=0.6,
                        label=str(model) if j == 0 and model is not None else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        values = logs[column].dropna()
        positive = values[values > 0]
        if column.startswith("loss") and len(positive) and positive.max() > 100 * positive.min():
            ax.set_yscale("log")  # losses that fall by orders of magnitude
        if len(models) > 1 or models[0] is not None:
            ax.legend(fontsize=7)
    fig.suptitle("Mask training (default objective; one line per TargetKG and seed)")
    save(fig, out)


def heatmap(ax, matrix: pd.DataFrame, title: str) -> None:
    image = ax.imshow(matrix.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(matrix.columns)), [str(c) for c in matrix.columns], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(matrix.index)), [str(i) for i in matrix.index], fontsize=7)
    for (r, c), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
        if not np.isnan(value):
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if value < 0.6 else "black")
    ax.set_title(title, fontsize=9)
    return image


def overlap_figure(matrices: list[tuple[str, pd.DataFrame]], out: str | Path, suptitle: str) -> None:
    """Jaccard similarity (|A ∩ B| / |A ∪ B|) of subnetworks, one heatmap per (title, matrix)."""
    if not matrices:
        raise KcsError("no overlap matrix to plot")
    fig, axes = _panels(len(matrices), width=3.6, height=3.4)
    image = None
    for ax, (title, matrix) in zip(axes, matrices):
        image = heatmap(ax, matrix, title)
    fig.colorbar(image, ax=axes, shrink=0.8, label="Jaccard similarity")
    fig.suptitle(suptitle)
    save(fig, out)
