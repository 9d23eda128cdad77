"""The run list (kcs.grid: what the Snakefile schedules), model shapes without weights (kcs.shapes)
and the projected disk use of a configuration (`kcs disk-usage`)."""

from __future__ import annotations

import copy

import pytest
import yaml

from kcs import grid, shapes
from kcs.cli import main
from kcs.disk_usage import project, summary
from kcs.errors import KcsError

from workflow_fixtures import DEMO_CONFIG, PAPER_CONFIG, SMOKE_CONFIG, load_config


def merged(*configs):
    return grid.load_pipeline_config([PAPER_CONFIG, *configs])


def test_gpt2_small_is_counted_exactly_without_its_weights():
    counts = shapes.model_counts(shapes.known_config("gpt2"))
    assert counts["parameters"] == 124_439_808  # GPT-2 small, tied output layer counted once
    # top 6 of 12 blocks: c_attn 768x2304 + c_proj 768x768 + c_fc 768x3072 + mlp.c_proj 3072x768
    assert counts["masked_weights"] == counts["logits"] == 6 * 768 * (2304 + 768 + 3072 + 3072)
    neuron = shapes.model_counts(shapes.known_config("gpt2"), granularity="neuron")
    assert neuron["logits"] == 6 * (768 + 768 + 768 + 3072)  # one logit per input feature
    assert shapes.model_counts(shapes.known_config("gpt2"), top_k_blocks=2)["masked_weights"] == counts["masked_weights"] // 3


def test_a_tiny_model_entry_has_the_shape_of_kcs_tiny_model(tmp_path):
    from kcs.tiny_models import build_model

    entry = {"name": "t", "tiny": {"family": "llama", "layers": 2, "width": 32, "heads": 2, "vocab_size": 500}}
    built = build_model("llama", 500, 2, 32, 2, 512, 0, 0)
    assert shapes.model_counts(shapes.entry_config(entry))["parameters"] == sum(p.numel() for p in built.parameters())


def test_a_model_folder_without_config_json_is_named(tmp_path):
    with pytest.raises(KcsError, match=r"models 'mine'.*config.json"):
        shapes.entry_config({"name": "mine", "path": str(tmp_path)}, "models 'mine'")


def test_the_paper_grid_counts_the_runs_of_the_dag():
    config = merged()
    runs = grid.training_runs(config)
    assert len(runs) == 336 and len(set(runs)) == len(runs)
    random = [e for e in grid.evaluations(config) if e.method != grid.LEARNED]
    assert {e.method for e in random} == {"random", "random-2", "random-3"}
    assert len(random) == 3 * 4 * 10 * 3  # 3 draws x (4 sizes x 10 TargetKGs x 3 seeds)
    assert len(grid.seed_combinations(config)) == 4 * 10 * 3


@pytest.mark.parametrize("method, draw", [("random", 1), ("random-2", 2), ("random-12", 12)])
def test_random_draw_names(method, draw):
    assert grid.random_draw(method) == draw
    assert grid.random_methods(draw)[-1] == method


@pytest.mark.parametrize("method", ["learned", "random-1", "random-x", "randomness"])
def test_a_name_that_is_no_random_draw_is_refused(method):
    with pytest.raises(KcsError, match="random-draw"):
        grid.random_draw(method)


def test_the_paper_projection_sizes_each_file_from_the_shapes():
    items = project(merged())
    by_key = {(i.artifact.split(" (")[0], i.model): i for i in items
              if "weight granularity" in i.artifact or "(" not in i.artifact}
    xl = shapes.model_counts(shapes.known_config("gpt2-xl"))
    learned_xl = next(i for i in items if i.model == "gpt2-xl" and i.artifact.startswith("learned mask"))
    assert learned_xl.files == 30 and learned_xl.bytes_each == 4 * xl["logits"]
    checkpoint_xl = next(i for i in items if i.model == "gpt2-xl" and i.artifact.startswith("resume checkpoint"))
    assert checkpoint_xl.bytes_each == 3 * learned_xl.bytes_each and checkpoint_xl.lifetime == "training"
    random_xl = next(i for i in items if i.model == "gpt2-xl" and i.artifact.startswith("random masks"))
    assert random_xl.files == 90 and random_xl.bytes_each == -(-xl["logits"] // 8)  # bit-packed
    steps_xl = next(i for i in items if i.model == "gpt2-xl" and i.artifact.startswith("step masks"))
    assert steps_xl.files == 30 * 10  # every 4,000 of 40,000 steps
    totals = summary(items, parallel_jobs=8)
    kept = sum(i.total for i in items if i.lifetime == "kept")
    assert totals["kept_gb"] == pytest.approx(kept / 1e9) and totals["runs"] == 336
    largest = 8 * checkpoint_xl.bytes_each  # the 8 largest checkpoints are GPT-2 XL's
    assert totals["peak_gb"] == pytest.approx((kept + largest) / 1e9)
    assert by_key  # the table has rows


def test_temp_random_masks_count_only_towards_the_peak(tmp_path):
    path = tmp_path / "temp.yaml"
    path.write_text(yaml.safe_dump({"keep_random_masks": False}))
    kept_all, temp = summary(project(merged()), 1), summary(project(merged(path)), 1)
    assert temp["kept_gb"] < kept_all["kept_gb"] and temp["peak_gb"] == pytest.approx(kept_all["peak_gb"])


def test_the_command_prints_the_table_for_demo_and_smoke(tmp_path, capsys):
    out = tmp_path / "disk.md"
    assert main(["disk-usage", "--config", str(PAPER_CONFIG), str(DEMO_CONFIG), "--parallel-jobs", "1",
                 "--markdown", str(out)]) == 0
    text = capsys.readouterr().out
    assert text == out.read_text()
    demo = merged(DEMO_CONFIG)
    logits = shapes.model_counts(shapes.known_config("smollm2-135m"), demo["training"]["top_k_blocks"])["logits"]
    assert f"| learned mask (float32 logits, weight granularity) | SmolLM2-135M | 4 | {4 * logits / 1e6:,.1f} MB |" in text
    assert "4 training runs" in text and "peak with 1 training job at once" in text
    assert main(["disk-usage", "--config", str(PAPER_CONFIG), str(SMOKE_CONFIG)]) == 0
    assert "(until evaluated: keep_random_masks false)" in capsys.readouterr().out


def test_a_wrong_config_key_is_named_with_its_file(tmp_path, capsys):
    bad = copy.deepcopy(load_config(SMOKE_CONFIG))
    bad["training"]["stepz"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["disk-usage", "--config", str(PAPER_CONFIG), str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "training" in err and "stepz" in err and "Traceback" not in err
    assert main(["disk-usage", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["disk-usage", "--parallel-jobs", "0"]) == 2


@pytest.mark.parametrize("entry, shape", [({"hub": "gpt2"}, "gpt2"), ({"hub": "openai-community/gpt2-xl"}, "gpt2-xl"),
                                          ({"smollm2": True}, "smollm2-135m")])
def test_resource_requests_estimate_parameters_within_one_percent_without_transformers(entry, shape):
    exact = shapes.model_counts(shapes.known_config(shape))["parameters"]
    assert shapes.approximate_parameters(entry) == pytest.approx(exact, rel=0.01)
    assert shapes.approximate_parameters({"gguf": "model.gguf"}) is None
