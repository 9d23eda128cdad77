"""Which runs a pipeline configuration asks for: the masks to train, the evaluations in the tables,
the random draws and the seed-combined subnetworks. Read by the Snakefile (rules/common.smk) and by
`kcs disk-usage`, so the DAG and the projection of its disk use count the same runs.

The configuration is config.yaml merged with any --configfile, as Snakemake merges it
(`load_pipeline_config` does the same for the command line), checked against the JSON schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from kcs.config import EvalConfig, TrainConfig
from kcs.errors import KcsError

DEFAULT_VARIANT = "default"  # the paper's training objective; ablations are the other variants
LEARNED = "learned"
RANDOM = "random"
COMBINATIONS = ("union", "intersection", "majority")
SCHEMA = Path(__file__).parent / "schemas" / "config.schema.json"


class Run(NamedTuple):
    model: str
    kg: str
    variant: str
    seed: int


class Evaluation(NamedTuple):
    model: str
    kg: str
    variant: str
    seed: int
    method: str  # learned | random (first draw) | random-N (draw N >= 2)


def random_methods(draws: int) -> list[str]:
    """The method names of `draws` random subnetworks per learned one: random, random-2, ..."""
    return [random_method(draw) for draw in range(1, draws + 1)]


def random_method(draw: int) -> str:
    """'random' for draw 1, 'random-N' for draw N."""
    return RANDOM if draw == 1 else f"{RANDOM}-{draw}"


def random_draw(method: str) -> int:
    """1 for 'random', N for 'random-N'."""
    if method == RANDOM:
        return 1
    prefix, _, number = method.partition("-")
    if prefix != RANDOM or not number.isdigit() or int(number) < 2:
        raise KcsError(f"'{method}' is not a random-draw method (random or random-N, N >= 2)")
    return int(number)


def train_config_values(config: dict, model: str, variant: str) -> dict:
    """Every training key of one (model, variant): kcs's defaults (the paper's) <- config training <-
    the model's training keys <- the ablation's training keys. The reasons for deviating from the
    paper (`deviations`) merge the same way; an ablation's own keys are explained by its description."""
    layers = [config.get("training") or {}, next(m for m in config["models"] if m["name"] == model).get("training", {})]
    defaults = TrainConfig.model_fields
    if variant != DEFAULT_VARIANT:
        ablation = next(a for a in config["ablations"] if a["name"] == variant)
        explained = {key: f"ablation {variant}: {ablation.get('description', variant)}" for key in ablation["training"]
                     if key != "deviations"}
        layers.append({**ablation["training"], "deviations": explained | ablation["training"].get("deviations", {})})
    values: dict = {}
    reasons: dict = {}
    for layer in layers:
        values.update({key: value for key, value in layer.items() if key != "deviations"})
        reasons.update(layer.get("deviations") or {})
    # a later layer may set a key back to the paper's value: the reason an earlier one gave no longer applies
    set_back = {key for key, value in values.items() if key in defaults and value == defaults[key].default}
    values["deviations"] = {key: why for key, why in reasons.items() if key not in set_back}
    return TrainConfig.from_dict(values, f"config: training of {model} ({variant})").to_dict()


def evaluation_config_values(config: dict) -> dict:
    """Every key of the final evaluation: kcs's defaults <- config evaluation."""
    return EvalConfig.from_dict(dict(config.get("evaluation") or {}), "config: evaluation").to_dict()


def table_kgs(config: dict) -> list[str]:
    """TargetKGs in the tables (trained for every model and seed); the others serve downstream only."""
    return [kg["name"] for kg in config["targetkgs"] if kg.get("tables", True)]


def training_runs(config: dict) -> list[Run]:
    """Every mask to train, in config order, without repeats."""
    models = [m["name"] for m in config["models"]]
    kgs = table_kgs(config)
    seeds = list(config["seeds"])
    runs = [Run(model, kg, DEFAULT_VARIANT, seed) for model in models for kg in kgs for seed in seeds]
    for ablation in config.get("ablations", []):
        for model in ablation.get("models", models):
            for kg in ablation.get("targetkgs", kgs):
                runs += [Run(model, kg, ablation["name"], seed) for seed in seeds]
    for exp in config.get("downstream", []):
        if {"remaining", "random"} & set(exp["starts"]):
            runs += [Run(model, exp["removed"], DEFAULT_VARIANT, seed) for model in exp["models"] for seed in exp["seeds"]]
    return list(dict.fromkeys(runs))


def evaluations(config: dict) -> list[Evaluation]:
    """Every metrics file in the tables: each learned mask of a table KG, and for the default
    variant `random_draws` random subnetworks of the same per-matrix size."""
    kgs = set(table_kgs(config))
    draws = random_methods(config.get("random_draws", 1)) if config["random_baseline"] else []
    out = []
    for run in training_runs(config):
        if run.kg not in kgs:
            continue
        out.append(Evaluation(*run, LEARNED))
        if run.variant == DEFAULT_VARIANT:
            out += [Evaluation(*run, method) for method in draws]
    return out


def seed_combinations(config: dict) -> list[tuple[str, str, str]]:
    """(model, TargetKG, combination) of every seed-combined subnetwork: each configured combination
    (union, intersection, majority) of the default-variant seed masks of every table KG, when there
    are at least two seeds."""
    if len(config["seeds"]) < 2:
        return []
    combinations = config.get("seed_combinations", COMBINATIONS)
    return [(m["name"], kg, how) for m in config["models"] for kg in table_kgs(config) for how in combinations]


def load_pipeline_config(paths: list[str | Path]) -> dict:
    """config.yaml and --configfile files merged as Snakemake merges them (later files win, nested
    mappings merged, lists replaced), checked against the schema with its defaults filled in."""
    from snakemake.utils import update_config, validate

    from kcs.readers import read_yaml_mapping

    merged: dict = {}
    for path in paths:
        update_config(merged, read_yaml_mapping(path, "pipeline configuration"))
    try:
        validate(merged, str(SCHEMA))
    except Exception as err:  # snakemake's WorkflowError, raised while handling jsonschema's error
        raise KcsError(f"{', '.join(map(str, paths))}: {schema_error(err)}") from None
    return merged


def schema_error(err: Exception) -> str:
    """The schema's complaint about a configuration in one line, naming the key:
    `training.steps: 'x' is not of type 'integer' (...)`."""
    import jsonschema

    cause = err.__context__
    if not isinstance(cause, jsonschema.ValidationError):
        return str(err)
    cause = jsonschema.exceptions.best_match([cause])
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in cause.absolute_path).lstrip(".")
    return (f"{where or '(top level)'}: {cause.message} (schema: kcs/schemas/config.schema.json; "
            "every key is documented in config.yaml)")
