"""What a configuration change reruns, said before anything runs.

When the whole DAG of a configuration completes, the pipeline records what it was made of
(`plan_record`: models, TargetKGs, ControlKGs, ControlLM, seeds, the training values of each
(model, variant), evaluation settings, downstream experiments) in `{results}/config/completed.yaml`.
The next invocation compares its own plan with that record and prints, per change, what Snakemake
will redo (`describe_changes`): a new TargetKG, seed or model adds its own jobs and touches nothing
that exists (tests/test_workflow_additions.py); a changed entry redoes what depends on it. The
record is what a complete run was made of, not a cache: Snakemake decides what runs, from the files.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from kcs.readers import read_yaml_mapping


def plan_record(plan) -> dict:
    """What a complete run of `plan` (kcs.pipeline.plan.Plan) was made of, as plain data."""
    config = plan.config
    training = {}
    for model, _, variant, _ in plan.runs:
        values = dict(plan.train_config_values(model, variant))
        values.pop("deviations", None)  # the reasons change nothing computed
        training[f"{model}/{variant}"] = values
    return _plain({
        "models": plan.models,
        "targetkgs": plan.targetkgs,
        "controlkgs": plan.controlkgs,
        "controllm": config["controllm"],
        "seeds": plan.seeds,
        "training": training,
        "evaluation": plan.evaluation_config_values(),
        "downstream": plan.downstream,
        "runs": [[model, kg, variant, seed] for model, kg, variant, seed in plan.runs],
    })


def read_record(path: str | Path) -> dict | None:
    """The record of the last complete run, or None when there is none yet."""
    return read_yaml_mapping(path, "record of a complete run") if Path(path).is_file() else None


def describe_changes(old: dict | None, new: dict) -> list[str]:
    """One line per change from the last complete run `old` to the plan `new`, saying what reruns."""
    if old is None:
        return ["no complete run recorded yet: every missing output is made"]
    runs = [tuple(run) for run in new["runs"]]

    def count(**where) -> int:
        index = {"model": 0, "kg": 1, "variant": 2, "seed": 3}
        return sum(all(run[index[k]] == v for k, v in where.items()) for run in runs)

    lines = []
    for key, label, field in (("models", "model", "model"), ("targetkgs", "TargetKG", "kg")):
        before, after = old.get(key, {}), new[key]
        for name in after:
            if name not in before:
                lines.append(f"+ {label} {name}: its data, {count(**{field: name})} trainings with their evaluations "
                             "and baselines; nothing that exists reruns")
            elif before[name] != after[name]:
                lines.append(f"~ {label} {name} changed: its data and its {count(**{field: name})} trainings are redone")
        lines += [f"- {label} {name}: its files stay; the tables leave it out" for name in before if name not in after]
    for name, entry in new["controlkgs"].items():
        if name in old.get("controlkgs", {}) and old["controlkgs"][name] != entry:
            users = sorted(kg for kg, kg_entry in new["targetkgs"].items() if kg_entry["controlkg"] == name)
            lines.append(f"~ ControlKG {name} changed: its data and every run of {', '.join(users) or 'no TargetKG'} "
                         "are redone")
    added = [seed for seed in new["seeds"] if seed not in old.get("seeds", [])]
    lines += [f"+ seed {seed}: {count(seed=seed)} trainings with their evaluations and baselines; the seed "
              "combinations and seed overlaps of every (model, TargetKG) are redone" for seed in added]
    lines += [f"- seed {seed}: its files stay; the tables leave it out"
              for seed in old.get("seeds", []) if seed not in new["seeds"]]
    for key, values in new["training"].items():
        before = old.get("training", {}).get(key)
        model, variant = key.split("/", 1)
        if before is not None and before != values and model in old.get("models", {}):
            keys = sorted(k for k in values.keys() | before.keys() if values.get(k) != before.get(k))
            lines.append(f"~ training of {model} ({variant}) changed ({', '.join(keys)}): its "
                         f"{count(model=model, variant=variant)} trainings are redone")
    if old.get("controllm") != new["controllm"]:
        lines.append("~ ControlLM text changed: every training and evaluation is redone")
    if old.get("evaluation") != new["evaluation"]:
        lines.append("~ evaluation settings changed: every evaluation is redone (no training)")
    for name, entry in new["downstream"].items():
        if old.get("downstream", {}).get(name) != entry:
            lines.append(f"{'~' if name in old.get('downstream', {}) else '+'} downstream experiment {name}: "
                         "its finetuning runs")
    if not lines:
        return ["nothing changed since the last complete run"]
    return lines + ["then the tables, figures and report, which aggregate over every run"]


def _plain(value):
    """Plain YAML types (tuples as lists), so that a record read back compares equal."""
    return yaml.safe_load(yaml.safe_dump(value, sort_keys=False))
