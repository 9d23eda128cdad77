"""Deviations from the paper's hyper-parameters: named with their reasons in a config, carried into every
mask, metrics file and the main table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kcs import grid
from kcs.config import RUN_SETTINGS, TrainConfig
from kcs.errors import KcsError
from kcs.maskfile import read_deviations
from kcs.reporting.collect import collect_metrics, deviations_text
from kcs.reporting.formats import to_markdown
from kcs.reporting.tables import main_table
from kcs.training import run_identity, train_mask

ROOT = Path(__file__).resolve().parent.parent


def test_deviations_name_each_hyper_parameter_that_is_not_the_papers():
    config = TrainConfig.from_dict({"init_p": 0.02, "top_k_blocks": 6, "validate_every": 5, "prefix_cache_mb": 1,
                                    "deviations": {"init_p": "dense samples wreck the model"}})
    assert config.deviations_from_paper() == {
        "init_p": {"paper": 0.45, "used": 0.02, "why": "dense samples wreck the model"},
        "top_k_blocks": {"paper": None, "used": 6, "why": None},  # no reason given: still named
    }  # validate_every and prefix_cache_mb are kcs's own settings: they change no mask
    assert {"validate_every", "prefix_cache_mb"} <= RUN_SETTINGS
    assert TrainConfig().deviations_from_paper() == {}


def test_a_reason_must_belong_to_a_training_key_that_was_changed(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("init_p: 0.02\ndeviations: {init_pp: typo}\n")
    with pytest.raises(KcsError, match=r"train.yaml: key 'deviations.init_pp' names no training key; known keys: steps"):
        TrainConfig.from_yaml(path)
    path.write_text("deviations: {lr: faster}\n")
    with pytest.raises(KcsError, match=r"train.yaml: key 'deviations.lr' gives a reason, but lr is the paper's "
                                       r"value 0.2; set lr or remove the reason"):
        TrainConfig.from_yaml(path)
    path.write_text("lr: 0.1\ndeviations: {lr: 3}\n")
    with pytest.raises(KcsError, match=r"key 'deviations.lr' must be a string, got 3"):
        TrainConfig.from_yaml(path)


def test_pipeline_layers_merge_reasons_and_ablations_explain_themselves():
    config = {"training": {"init_p": 0.1, "steps": 10, "deviations": {"init_p": "top", "steps": "short"}},
              "models": [{"name": "m", "training": {"init_p": 0.45}}, {"name": "n"}],
              "ablations": [{"name": "no_lm", "description": "without ControlLM", "training": {"use_controllm": False}},
                            {"name": "neurons", "training": {"granularity": "neuron", "lr": 0.1,
                                                              "deviations": {"lr": "fewer logits"}}}]}
    # model m sets init_p back to the paper's value: the top level's reason for it no longer applies
    assert grid.train_config_values(config, "m", "default")["deviations"] == {"steps": "short"}
    assert grid.train_config_values(config, "n", "default")["deviations"] == {"init_p": "top", "steps": "short"}
    assert grid.train_config_values(config, "n", "no_lm")["deviations"] == {
        "init_p": "top", "steps": "short", "use_controllm": "ablation no_lm: without ControlLM"}
    # an ablation's own reason wins over its description
    assert grid.train_config_values(config, "n", "neurons")["deviations"] == {
        "init_p": "top", "steps": "short", "granularity": "ablation neurons: neurons", "lr": "fewer logits"}


def test_the_demo_gives_a_reason_for_every_deviation_and_the_paper_config_needs_none():
    demo = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    for model in demo["models"]:
        deviations = TrainConfig.from_dict(grid.train_config_values(demo, model["name"], "default")).deviations_from_paper()
        assert {"init_p", "noise_scale_final", "top_k_blocks", "lambda_controlkg", "steps"} <= set(deviations)
        assert [key for key, d in deviations.items() if not d["why"]] == []
    paper = yaml.safe_load((ROOT / "config.yaml").read_text())
    for model in paper["models"]:
        assert TrainConfig.from_dict(grid.train_config_values(paper, model["name"], "default")).deviations_from_paper() == {}
    for ablation in paper["ablations"]:
        model = ablation.get("models", [paper["models"][0]["name"]])[0]
        deviations = TrainConfig.from_dict(grid.train_config_values(paper, model, ablation["name"])).deviations_from_paper()
        assert deviations and all(d["why"].startswith(f"ablation {ablation['name']}: ") for d in deviations.values())


def test_a_run_resumes_across_an_edited_reason(tiny_gpt2_dir, tiny_data):
    inputs = (tiny_data["targetkg"], tiny_data["controlkg"], [tiny_data["text"]])
    first = TrainConfig.from_dict({"init_p": 0.1, "deviations": {"init_p": "first words"}})
    edited = TrainConfig.from_dict({"init_p": 0.1, "deviations": {"init_p": "better words"}})
    changed = TrainConfig.from_dict({"init_p": 0.2})
    identity = run_identity(str(tiny_gpt2_dir), 1, first, *inputs)
    assert identity == run_identity(str(tiny_gpt2_dir), 1, edited, *inputs)
    assert identity != run_identity(str(tiny_gpt2_dir), 1, changed, *inputs)


def _kcs(*args):
    return subprocess.run([sys.executable, "-m", "kcs", *map(str, args)], capture_output=True, text=True)


def test_every_mask_and_metrics_file_carries_the_deviations(tiny_gpt2_dir, tiny_data, tmp_path):
    config = TrainConfig.from_dict({"steps": 4, "init_p": 0.1, "controllm_block_size": 32, "controllm_max_blocks": 20,
                                    "checkpoint_every": 2, "validate_every": 2, "eval_controllm_blocks": 2,
                                    "deviations": {"init_p": "a test", "steps": "a test"}})
    expected = config.deviations_from_paper()
    assert expected["init_p"] == {"paper": 0.45, "used": 0.1, "why": "a test"}
    masks = []
    for seed in (1, 2):
        masks.append(train_mask(str(tiny_gpt2_dir), tiny_data["targetkg"], tiny_data["controlkg"], [tiny_data["text"]],
                                tmp_path / f"run{seed}", config, seed=seed, progress=False,
                                labels={"model": "tiny", "kg": "t"}))
    step_masks = sorted((tmp_path / "run1" / "checkpoints").glob("step-*.safetensors"))
    assert step_masks and all(read_deviations(p) == expected for p in [*masks, *step_masks])
    assert json.loads((tmp_path / "run1" / "run.json").read_text())["deviations"] == expected

    random_mask, combined = tmp_path / "random.safetensors", tmp_path / "union.safetensors"
    assert _kcs("random-mask", "--like", masks[0], "--seed", 3, "--out", random_mask).returncode == 0
    assert _kcs("combine-masks", *masks, "--how", "union", "--out", combined).returncode == 0
    eval_config = tmp_path / "eval.yaml"
    eval_config.write_text("controllm_block_size: 32\n")
    files = []
    for mask in (masks[0], random_mask, combined):
        assert read_deviations(mask) == expected, mask
        out = tmp_path / f"{mask.stem}.json"
        done = _kcs("evaluate", "--model", tiny_gpt2_dir, "--mask", mask, "--targetkg", tiny_data["targetkg"],
                    "--controlkg", tiny_data["controlkg"], "--controllm", tiny_data["text"], "--config", eval_config,
                    "--out", out, "--label", "variant=default")
        assert done.returncode == 0, done.stderr
        assert json.loads(out.read_text())["deviations"] == expected
        files.append(out)

    runs = collect_metrics(files)
    text = ("steps 4 (paper: 40000); init_p 0.1 (paper: 0.45); controllm_block_size 32 (paper: 512); "
            "controllm_max_blocks 20 (paper: 4656)")
    assert set(runs["deviations"]) == {deviations_text(expected)} == {text}
    assert f"Hyper-parameters that are not the paper's: {text}." in to_markdown(main_table(runs))


def test_main_table_says_when_every_run_used_the_papers_values_or_cannot_tell(tmp_path):
    def metrics_file(name: str, **extra) -> Path:
        block = {"ppl_full": 10.0, "ppl_remaining": 12.0, "delta_ppl": 2.0, "relative_delta_ppl": 0.2}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"labels": {"model": "m", "method": "learned"}, "sparsity": 0.98, "targetkg": block,
                                    "controlkg": block, "controllm": block, **extra}))
        return path

    paper = collect_metrics([metrics_file("paper", deviations={})])
    assert list(paper["deviations"]) == ["none"]
    assert "Every run used the paper's hyper-parameters." in to_markdown(main_table(paper))
    # a metrics file from before kcs recorded deviations: the table claims nothing
    old = collect_metrics([metrics_file("paper", deviations={}), metrics_file("old")])
    assert "paper's" not in to_markdown(main_table(old)).split("\n")[-2]
