"""Checkpoints over training: step masks evaluated on the fast path, a selection rule, the CLI."""

import json
import shutil

import pytest

from kcs.cli import main
from kcs.config import TrainConfig
from kcs.errors import KcsError
from kcs.evaluation import evaluate_full_model, evaluate_mask
from kcs.maskfile import read_mask_tensors, save_mask
from kcs.masking import WeightMask
from kcs.models import load_model
from kcs.step_evaluation import SelectionRule, evaluate_steps, select_checkpoint
from kcs.training import train_mask

from core_fixtures import make_text, make_tiny_model

STEPS_YAML = ("steps: 8\ncheckpoint_every: 2\nkeep_step_masks: true\ncontrollm_block_size: 32\ncontrollm_batch_size: 4\n"
              "controllm_max_blocks: 40\nvalidate_every: 4\neval_controllm_blocks: 4\neval_batch_size: 3\n"
              # a random tiny model's KL terms are too weak against the sparsity term, which would
              # move every logit alike: without it the masks of successive steps differ
              "init_p: 0.5\nlr: 0.1\nuse_sparsity: false\n")


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_gpt2_dir, tiny_data):
    root = tmp_path_factory.mktemp("steps_run")
    (root / "train.yaml").write_text(STEPS_YAML)
    config = TrainConfig.from_yaml(root / "train.yaml")
    final = train_mask(str(tiny_gpt2_dir), tiny_data["targetkg"], tiny_data["controlkg"], [tiny_data["text"]],
                       root / "run", config, seed=7, progress=False)
    step_masks = sorted((root / "run" / "checkpoints").glob("step-*.safetensors"))
    assert [p.name for p in step_masks] == [f"step-{s:06d}.safetensors" for s in (2, 4, 6, 8)]
    # validation text of its own, short: every mask is evaluated on all of its blocks
    val_text = make_text(root / "val.txt", lines=60, seed=1)
    return {"config": config, "yaml": root / "train.yaml", "final": final, "steps": step_masks, "val_text": val_text}


def _evaluate(run, tiny_gpt2_dir, tiny_data, masks):
    return evaluate_steps(str(tiny_gpt2_dir), masks, tiny_data["targetkg"], tiny_data["controlkg"], [run["val_text"]],
                          run["config"])


def test_step_rows_equal_the_ordinary_evaluation(run, tiny_gpt2_dir, tiny_data):
    config = run["config"]
    rows = _evaluate(run, tiny_gpt2_dir, tiny_data, list(reversed(run["steps"])))  # order comes from the steps
    assert [row["step"] for row in rows] == [2, 4, 6, 8]
    assert len({round(row["targetkg_ppl"], 6) for row in rows}) > 1, "the step masks should differ"
    args = (str(tiny_gpt2_dir), run["steps"][-1], tiny_data["targetkg"], tiny_data["controlkg"], [run["val_text"]], config)
    reference = evaluate_mask(*args)
    last = rows[-1]
    assert last["sparsity"] == pytest.approx(reference["sparsity"], abs=1e-12)
    for name in ("targetkg", "controlkg", "controllm"):
        assert last[f"{name}_ppl"] == pytest.approx(reference[name]["ppl_remaining"], rel=1e-5)
        assert last[f"{name}_ppl_full"] == pytest.approx(reference[name]["ppl_full"], rel=1e-5)
    assert last["targetkg_ratio"] == pytest.approx(reference["targetkg"]["ppl_remaining"] / reference["targetkg"]["ppl_full"],
                                                   rel=1e-5)
    assert last["controlkg_change"] == pytest.approx(reference["controlkg"]["relative_delta_ppl"], rel=1e-4, abs=1e-6)
    full = evaluate_full_model(*args[:1], *args[2:])["raw"]
    for name in ("targetkg", "controlkg", "controllm"):
        assert all(row[f"{name}_ppl_full"] == pytest.approx(full[name]["ppl"], rel=1e-5) for row in rows)

    # the final mask (float logits, no `step` metadata) is the last step, read from its provenance
    (final_row,) = _evaluate(run, tiny_gpt2_dir, tiny_data, [run["final"]])
    assert final_row["step"] == 8 and final_row["targetkg_ppl"] == pytest.approx(last["targetkg_ppl"], rel=1e-6)


def test_masks_of_another_run_shape_or_step_are_refused(run, tiny_gpt2_dir, tiny_data, tmp_path):
    model, _ = load_model(tiny_gpt2_dir)
    both_blocks = WeightMask.for_model(model, [0, 1])  # this model, other matrices than the run's
    save_mask(tmp_path / "blocks.safetensors", both_blocks, base_model=str(tiny_gpt2_dir), model_type="gpt2",
              binary=True, step="3")
    with pytest.raises(KcsError, match="blocks.safetensors: masks other matrices"):
        _evaluate(run, tiny_gpt2_dir, tiny_data, [run["steps"][0], tmp_path / "blocks.safetensors"])

    wider_dir = make_tiny_model(tmp_path / "wider", "gpt2", tiny_data["text"], width=48)
    wider, _ = load_model(wider_dir)
    save_mask(tmp_path / "other.safetensors", WeightMask.for_model(wider, [1]), base_model=str(wider_dir),
              model_type="gpt2", binary=True, step="3")
    with pytest.raises(KcsError, match="other.safetensors: mask parameter .* has shape"):
        _evaluate(run, tiny_gpt2_dir, tiny_data, [run["steps"][0], tmp_path / "other.safetensors"])

    with pytest.raises(KcsError, match="both step 8"):
        _evaluate(run, tiny_gpt2_dir, tiny_data, [run["steps"][-1], run["final"]])


def _row(step, ratio, controlkg, controllm, sparsity):
    return {"step": step, "targetkg_ratio": ratio, "controlkg_change": controlkg, "controllm_change": controllm,
            "sparsity": sparsity}


ROWS = [_row(5, 1.2, 0.01, 0.01, 0.99), _row(2, 3.0, 0.20, 0.00, 0.99), _row(1, 1.5, 0.02, 0.01, 0.99),
        _row(3, 2.0, 0.05, 0.06, 0.99), _row(4, 1.8, 0.09, 0.04, 0.97)]


def test_selection_rules_on_known_rows():
    assert select_checkpoint(ROWS, SelectionRule("final"))["step"] == 5
    best = select_checkpoint(ROWS, SelectionRule("best", 0.10, 0.05))
    assert (best["step"], best["fallback"], best["reason"]) == (4, False, None)  # 2 and 3 break a limit
    assert select_checkpoint(ROWS, SelectionRule("best", 0.10, 0.05, min_sparsity=0.98))["step"] == 1
    assert select_checkpoint(ROWS, SelectionRule("best", 0.25, 0.10))["step"] == 2  # no limit binds
    fallback = select_checkpoint(ROWS, SelectionRule("best", 0.0, 0.05))
    assert fallback["step"] == 5 and fallback["fallback"] is True and "no step satisfies" in fallback["reason"]
    tied = [_row(7, 2.0, 0, 0, 1), _row(3, 2.0, 0, 0, 1), _row(9, 1.0, 0, 0, 1)]
    assert select_checkpoint(tied, SelectionRule("best"))["step"] == 3
    assert SelectionRule("best", 0.10, 0.05).violations(ROWS[3]) == ["ControlLM change +6.00% > +5.00%"]
    with pytest.raises(KcsError, match="no evaluated steps"):
        select_checkpoint([], SelectionRule())


@pytest.mark.parametrize("kwargs, key", [
    ({"rule": "latest"}, "rule must be one of final, best"),
    ({"max_controlkg_increase": -0.1}, "max_controlkg_increase"),
    ({"max_controllm_increase": float("nan")}, "max_controllm_increase"),
    ({"min_sparsity": 1.5}, "min_sparsity"),
    ({"min_sparsity": True}, "min_sparsity"),
])
def test_bad_selection_rules_are_refused(kwargs, key):
    with pytest.raises(KcsError, match=key):
        SelectionRule(**kwargs)


def test_cli_evaluate_select_and_plot(run, tiny_gpt2_dir, tiny_data, tmp_path, capsys):
    steps_json = tmp_path / "steps.json"
    data = ["--model", tiny_gpt2_dir, "--targetkg", tiny_data["targetkg"], "--controlkg", tiny_data["controlkg"],
            "--controllm", run["val_text"], "--config", run["yaml"], "--no-progress"]
    labels = ["--label", "model=tiny", "--label", "kg=animals", "--label", "seed=7"]
    assert main(list(map(str, ["evaluate-steps", *data, *labels, "--out", steps_json, "--csv", tmp_path / "steps.csv",
                               *run["steps"]]))) == 0
    steps = json.loads(steps_json.read_text())
    assert steps["kind"] == "steps" and steps["labels"] == {"model": "tiny", "kg": "animals", "seed": 7}
    assert [row["step"] for row in steps["rows"]] == [2, 4, 6, 8]
    assert set(steps["full"]) == {"targetkg_ppl", "controlkg_ppl", "controllm_ppl"}
    assert steps["provenance"]["inputs"]["eval_batch_size"] == 3
    assert (tmp_path / "steps.csv").read_text().splitlines()[0].startswith("model,kg,seed,step,sparsity")

    # a bound no step meets (every mask keeps weights in its subnetwork): the final step, saying so
    rows = {row["step"]: row for row in steps["rows"]}
    assert all(row["sparsity"] < 1.0 for row in rows.values())
    selected, record_path = tmp_path / "selected.safetensors", tmp_path / "selection.json"
    assert main(list(map(str, ["select-checkpoint", "--steps", steps_json, "--rule", "best", "--min-sparsity", "1.0",
                               "--out", selected, "--record", record_path]))) == 0
    record = json.loads(record_path.read_text())
    assert record["fallback"] is True and record["chosen_step"] == 8 and "no step satisfies" in record["reason"]
    assert record["min_sparsity"] == 1.0 and all(row["excluded_by"] for row in record["rows"])
    metadata, tensors, _ = read_mask_tensors(selected)
    assert int(metadata["step"]) == record["chosen_step"]
    assert json.loads(metadata["selection"])["rule"] == "best"
    assert len(record["rows"]) == 4 and all("excluded_by" in row for row in record["rows"])

    # no bound: the highest TargetKG ratio wins, and the copy holds that step's very tensors
    assert main(list(map(str, ["select-checkpoint", "--steps", steps_json, "--rule", "best", "--max-controlkg-increase",
                               "1e9", "--max-controllm-increase", "1e9", "--out", selected, "--record", record_path]))) == 0
    record = json.loads(record_path.read_text())
    best_step = max(rows.values(), key=lambda r: r["targetkg_ratio"])["step"]
    assert record["chosen_step"] == best_step and record["fallback"] is False
    _, source_tensors, _ = read_mask_tensors(rows[best_step]["mask"])
    _, tensors, _ = read_mask_tensors(selected)
    assert all((tensors[k] == source_tensors[k]).all() for k in source_tensors)

    assert main(["select-checkpoint", "--steps", str(steps_json), "--rule", "best", "--min-sparsity", "2",
                 "--out", str(tmp_path / "x.safetensors"), "--record", str(tmp_path / "x.json")]) == 2
    assert "min_sparsity" in capsys.readouterr().err and not (tmp_path / "x.json").exists()

    other = tmp_path / "steps_seed8.json"
    other.write_text(json.dumps({**steps, "labels": {**steps["labels"], "seed": "8"}}))
    figure, table = tmp_path / "steps.png", tmp_path / "all_steps.csv"
    assert main(list(map(str, ["steps-figure", "--out", figure, "--csv", table, steps_json, other]))) == 0
    assert figure.stat().st_size > 10_000
    lines = table.read_text().splitlines()
    assert len(lines) == 1 + 8 and "seed" in lines[0].split(",")

    # a mask edited after its evaluation is not what the numbers describe
    shutil.copy(run["final"], tmp_path / "edited.safetensors")
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps({**steps, "rows": [{**steps["rows"][0], "mask": str(tmp_path / "edited.safetensors")}]}))
    assert main(["select-checkpoint", "--steps", str(tampered), "--rule", "final", "--out", str(tmp_path / "y.safetensors"),
                 "--record", str(tmp_path / "y.json")]) == 2
    assert "changed since" in capsys.readouterr().err
