"""`kcs finetune`, `kcs finetune-summary` and `kcs build-mc-task` end to end on a tiny model."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from kcs.cli import main

from downstream_fixtures import CSQA1_KG, CSQA2_KG, CSQA_LOCAL, SMOKE_CONFIG, save_tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from kcs.maskfile import save_mask
    from kcs.masking import WeightMask
    from kcs.models import load_model

    root = tmp_path_factory.mktemp("downstream_cli")
    model_dir = save_tiny_model(root / "model", "gpt2")
    model, _ = load_model(model_dir, device="cpu")
    mask = WeightMask.for_model(model, blocks=[1])
    generator = torch.Generator().manual_seed(0)
    mask.load_binary({name: torch.rand(info.weight_shape, generator=generator) < 0.2
                      for name, info in mask.infos.items()})
    mask_path = root / "mask.safetensors"
    save_mask(mask_path, mask, base_model=str(model_dir), model_type="gpt2")
    results = {}
    common = ["finetune", "--model", str(model_dir), "--task", str(CSQA_LOCAL), "--linked-kg", str(CSQA1_KG),
              "--control-kg", str(CSQA2_KG), "--config", str(SMOKE_CONFIG), "--device", "cpu"]
    for seed in (0, 1):
        for start, extra in (("full", []), ("remaining", ["--removal-mask", str(mask_path)]),
                             ("random", ["--random-like", str(mask_path)])):
            out = root / f"{start}-{seed}.json"
            assert main(common + extra + ["--seed", str(seed), "--out", str(out)]) == 0
            results[(start, seed)] = out
    removed = sum(int(m.sum()) for m in mask.binary().values())
    return {"root": root, "results": results, "removed": removed, "mask": mask_path, "model": model_dir}


def test_finetune_results_record_groups_removal_and_predictions(setup):
    full = json.loads(setup["results"][("full", 0)].read_text())
    remaining = json.loads(setup["results"][("remaining", 0)].read_text())
    random_run = json.loads(setup["results"][("random", 1)].read_text())
    assert (full["start"], remaining["start"], random_run["start"]) == ("full", "remaining", "random")
    assert full["removal"]["removed_weights"] == 0
    assert remaining["removal"]["removed_weights"] == setup["removed"] > 0
    assert random_run["removal"]["removed_weights"] == setup["removed"]
    assert random_run["removal"]["random_seed"] == 1
    for result in (full, remaining, random_run):
        assert result["removal"]["removed_nonzero_after"] == 0
        groups = result["groups"]
        assert groups["linked"] == ["d02", "d04", "d05", "t06"]
        assert sorted(groups["linked"] + groups["other"]) == sorted(result["predictions"]["ids"])
        assert result["counts"]["train_questions"] == 11  # t06 held out of training
        assert result["after"]["groups"]["linked"]["n"] == 4
        assert result["train"]["steps"] == 6 and result["train"]["seconds_per_step"] > 0
        assert result["provenance"]["seed"] == result["seed"]
        assert result["experiment"] == "csqa1_kg"
    # removal changes the model: the zero-shot scores differ between full and remaining
    assert full["predictions"]["scores_before"] != remaining["predictions"]["scores_before"]


def test_summary_writes_table_markdown_figure_and_json(setup):
    root = setup["root"]
    paths = [str(p) for p in setup["results"].values()]
    out = {k: root / f"summary.{k}" for k in ("csv", "md", "png", "json")}
    assert main(["finetune-summary", *paths, "--csv", str(out["csv"]), "--markdown", str(out["md"]),
                 "--figure", str(out["png"]), "--json", str(out["json"]), "--n-boot", "200"]) == 0
    rows = list(csv.DictReader(out["csv"].open()))
    accuracy = [r for r in rows if r["quantity"] == "accuracy" and r["stage"] == "after"]
    assert {(r["start"], r["group"]) for r in accuracy} == {
        (s, g) for s in ("full", "remaining", "random") for g in ("linked", "other", "other_linked", "unlinked")}
    for row in accuracy:
        assert float(row["ci_low"]) <= float(row["estimate"]) <= float(row["ci_high"])
        assert row["n_seeds"] == "2"
    assert {r["start"] for r in rows if r["quantity"] == "gap_change_vs_full"} == {"remaining", "random"}
    markdown = out["md"].read_text()
    assert "| remaining | 2 |" in markdown and "Δgap vs full" in markdown
    assert out["png"].read_bytes()[:4] == b"\x89PNG"
    summary = json.loads(out["json"].read_text())
    (experiment,) = summary["experiments"]
    assert experiment["groups"] == {"linked": 4, "other": 5, "other_linked": 2, "unlinked": 3}
    full_linked = experiment["stages"]["after"]["accuracy"]["full"]["linked"]["estimate"]
    per_seed = [json.loads(setup["results"][("full", s)].read_text())["after"]["groups"]["linked"]["accuracy"]
                for s in (0, 1)]
    assert full_linked == pytest.approx(sum(per_seed) / 2)


def test_summary_refuses_duplicate_runs_and_mixed_tasks(setup, tmp_path, capsys):
    path = str(setup["results"][("full", 0)])
    assert main(["finetune-summary", path, path, "--csv", str(tmp_path / "t.csv")]) == 2
    assert "a second run of start 'full' with seed 0" in capsys.readouterr().err
    other = json.loads(setup["results"][("full", 1)].read_text())
    other["groups"]["linked"] = other["groups"]["linked"][:2]
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["finetune-summary", path, str(tmp_path / "other.json"), "--csv", str(tmp_path / "t.csv")]) == 2
    assert "different evaluation questions or groups" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()


def test_finetune_user_errors_exit_2(setup, tmp_path, capsys):
    base = ["finetune", "--model", str(setup["model"]), "--linked-kg", str(CSQA1_KG), "--out", str(tmp_path / "r.json")]
    assert main(base + ["--task", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("stlye: head\n")
    assert main(base + ["--task", str(CSQA_LOCAL), "--config", str(bad)]) == 2
    assert "bad.yaml: unknown key 'stlye'" in capsys.readouterr().err
    assert main(base + ["--task", str(CSQA_LOCAL), "--random-seed", "3"]) == 2
    assert not (tmp_path / "r.json").exists()


def test_build_mc_task_writes_a_task_that_finetune_reads(setup, tmp_path):
    from kcs.data.paths import package_resource

    try:
        from kcs.data.wordnet_install import find_wordnet

        find_wordnet()
    except Exception as err:  # noqa: BLE001 - KcsError when WordNet is not installed
        pytest.skip(f"WordNet 3.0 is not installed ({err}); run scripts/install_wordnet.sh")
    kg = package_resource("paper_kgs", "wordnet", "building.n.01.gpt2.jsonl")
    out = tmp_path / "task"
    assert main(["build-mc-task", "--linked-kg", str(kg), "--out", str(out), "--train-size", "20",
                 "--validation-size", "10", "--choices", "4", "--seed", "3"]) == 0
    info = json.loads((out / "task.json").read_text())
    assert info["counts"]["validation_linked"] == 11 and info["counts"]["train"] == 20
    assert info["prompt_template"] == "{question}"
    rows = [json.loads(line) for line in (out / "dev_rand_split.jsonl").read_text().splitlines()]
    assert len(rows) == 21 and all(len(r["question"]["choices"]) == 4 for r in rows)
    assert sum(1 for r in rows if r["linked_facts"] and r["linked_facts"][0][0] == "cabin.n.02") == 1
    result_path = tmp_path / "wordnet.json"
    assert main(["finetune", "--model", str(setup["model"]), "--task", str(out), "--linked-kg", str(kg),
                 "--removal-mask", str(setup["mask"]), "--style", "lora", "--max-steps", "2", "--seed", "0",
                 "--out", str(result_path)]) == 0
    result = json.loads(result_path.read_text())
    assert len(result["groups"]["linked"]) == 11 and len(result["groups"]["other"]) == 10
    assert result["links"]["cabin.n.02|IsA|house.n.01"] == [["cabin.n.02", "IsA", "house.n.01"]]
    assert result["config"]["prompt_template"] == "{question}" and result["config"]["style"] == "lora"
    assert result["train"]["steps"] == 2 and result["removal"]["removed_nonzero_after"] == 0
