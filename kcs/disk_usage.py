"""The disk a pipeline configuration will use, projected from the model shapes and the run list
(`kcs disk-usage`), before anything runs.

Sizes per file, from what kcs writes:
- a learned mask: one float32 logit per masked weight (per input feature for neuron masks);
- a resume checkpoint: logits and Adam's two moments (3x the mask); it exists only while its run
  trains and is deleted when mask.safetensors and run.json are written, so at most one per running job;
- random, combined and step masks: the 0/1 subnetwork bit-packed (1 bit per logit);
- a prepared model folder: float32 weights (hub and SmolLM2 models; a `path:` model is the user's);
- a training log (train_log.csv and its copy in curves/): one row per step.
Metadata, metrics, tables and logs add kilobytes per file and are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kcs import grid, shapes
from kcs.config import TrainConfig

# one train_log.csv row, rounded up: the smoke run's rows are 89 bytes on average (`wc -c`), with
# validation columns the longest; 6 significant digits per number
TRAIN_LOG_ROW_BYTES = 100


@dataclass(frozen=True)
class Item:
    artifact: str
    model: str
    files: int
    bytes_each: int
    lifetime: str = "kept"  # kept | training (while its run trains) | temp (until every reader is done)

    @property
    def total(self) -> int:
        return self.files * self.bytes_each


def _bits(logits: int) -> int:
    return math.ceil(logits / 8)


def _step_masks(train: TrainConfig) -> int:
    """Step masks of one run: every step_mask_every (else checkpoint_every) steps and the last step."""
    every = train.step_mask_every or train.checkpoint_every
    return train.steps // every + (train.steps % every != 0)


def project(config: dict) -> list[Item]:
    """Every artifact of the configuration's DAG that is large enough to matter, per model."""
    entries = {m["name"]: m for m in config["models"]}
    models_config = {name: shapes.entry_config(entry, f"models '{name}'") for name, entry in entries.items()}
    counts: dict[tuple[str, str], dict] = {}

    def train_config(model: str, variant: str) -> TrainConfig:
        return TrainConfig.from_dict(grid.train_config_values(config, model, variant), f"training of {model}/{variant}")

    def logits(model: str, variant: str) -> int:
        train = train_config(model, variant)
        key = (model, f"{train.granularity}/{train.top_k_blocks}/{train.block_range}")
        if key not in counts:
            counts[key] = shapes.model_counts(models_config[model], train.top_k_blocks, train.block_range,
                                              train.granularity)
        return counts[key]["logits"]

    items: list[Item] = []
    runs = grid.training_runs(config)
    random_lifetime = "kept" if config["keep_random_masks"] else "temp"
    for name, entry in entries.items():
        if "path" not in entry:
            items.append(Item("model folder (float32)", name, 1,
                              4 * shapes.model_counts(models_config[name])["parameters"]))
    for model in entries:
        mine = [run for run in runs if run.model == model]
        if not mine:
            continue
        by_size: dict[int, list] = {}
        for run in mine:
            by_size.setdefault(logits(model, run.variant), []).append(run)
        for n_logits, group in by_size.items():
            granularity = train_config(model, group[0].variant).granularity
            items.append(Item(f"learned mask (float32 logits, {granularity} granularity)", model, len(group), 4 * n_logits))
            items.append(Item("resume checkpoint (logits + Adam moments)", model, len(group), 12 * n_logits, "training"))
            steps = [train_config(model, run.variant) for run in group]
            kept = sum(_step_masks(t) for t in steps if t.keep_step_masks)
            if kept:
                items.append(Item("step masks (bit-packed)", model, kept, _bits(n_logits)))
            rows = sum(t.steps for t in steps)
            items.append(Item("training logs (train_log.csv + curves copy)", model, 2 * len(group),
                              TRAIN_LOG_ROW_BYTES * rows // len(group)))
        random = [e for e in grid.evaluations(config) if e.model == model and e.method != grid.LEARNED]
        if random:
            items.append(Item("random masks (bit-packed)", model, len(random),
                              _bits(logits(model, grid.DEFAULT_VARIANT)), random_lifetime))
        combined = [c for c in grid.seed_combinations(config) if c[0] == model]
        if combined:
            # union, intersection and majority, each with its random subnetwork of the same size
            items.append(Item("seed-combined masks + their random (bit-packed)", model, 2 * len(combined),
                              _bits(logits(model, grid.DEFAULT_VARIANT)), random_lifetime))
    return items


def summary(items: list[Item], parallel_jobs: int) -> dict[str, float]:
    """GB kept once the DAG has finished, and an upper bound of the peak: that, every temp() mask at
    once, and the largest resume checkpoints of `parallel_jobs` training jobs running at once."""
    kept = sum(i.total for i in items if i.lifetime == "kept")
    temp = sum(i.total for i in items if i.lifetime == "temp")
    checkpoints = sorted((i.bytes_each for i in items if i.lifetime == "training" for _ in range(i.files)), reverse=True)
    return {"kept_gb": kept / 1e9, "peak_gb": (kept + temp + sum(checkpoints[:parallel_jobs])) / 1e9,
            "runs": len(checkpoints)}


LIFETIME_NOTES = {"kept": "", "training": " (while its run trains)", "temp": " (until evaluated: keep_random_masks false)"}


def to_markdown(items: list[Item], parallel_jobs: int) -> str:
    lines = ["| artifact | model | files | each | total |", "|---|---|---:|---:|---:|"]
    for item in items:
        lines.append(f"| {item.artifact}{LIFETIME_NOTES[item.lifetime]} | {item.model} | {item.files:,} | "
                     f"{_size(item.bytes_each)} | {_size(item.total)} |")
    totals = summary(items, parallel_jobs)
    jobs = f"{parallel_jobs} training job{'s' if parallel_jobs != 1 else ''}"
    lines += ["", f"{totals['runs']:,} training runs. Kept once the DAG has finished: **{_size(totals['kept_gb'] * 1e9)}**; "
              f"peak with {jobs} at once (each holding its resume checkpoint): at most **{_size(totals['peak_gb'] * 1e9)}**."]
    return "\n".join(lines) + "\n"


def _size(n_bytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{n_bytes:.0f} B"
