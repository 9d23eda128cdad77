"""What the JSON schema cannot check about a pipeline configuration: names used twice, names that
refer to nothing, and settings that only make sense together. Each error names the key and says
what to do."""

from __future__ import annotations

from kcs import grid
from kcs.errors import KcsError


def index(kind: str, entries: list[dict]) -> dict[str, dict]:
    """name -> entry, refusing a name used twice."""
    out: dict[str, dict] = {}
    for i, entry in enumerate(entries):
        if entry["name"] in out:
            raise KcsError(f"config: {kind}[{i}].name '{entry['name']}' is used twice; names must be unique")
        out[entry["name"]] = entry
    return out


def _check_names(where: str, names, known, what: str) -> None:
    for name in names:
        if name not in known:
            raise KcsError(f"config: {where} names {what} '{name}', which is not defined; "
                           f"defined: {', '.join(known) or 'none'}")


def check_references(plan) -> None:
    """Every TargetKG's ControlKG, ablation model/TargetKG and downstream name is defined."""
    for name, kg in plan.targetkgs.items():
        _check_names(f"targetkgs '{name}'.controlkg", [kg["controlkg"]], plan.controlkgs, "ControlKG")
    for name, ablation in plan.ablations.items():
        _check_names(f"ablations '{name}'.models", ablation.get("models", []), plan.models, "model")
        _check_names(f"ablations '{name}'.targetkgs", ablation.get("targetkgs", []), plan.targetkgs, "TargetKG")
    for name, exp in plan.downstream.items():
        _check_names(f"downstream '{name}'.removed", [exp["removed"]], plan.targetkgs, "TargetKG")
        _check_names(f"downstream '{name}'.control", [exp["control"]] if "control" in exp else [],
                     plan.targetkgs, "TargetKG")
        _check_names(f"downstream '{name}'.models", exp["models"], plan.models, "model")
    if not plan.table_kgs:
        raise KcsError("config: every TargetKG has tables: false; at least one must be in the tables")


def check_settings(plan) -> None:
    """Every run's training and evaluation settings (e.g. a reversed block_range), and the settings
    that depend on each other: step masks need ControlLM validation text, rule 'best' needs step masks."""
    grid.evaluation_config_values(plan.config)
    for run in plan.runs:
        plan.train_config_values(run.model, run.variant)
    if plan.steps_files() and "val" not in plan.config["controllm"]:
        raise KcsError(
            "config: training keep_step_masks evaluates every step mask on ControlLM validation text, "
            "but controllm has no 'val' split; add controllm.val (e.g. {split: validation, files: [], "
            "fraction: null, max_words: 20000}) as in config.yaml")
    if plan.selection["rule"] == "best":
        without = [f"{m}/{v}" for m, _, v, _ in plan.runs if not plan.keeps_step_masks(m, v)]
        if without:
            raise KcsError(
                "config: checkpoint_selection.rule 'best' chooses among step masks, but training of "
                f"{', '.join(dict.fromkeys(without))} has keep_step_masks false; set training.keep_step_masks: true")
