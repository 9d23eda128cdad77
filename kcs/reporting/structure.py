"""Structure of a subnetwork: density per attention head, dead neurons, attention vs MLP.

A weight is in the subnetwork (the removed set) when its mask logit is > 0, as in `masks.py`. Every
matrix is first turned into a boolean "member" matrix of its full weight shape in [out, in] order
(GPT-2 Conv1D weights are stored [in, out] and are transposed; neuron masks are expanded), so one
set of formulas serves both layouts and both granularities:

- heads: q/k/v slices are output rows of q/k/v (GPT-2: thirds of `c_attn`'s outputs), the o slice
  is input columns of the output projection; Llama k/v have `kv_heads` heads (GQA).
- dead units: output rows whose every incoming weight is removed; `mlp.hidden` is the MLP hidden
  neuron, dead when all of its incoming rows (GPT-2 `c_fc`, Llama `gate_proj` and `up_proj`) are.
- summary per mask: the share of the subnetwork in attention vs MLP matrices and each one's density.

The head count is not in a mask file: it comes from the model's config.json (`head_counts`) or is given.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from kcs.errors import KcsError
from kcs.grid import LEARNED
from kcs.labels import require_labels
from kcs.maskfile import metadata_json, parse_mask_name, read_labels, read_mask_tensors
from kcs.random_baseline import save_random_like
from kcs.reporting.formats import Metric, Summary, ordered, summarise

Members = dict[tuple[int, str], torch.Tensor]  # (block, module) -> bool [out, in]

# module -> (head part, axis of the [out, in] member matrix that is split per head)
HEAD_PARTS = {
    "attn.c_attn": ("qkv", "rows"), "attn.c_proj": ("o", "columns"),
    "self_attn.q_proj": ("q", "rows"), "self_attn.k_proj": ("k", "rows"),
    "self_attn.v_proj": ("v", "rows"), "self_attn.o_proj": ("o", "columns"),
}
FAMILIES = {"attn": "attention", "self_attn": "attention", "mlp": "mlp"}
MLP_INPUTS = ("mlp.c_fc", "mlp.gate_proj", "mlp.up_proj")  # matrices feeding the MLP hidden neurons
PARTS = ("q", "k", "v", "o")
METHODS = ("learned", "random")


def members_of(tensors: dict[str, torch.Tensor], shapes: dict[str, tuple], weight_in_out: bool) -> Members:
    members = {}
    for name, logits in tensors.items():
        member = (logits > 0).expand(shapes[name])  # neuron masks broadcast to the weight
        members[parse_mask_name(name)] = member.T if weight_in_out else member
    return members


def read_members(path: str | Path) -> Members:
    metadata, tensors, shapes = read_mask_tensors(path)
    return members_of(tensors, shapes, metadata_json(Path(path), metadata, "weight_in_out"))


def head_counts(model_dir: str | Path) -> tuple[int, int | None]:
    """(attention heads, key/value heads or None) from a model folder's config.json."""
    from transformers import AutoConfig

    if not Path(model_dir, "config.json").is_file():
        raise KcsError(f"{model_dir}: no config.json: give a model folder, or the head count with --heads")
    try:
        config = AutoConfig.from_pretrained(str(model_dir))
    except (OSError, ValueError) as err:
        raise KcsError(f"{model_dir}: config.json cannot be read ({err})") from None
    heads = getattr(config, "num_attention_heads", None)  # GPT-2's n_head is aliased to this name
    if not isinstance(heads, int) or heads < 1:
        raise KcsError(f"{model_dir}: config.json gives no attention head count (n_head / num_attention_heads)")
    return heads, getattr(config, "num_key_value_heads", None)


def _split_qkv(block: int, module: str, member: torch.Tensor, source: str) -> dict[str, torch.Tensor]:
    part, _ = HEAD_PARTS[module]
    if part != "qkv":
        return {part: member}
    if member.shape[0] % 3:
        raise KcsError(f"{source}: block {block} {module} has {member.shape[0]} outputs, not q|k|v of equal size")
    return dict(zip("qkv", member.split(member.shape[0] // 3)))


def head_table(members: Members, heads: int, kv_heads: int | None = None, source: str = "mask") -> pd.DataFrame:
    """Rows: block, head, part (q/k/v/o), weights (of the slice), density (share in the subnetwork).

    k/v rows count key/value heads (fewer than the query heads under GQA)."""
    rows = []
    for block in sorted({b for b, _ in members}):
        parts = {}
        for (b, module), member in members.items():
            if b == block and module in HEAD_PARTS:
                parts.update(_split_qkv(block, module, member, source))
        if not parts:
            continue
        # the query width (= hidden size in GPT-2 and Llama; not always, so taken from the shapes)
        width = parts["q"].shape[0] if "q" in parts else parts["o"].shape[1]
        if width % heads:
            raise KcsError(f"{source}: block {block}: {width} query features do not split into {heads} heads; "
                           "check --heads / the model folder")
        head_dim = width // heads
        for part in PARTS:
            if part not in parts:
                continue
            member = parts[part].T if part == "o" else parts[part]  # the per-head axis first
            count, rest = divmod(member.shape[0], head_dim)
            expected = (kv_heads or count) if part in "kv" else heads
            if rest or count != expected:
                raise KcsError(f"{source}: block {block}: the {part} projection has {member.shape[0]} features, "
                               f"not {expected} heads of {head_dim}; check --heads / --kv-heads / the model folder")
            removed = member.reshape(count, -1).sum(1)
            size = member.numel() // count
            rows += [{"block": block, "head": h, "part": part, "weights": size, "density": int(r) / size}
                     for h, r in enumerate(removed.tolist())]
    return pd.DataFrame(rows, columns=["block", "head", "part", "weights", "density"])


def neuron_table(members: Members) -> pd.DataFrame:
    """Rows: block, module, units (outputs), dead (units whose every incoming weight is removed), dead_share.

    GPT-2's c_fc has a bias, so a dead hidden unit still emits a constant: dead = blind to its input."""
    rows, hidden = [], {}
    for (block, module), member in sorted(members.items()):
        dead = member.all(dim=1)
        rows.append({"block": block, "module": module, "units": dead.numel(), "dead": int(dead.sum())})
        if module in MLP_INPUTS:
            hidden[block] = dead & hidden[block] if block in hidden else dead
    rows += [{"block": block, "module": "mlp.hidden", "units": dead.numel(), "dead": int(dead.sum())}
             for block, dead in sorted(hidden.items())]
    table = pd.DataFrame(rows, columns=["block", "module", "units", "dead"])
    table["dead_share"] = table["dead"] / table["units"]
    return table


def mask_summary(members: Members, source: str = "mask") -> dict[str, float]:
    """weights, removed, density; attention/MLP share of the removed weights and density; dead_neuron_share."""
    counts = {family: [0, 0] for family in ("attention", "mlp")}  # [removed, weights]
    for (block, module), member in members.items():
        family = FAMILIES.get(module.split(".")[0])
        if family is None:
            raise KcsError(f"{source}: block {block} matrix '{module}' is neither attention nor MLP")
        counts[family][0] += int(member.sum())
        counts[family][1] += member.numel()
    removed = sum(r for r, _ in counts.values())
    weights = sum(w for _, w in counts.values())
    neurons = neuron_table(members)
    hidden = neurons[neurons["module"] == "mlp.hidden"]
    ratio = lambda a, b: a / b if b else math.nan  # noqa: E731 (0/0: an empty subnetwork has no shares)
    return {"weights": weights, "removed": removed, "density": ratio(removed, weights),
            **{f"{f}_share": ratio(counts[f][0], removed) for f in counts},
            **{f"{f}_density": ratio(*counts[f]) for f in counts},
            "dead_neuron_share": ratio(hidden["dead"].sum(), hidden["units"].sum())}


HeadsFor = Callable[[dict, str], tuple[int, int | None]]  # (labels, path) -> (heads, kv_heads)


def collect_structure(files: list[str | Path], heads_for: HeadsFor,
                      random_draw: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(per-head table, neuron table, summary per mask), each row labelled by its mask's labels (model,
    method learned or random, ...) and `mask` (the path). `random_draw`: each learned mask also brings
    its run's first random draw, drawn here as `kcs random-mask` draws it (kcs.random_baseline), so
    that the pipeline need not keep the random mask files (keep_random_masks: false)."""
    if not files:
        raise KcsError("no mask files given")
    tables: tuple[list, list, list] = ([], [], [])

    def add(path: str | Path, name: str) -> dict:
        labels = {**require_labels(read_labels(path), str(path), ("model", "method")), "mask": name}
        members = read_members(path)
        per_mask = (head_table(members, *heads_for(labels, str(path)), source=str(path)),
                    neuron_table(members), pd.DataFrame([mask_summary(members, str(path))]))
        for frames, frame in zip(tables, per_mask):
            frames.append(frame.assign(**labels)[[*labels, *frame.columns]])
        return labels

    with tempfile.TemporaryDirectory(prefix="kcs-structure-") as scratch:
        for index, path in enumerate(files):
            labels = add(path, Path(path).as_posix())
            if random_draw and labels["method"] == LEARNED:
                seed = require_labels(labels, str(path), ("seed",))["seed"]
                drawn = Path(scratch) / f"{index}.safetensors"
                save_random_like(path, int(seed), 1, drawn)
                add(drawn, f"{Path(path).as_posix()} (random draw 1)")
    return tuple(pd.concat(frames, ignore_index=True) for frames in tables)


SUMMARY_METRICS = [
    Metric("density", "Density", "pct"),
    Metric("attention_share", "Attention", "pct", "Share of the subnetwork"),
    Metric("mlp_share", "MLP", "pct", "Share of the subnetwork"),
    Metric("attention_density", "Attention", "pct", "Density"),
    Metric("mlp_density", "MLP", "pct", "Density"),
    Metric("dead_neuron_share", "Dead MLP neurons", "pct"),
]


def structure_summary(summary: pd.DataFrame, model_order: list[str] | None = None) -> Summary:
    """Mean ± std over the masks of each model (and training variant) and method."""
    keys = [k for k in ("model", "variant", "method") if k in summary.columns]
    frame = summarise(summary, keys, SUMMARY_METRICS, orders={"model": model_order, "method": list(METHODS)})
    return Summary(frame, keys, SUMMARY_METRICS, key_labels={k: k.capitalize() for k in keys},
                   title="Structure of the subnetworks: attention vs MLP",
                   note="Share: of the weights in the subnetwork. Density: share of the matrices' weights in it. "
                        "Dead: MLP hidden neurons whose every incoming weight is in the subnetwork.")


def query_head_density(heads: pd.DataFrame) -> pd.DataFrame:
    """Density of each query head over its q and o slices and its key/value group's k and v slices.

    Rows: the labels, block, head, density. A k/v head is shared by heads / kv_heads query heads (GQA)."""
    labels = [c for c in heads.columns if c not in ("head", "part", "weights", "density")]
    frames = []
    for _, rows in heads.groupby("mask", sort=False):
        n_query = rows.loc[rows["part"].isin(["q", "o"]), "head"].max() + 1
        n_kv = rows.loc[rows["part"].isin(["k", "v"]), "head"].max() + 1
        group = n_query // n_kv if n_kv == n_kv else 1  # n_kv is NaN when the mask has no k/v slices
        rows = rows.assign(head=[[h] if part in "qo" else list(range(h * group, (h + 1) * group))
                                 for h, part in zip(rows["head"], rows["part"])]).explode("head").astype({"head": int})
        frames.append(rows.assign(removed=rows["density"] * rows["weights"]))
    joined = pd.concat(frames).groupby([*labels, "head"], sort=False)[["removed", "weights"]].sum().reset_index()
    return joined.assign(density=joined["removed"] / joined["weights"]).drop(columns=["removed", "weights"])


def structure_figure(heads: pd.DataFrame, summary: pd.DataFrame, out: str | Path,
                     model_order: list[str] | None = None) -> None:
    """Per model (one row): a blocks x heads density heatmap per method, then attention vs MLP bars
    (share of the subnetwork, density); means over the masks (TargetKGs, seeds); error bars ± 1 std."""
    import numpy as np

    from kcs.reporting.figures import METHOD_COLOURS, plt, save

    if heads.empty:
        raise KcsError("no attention matrices in the masks: nothing to draw per head")
    if "model" not in summary.columns:
        raise KcsError("the structure figure needs masks labelled with their model (kcs train --label model=NAME)")
    per_head = query_head_density(heads)
    models = ordered(summary["model"], model_order)
    methods = ordered(summary["method"], list(METHODS))
    ncols = len(methods) + 2
    fig, axes = plt.subplots(len(models), ncols, figsize=(3.6 * ncols, 3.2 * len(models)), squeeze=False,
                             layout="constrained")
    for row, model in zip(axes, models):
        grids = {m: per_head[(per_head["model"] == model) & (per_head["method"] == m)]
                 .pivot_table(index="block", columns="head", values="density", aggfunc="mean") for m in methods}
        top = max((float(np.nanmax(g.to_numpy())) for g in grids.values() if g.size), default=0) * 100 or 1
        image = None
        for ax, method in zip(row, methods):
            grid = grids[method]
            if grid.empty:  # no mask of this method for this model
                ax.axis("off")
                continue
            # one colour scale per model, so learned and random read against each other
            image = ax.imshow(grid.to_numpy() * 100, vmin=0, vmax=top, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns], fontsize=7)
            ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index], fontsize=7)
            ax.set_xlabel("attention head")
            ax.set_ylabel("block")
            ax.set_title(f"{model}: {method}", fontsize=9)
        if image is not None:
            fig.colorbar(image, ax=list(row[:len(methods)]), shrink=0.8, label="head weights in subnetwork (%)")
        rows = summary[summary["model"] == model]
        for ax, metric, title, unit in ((row[-2], "share", "share of the subnetwork", "% of the subnetwork's weights"),
                                        (row[-1], "density", "density", "% of the matrices' weights")):
            x, width = np.arange(2), 0.8 / len(methods)
            for i, method in enumerate(methods):
                values = rows.loc[rows["method"] == method, [f"attention_{metric}", f"mlp_{metric}"]] * 100
                ax.bar(x + (i - (len(methods) - 1) / 2) * width, values.mean(), width,
                       yerr=values.std(ddof=1).fillna(0), capsize=3, color=METHOD_COLOURS.get(method), label=method)
            ax.set_xticks(x, ["attention", "MLP"])
            ax.set_ylabel(unit)
            ax.set_title(f"{model}: {title}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("Structure of the subnetworks: per-head density, attention vs MLP")
    save(fig, out)
