"""kcs.pipeline: the decisions the Snakefile names (which KG file a model reads, each target, each
step's settings), tested without Snakemake; and `--config FILE` of the commands whose settings are
their options."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from kcs.cli import _command_parser, build_parser, parse
from kcs.errors import KcsError
from kcs.grid import load_pipeline_config
from kcs.pipeline.paths import RESULT_PATTERNS, Paths, fill
from kcs.pipeline.plan import Plan
from kcs.pipeline.settings import STEPS, step_settings

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"paper": ["config.yaml"], "demo": ["config.yaml", "configs/demo.yaml"],
           "smoke": ["config.yaml", "configs/smoke.yaml"]}


@pytest.fixture(scope="module", params=list(CONFIGS))
def plan(request) -> Plan:
    return Plan(load_pipeline_config([ROOT / p for p in CONFIGS[request.param]]))


def test_paths_fill_the_results_folder_and_leave_the_wildcards():
    paths = Paths("results/x/")
    assert paths.metrics == "results/x/metrics/{model}/{kg}/{variant}/seed{seed}/{method}.json"
    assert fill(paths.metrics, model="m", seed=1) == "results/x/metrics/m/{kg}/{variant}/seed1/{method}.json"
    assert paths.benchmark("overlap_seeds", model="m", kg="k") == "results/x/benchmarks/overlap/m/seeds.k.tsv"
    assert all(p.startswith(("{results}/", "resources/")) for p in RESULT_PATTERNS.values())


def test_the_authors_sentences_are_used_where_they_made_them():
    config = load_pipeline_config([ROOT / "config.yaml"])
    paper = Plan(config)
    assert paper.targetkg_file("gpt2-medium", "building").endswith("data/paper/gpt2-medium/building.n.01.jsonl")
    # a model the authors made no WordNet sentences for: kcs verbalises the triplets for it
    other = copy.deepcopy(config)
    other["models"].append({"name": "smol", "smollm2": True})
    plan = Plan(other)
    assert plan.targetkg_file("smol", "building") == f"{plan.paths.results}/data/smol/targetkg/building.jsonl"
    assert plan.is_verbalised("smol", "building") and not plan.is_verbalised("gpt2", "building")


def test_every_table_run_has_its_targets(plan):
    assert len(plan.metrics_files()) == len(plan.evaluations) == len(set(plan.metrics_files()))
    assert all(f in plan.final_outputs() for f in (f"{plan.paths.tables}/runs.csv", f"{plan.paths.tables}/main.csv"))
    benchmarks = plan.benchmark_files()
    assert len(benchmarks) == len(set(benchmarks))
    assert sum("/train_mask/" in f for f in benchmarks) == len(plan.runs)
    assert all("{" not in f for f in benchmarks + plan.all_masks() + plan.default_curves())


def test_a_reference_to_nothing_is_an_error_naming_the_key():
    config = load_pipeline_config([ROOT / "config.yaml", ROOT / "configs/smoke.yaml"])
    config["targetkgs"][0]["controlkg"] = "nowhere"
    with pytest.raises(KcsError, match=r"targetkgs '.*'\.controlkg names ControlKG 'nowhere', which is not defined"):
        Plan(config)


def _settings_of_every_step(plan):
    names = {
        "sample_wordnet": plan.of_kind(plan.targetkgs, "wordnet"),
        "sample_conceptnet": plan.of_kind(plan.targetkgs, "conceptnet"),
        "wordnet_controlkg": plan.of_kind(plan.controlkgs, "wordnet"),
        "wordnet_controlkg_test": plan.wordnet_controlkgs_with_test(),
        "controllm": [s for s in ("train", "val", "test") if s in plan.config["controllm"]],
        "tiny_model": plan.of_kind(plan.models, "tiny"),
        "build_mc_task": [n for n, e in plan.downstream.items() if "wordnet" in e["task"]],
        "select_checkpoint": ["selection"],
    }
    return [(step, name, step_settings(plan, step, name)) for step in STEPS for name in names[step]]


COMMANDS = {"sample_wordnet": ["data", "sample-wordnet"], "sample_conceptnet": ["data", "sample-conceptnet"],
            "wordnet_controlkg": ["data", "wordnet-controlkg"], "wordnet_controlkg_test": ["data", "wordnet-controlkg"],
            "controllm": ["data", "controllm"], "tiny_model": ["tiny-model"], "build_mc_task": ["build-mc-task"],
            "select_checkpoint": ["select-checkpoint"]}


def test_every_settings_file_is_accepted_by_its_command(plan, tmp_path):
    from kcs.cli import _settings_tokens

    parser = build_parser()
    for step, name, settings in _settings_of_every_step(plan):
        path = tmp_path / f"{step}.{name}.yaml"
        path.write_text(yaml.safe_dump(settings))
        tokens = _settings_tokens(str(path), _command_parser(parser, COMMANDS[step]))
        assert len(tokens) >= 2 * len([v for v in settings.values() if v is not None and not isinstance(v, bool)])


def test_a_settings_file_gives_the_options_and_later_options_win(tmp_path):
    settings = tmp_path / "s.yaml"
    settings.write_text("root: building.n.01\nsize: 5\nhops: 3\n")
    args = parse(["data", "sample-wordnet", "--config", str(settings), "--hops", "1", "--out", "x.jsonl"])
    assert (args.root, args.size, args.hops, str(args.out)) == ("building.n.01", 5, 1, "x.jsonl")


@pytest.mark.parametrize("text, message", [
    ("root: building.n.01\nsise: 5\n", r"s\.yaml: unknown key 'sise'; known keys: .*size"),
    ("root: building.n.01\nsize: many\n", r"s\.yaml: key 'size' has a value 'many' that is not a valid --size value"),
    ("- a list\n", r"s\.yaml: expected a mapping"),
])
def test_a_bad_settings_file_is_an_error_naming_file_and_key(tmp_path, text, message):
    settings = tmp_path / "s.yaml"
    settings.write_text(text)
    with pytest.raises(KcsError, match=message):
        parse(["data", "sample-wordnet", "--config", str(settings), "--out", "x.jsonl"])


def test_the_cli_exits_2_on_a_bad_settings_file(tmp_path, capsys):
    from kcs.cli import main

    settings = tmp_path / "s.yaml"
    settings.write_text("rule: sometimes\n")
    assert main(["select-checkpoint", "--steps", "x.json", "--config", str(settings), "--out", "m", "--record", "r"]) == 2
    assert "s.yaml: key 'rule' must be one of final, best, got 'sometimes'" in capsys.readouterr().err


def _demo_config() -> dict:
    return load_pipeline_config([ROOT / p for p in CONFIGS["demo"]])


def test_the_change_summary_says_what_each_kind_of_change_reruns(tmp_path):
    from kcs.pipeline.changes import describe_changes, read_record

    config = _demo_config()
    config["results"] = str(tmp_path / "results")
    before = Plan(config)
    assert "no complete run recorded yet" in before.changes_summary()
    record = Path(before.paths.completed_plan)
    record.parent.mkdir(parents=True)
    record.write_text(yaml.safe_dump(before.record()))  # as the completed_plan rule writes it
    assert read_record(record) == before.record()
    assert before.changes_summary().splitlines()[1:] == ["  nothing changed since the last complete run"]

    def changes(edit) -> list[str]:
        changed = copy.deepcopy(config)
        edit(changed)
        return describe_changes(read_record(record), Plan(changed).record())[:-1]  # without the closing line

    assert changes(lambda c: c["targetkgs"].append({"name": "animal", "wordnet": {"root": "animal.n.01", "size": 9},
                                                    "controlkg": "wordnet"})) == [
        "+ TargetKG animal: its data, 2 trainings with their evaluations and baselines; nothing that exists reruns"]
    assert changes(lambda c: c["seeds"].append(3)) == [
        "+ seed 3: 2 trainings with their evaluations and baselines; the seed combinations and seed overlaps "
        "of every (model, TargetKG) are redone"]
    assert changes(lambda c: c["models"].append({"name": "gpt2", "hub": "gpt2"})) == [
        "+ model gpt2: its data, 4 trainings with their evaluations and baselines; nothing that exists reruns"]
    assert changes(lambda c: c["training"].update(steps=200)) == [
        "~ training of SmolLM2-135M (default) changed (steps): its 4 trainings are redone"]
    assert changes(lambda c: c["controlkgs"][0]["wordnet"].update(train_size=500)) == [
        "~ ControlKG wordnet changed: its data and every run of building, communication are redone"]
    assert changes(lambda c: c["evaluation"].update(eval_batch_size=100)) == [
        "~ evaluation settings changed: every evaluation is redone (no training)"]
    assert changes(lambda c: c["targetkgs"].pop()) == ["- TargetKG communication: its files stay; the tables leave it out"]
