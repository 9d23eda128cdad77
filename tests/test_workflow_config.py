"""The pipeline's configuration: the schema, its errors, lint, and the dry runs of the three configurations."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

from kcs.config import EvalConfig, TrainConfig, config_schema_sections

from workflow_fixtures import (
    DEMO_CONFIG,
    PAPER_CONFIG,
    REPO,
    SMOKE_CONFIG,
    job_counts,
    load_config,
    prepare_workdir,
    run_snakemake,
    write_config,
)

SCHEMA = json.loads((REPO / "kcs" / "schemas" / "config.schema.json").read_text())
CONFIGS = {"paper": PAPER_CONFIG, "demo": DEMO_CONFIG, "smoke": SMOKE_CONFIG}


def validator():
    return jsonschema.Draft202012Validator(SCHEMA)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_three_configurations_are_valid_and_separate(name):
    config = load_config(CONFIGS[name])
    validator().validate(config)
    assert config["results"] == f"results/{name}"


def test_every_collection_is_a_list():
    """A --configfile is deep-merged into config.yaml: only lists are replaced, so collections must be lists."""
    for key in ("models", "targetkgs", "controlkgs", "seeds", "ablations", "downstream"):
        assert SCHEMA["properties"][key]["type"] == "array", key


def _all_objects_closed(schema, where="schema"):
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            assert schema.get("additionalProperties") is False, f"{where} accepts unknown keys"
        for key, value in schema.items():
            _all_objects_closed(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            _all_objects_closed(value, f"{where}[{i}]")


def test_every_object_rejects_unknown_keys():
    _all_objects_closed(SCHEMA)


def test_the_schema_sections_are_generated_from_the_config_models():
    """Each step's settings are defined once (kcs/config.py); the schema's sections come from there
    (`python scripts/update_config_schema.py` rewrites them)."""
    for name, section in config_schema_sections().items():
        assert SCHEMA["$defs"][name] == section, f"{name}: run python scripts/update_config_schema.py"
    assert SCHEMA["properties"]["training"]["$ref"] == "#/$defs/trainConfig"
    assert SCHEMA["properties"]["evaluation"]["$ref"] == "#/$defs/evalConfig"
    assert set(SCHEMA["$defs"]["trainConfig"]["properties"]) == set(TrainConfig.field_names())
    assert "required" not in SCHEMA["$defs"]["trainConfig"]  # a configuration lists only what differs


@pytest.mark.parametrize("name", CONFIGS)
def test_configurations_list_only_what_differs_from_the_defaults(name):
    """config.yaml's training block is the paper's configuration = TrainConfig's defaults, except how
    often the pipeline keeps a step mask (every 4,000 steps, not at each of the 200 checkpoints); the
    demo's and smoke's blocks name their deviations and nothing else."""
    text = load_config(CONFIGS[name])  # the file alone, before Snakemake merges it into config.yaml
    for section, model in (("training", TrainConfig), ("evaluation", EvalConfig)):
        defaults = model().to_dict()
        repeated = {k: v for k, v in (text.get(section) or {}).items() if v == defaults[k]}
        assert not repeated, f"{CONFIGS[name]}: {section} repeats kcs's defaults {repeated}"
    if name == "paper":
        assert text["training"] == {"step_mask_every": 4000}


def test_the_pipeline_resolves_every_key_from_the_defaults():
    from kcs import grid

    config = {"training": {"steps": 7}, "models": [{"name": "m", "training": {"lr": 0.5}}], "ablations": []}
    values = grid.train_config_values(config, "m", grid.DEFAULT_VARIANT)
    assert values == {**TrainConfig().to_dict(), "steps": 7, "lr": 0.5}
    assert grid.evaluation_config_values({"evaluation": {}}) == EvalConfig().to_dict()


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c.update(seedz=[1]), "seedz"),
    (lambda c: c["training"].update(stepz=10), "stepz"),
    (lambda c: c["training"].update(steps="many"), "steps"),
    (lambda c: c["models"][0].update(layerz=2), "layerz"),
    (lambda c: c["targetkgs"][0].update(paper="buildings.n.01"), "paper"),
    (lambda c: c["ablations"][0]["training"].update(use_controlm=False), "use_controlm"),
    (lambda c: c["evaluation"].update(eval_batch_size=0), "eval_batch_size"),
])
def test_schema_errors_name_the_key(mutate, key):
    config = copy.deepcopy(load_config(SMOKE_CONFIG))
    mutate(config)
    errors = list(validator().iter_errors(config))
    assert errors
    assert any(key in error.message or key in error.json_path for error in errors), [e.message for e in errors]


def _dry_run(tmp_path: Path, config: dict, *extra: str, check: bool = True):
    workdir = prepare_workdir(tmp_path / "work")
    path = write_config(tmp_path / "config.yaml", config)
    return run_snakemake(workdir, "-n", "--configfile", str(path), *extra, timeout_s=180, check=check)


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["training"].update(stepz=10), r"config: training: .*'stepz' was unexpected"),
    (lambda c: c["training"].update(steps="many"), r"config: training\.steps: 'many' is not of type 'integer'"),
    (lambda c: c.update(resultz="x"), r"config: \(top level\): .*'resultz' was unexpected"),
    (lambda c: c["models"][1]["tiny"].update(layer=3), r"config: models\[1\]\.tiny: .*'layer' was unexpected"),
    (lambda c: c["targetkgs"].append(dict(c["targetkgs"][0])), r"targetkgs\[\d\]\.name 'fruit' is used twice"),
    (lambda c: c["targetkgs"][0].update(controlkg="wordnet"), r"names ControlKG 'wordnet', which is not defined"),
])
def test_snakemake_refuses_a_bad_config_naming_the_key(tmp_path, mutate, expected):
    config = copy.deepcopy(load_config(SMOKE_CONFIG))
    mutate(config)
    result = _dry_run(tmp_path, config, check=False)
    assert result.returncode != 0
    assert re.search(expected, result.stdout), result.stdout[-3000:]


def test_lint_is_clean(tmp_path):
    workdir = prepare_workdir(tmp_path)
    for config in (PAPER_CONFIG, SMOKE_CONFIG):
        result = run_snakemake(workdir, "--lint", "--configfile", str(config), timeout_s=180, check=False)
        assert result.returncode == 0 and "Congratulations" in result.stdout, result.stdout[-3000:]


def expected_paper_jobs(config: dict) -> dict[str, int]:
    """The job counts the paper configuration implies, computed from the config itself."""
    models = [m["name"] for m in config["models"]]
    table_kgs = [k["name"] for k in config["targetkgs"] if k.get("tables", True)]
    seeds = config["seeds"]
    default_runs = len(models) * len(table_kgs) * len(seeds)
    ablation_runs = sum(len(a.get("models", models)) * len(a.get("targetkgs", table_kgs)) * len(seeds)
                        for a in config["ablations"])
    downstream_runs = sum(len(d["models"]) * len(d["seeds"]) for d in config["downstream"])
    finetunes = sum(len(d["models"]) * len(d["seeds"]) * len(d["starts"]) for d in config["downstream"])
    draws = config.get("random_draws", 1)
    combined = len(models) * len(table_kgs) * len(config.get("seed_combinations", ["union", "intersection", "majority"]))
    return {
        "train_mask": default_runs + ablation_runs + downstream_runs,
        # the table runs' draws, and draw 1 of each downstream run that starts from a random removal
        "random_mask": draws * default_runs + sum(len(d["models"]) * len(d["seeds"]) for d in config["downstream"]
                                                  if "random" in d["starts"] and d["removed"] not in table_kgs),
        "evaluate_mask": (1 + draws) * default_runs + ablation_runs,
        "evaluate_full": len(models) * len(table_kgs),  # once per (model, TargetKG), shared by every mask
        "overlap_seeds": len(models) * len(table_kgs),
        "overlap_kgs": len(models) * len(seeds),
        "combine_seed_masks": combined,
        "evaluate_combined_mask": 2 * combined,  # learned and random of the same size
        "evaluate_steps": default_runs + ablation_runs,  # the table runs' step masks (keep_step_masks)
        "prepare_model_hub": len(models),
        "finetune": finetunes,
        "train_config": len(models) + len(config["ablations"]),
    }


def test_paper_dry_run_lists_the_expected_jobs(tmp_path):
    # how long planning takes is measured in benchmarks/dry_run.py, not asserted here
    workdir = prepare_workdir(tmp_path)
    result = run_snakemake(workdir, "-n", "--quiet", "rules", timeout_s=300)
    counts = job_counts(result.stdout)
    expected = expected_paper_jobs(load_config(PAPER_CONFIG))
    assert {rule: counts.get(rule, 0) for rule in expected} == expected
    # 4 GPT-2 sizes x 10 TargetKGs x 3 seeds + 7 ablations x 10 x 3 on GPT-2 small + 2 x 3 for
    # CommonsenseQA (both directions); 3 random draws per default-variant mask
    assert counts["train_mask"] == 336 and counts["evaluate_mask"] == 690
    assert counts["wordnet_controlkg_test"] == 1  # the WordNet ControlKG's held-out test split


def test_adding_a_targetkg_is_one_config_entry(tmp_path):
    config = copy.deepcopy(load_config(SMOKE_CONFIG))
    before = job_counts(_dry_run(tmp_path / "before", config, "--quiet", "rules").stdout)
    config["targetkgs"].append({"name": "sun", "paper": "sun", "controlkg": "conceptnet"})
    after = job_counts(_dry_run(tmp_path / "after", config, "--quiet", "rules").stdout)
    runs = len(config["models"]) * len(config["seeds"])
    assert after["train_mask"] == before["train_mask"] + runs
    assert after["evaluate_mask"] == before["evaluate_mask"] + (1 + config["random_draws"]) * runs
    assert after["evaluate_steps"] == before["evaluate_steps"] + runs
    assert after["combine_seed_masks"] == before["combine_seed_masks"] + len(config["models"]) * len(config["seed_combinations"])
    assert after["evaluate_full"] == before["evaluate_full"] + len(config["models"])
    assert after["overlap_seeds"] == before["overlap_seeds"] + len(config["models"])
    assert after["paper_kg"] == before["paper_kg"] + 1


def _shell_commands(dry_run_output: str, command: str) -> list[str]:
    return [line for line in dry_run_output.splitlines() if line.startswith(f"Shell command: {command} ")]


def test_demo_dry_run(tmp_path):
    workdir = prepare_workdir(tmp_path)
    result = run_snakemake(workdir, "-n", "-p", "--configfile", str(DEMO_CONFIG), timeout_s=120)
    counts = job_counts(result.stdout)
    config = load_config(DEMO_CONFIG)
    runs = len(config["models"]) * len(config["targetkgs"]) * len(config["seeds"])
    assert counts["prepare_model_smollm2"] == 1
    assert counts["train_mask"] >= runs and counts["evaluate_mask"] >= 2 * runs
    # the WordNet ControlKG's held-out test split: sampled apart, verbalised, given to every evaluation
    assert config["controlkgs"][0]["wordnet"]["test_size"] == 200
    assert counts["wordnet_controlkg"] == 1 and counts["wordnet_controlkg_test"] == 1
    assert counts["verbalise_controlkg"] == 3 * len(config["models"])  # train, val, test
    # each TargetKG's runs read the shared splits less the facts touching their own TargetKG's synsets
    test_file = "results/demo/data/SmolLM2-135M/controlkg/wordnet/test.jsonl"
    assert counts["run_controlkg"] == 3 * len(config["targetkgs"]) * len(config["models"])
    filtering = _shell_commands(result.stdout, "kcs data remove-overlap")
    assert len([c for c in filtering if f"--controlkg {test_file}" in c and "--by entities" in c]) == len(config["targetkgs"])
    evaluations = _shell_commands(result.stdout, "kcs evaluate") + _shell_commands(result.stdout, "kcs evaluate-full")
    assert len(evaluations) == counts["evaluate_mask"] + counts["evaluate_full"] + counts["evaluate_combined_mask"]
    for command in evaluations:
        kg = "building" if "targetkg/building.jsonl" in command else "communication"
        assert f"--controlkg-test results/demo/data/SmolLM2-135M/controlkg_of/{kg}/test.jsonl" in command
    [sampling] = [c for c in _shell_commands(result.stdout, "kcs data wordnet-controlkg") if "--out-test" in c]
    # its own settings file (with test_size), so adding a test split leaves the training splits as they are
    assert "--config results/demo/config/wordnet_controlkg_test/wordnet.yaml" in sampling
    assert "--out-train" not in sampling
    training = _shell_commands(result.stdout, "kcs train")
    assert training and not [c for c in training if "test.jsonl" in c]  # training never reads it


def test_a_controlkg_without_test_split_adds_nothing(tmp_path):
    config = copy.deepcopy(load_config(DEMO_CONFIG))
    del config["controlkgs"][0]["wordnet"]["test_size"]
    result = _dry_run(tmp_path, config, "-p")
    counts = job_counts(result.stdout)
    assert "wordnet_controlkg_test" not in counts and counts["verbalise_controlkg"] == 2
    assert not [c for c in _shell_commands(result.stdout, "kcs evaluate") if "--controlkg-test" in c]


def test_paper_wordnet_controlkg_has_a_test_split_and_its_size_is_checked():
    config = load_config(PAPER_CONFIG)
    wordnet = next(c for c in config["controlkgs"] if c["name"] == "wordnet")["wordnet"]
    assert (wordnet["train_size"], wordnet["val_size"], wordnet["test_size"]) == (4400, 50, 500)
    wordnet["test_size"] = -1
    errors = list(validator().iter_errors(config))
    assert errors and any("test_size" in e.json_path for e in errors), [e.message for e in errors]


def _job_blocks(dry_run_output: str, rule: str) -> list[str]:
    return re.findall(rf"^rule {rule}:\n(.*?)(?:\n\n|\Z)", dry_run_output, re.S | re.M)


def test_cluster_profile_dry_run_from_the_repo_root(tmp_path):
    """`snakemake --cores all --profile slurm` as users type it: training and finetuning ask for a
    GPU, evaluation does not; memory grows with the model."""
    import subprocess
    import sys

    from workflow_fixtures import pipeline_env

    workdir = prepare_workdir(tmp_path)
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "all", "--profile", "slurm",
                             "--directory", str(workdir), "-n"], cwd=REPO, env=pipeline_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:]

    def resources(rule: str, model: str) -> dict[str, str]:
        block = next(b for b in _job_blocks(result.stdout, rule) if f"model={model}" in b)
        line = re.search(r"resources: (.*)", block).group(1)
        return dict(item.split("=", 1) for item in line.split(", "))

    small, xl = resources("train_mask", "gpt2"), resources("train_mask", "gpt2-xl")
    assert small["gpu"] == "1" and int(xl["mem_mb"]) > int(small["mem_mb"]) and int(xl["runtime"]) > int(small["runtime"])
    assert resources("finetune", "gpt2")["gpu"] == "1"
    assert "gpu" not in resources("evaluate_mask", "gpt2")
