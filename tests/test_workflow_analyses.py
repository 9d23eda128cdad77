"""The analyses of issue 11 as DAG outputs of the smoke configuration: seed-combined subnetworks,
paraphrase robustness, subnetwork structure, checkpoints over training with a selection rule,
several random draws, and the disk-saving temp() of random masks."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kcs.maskfile import read_mask_tensors

from workflow_fixtures import load_config

pytestmark = pytest.mark.integration

SMOKE = load_config()
MODELS = [m["name"] for m in SMOKE["models"]]
TABLE_KGS = [k["name"] for k in SMOKE["targetkgs"] if k.get("tables", True)]


def test_seed_combined_subnetworks_are_removed_and_tabled_against_random(smoke_run):
    combined = smoke_run.table("combined")
    expected = [(m, c, x) for m in MODELS for c in SMOKE["seed_combinations"] for x in ("learned", "random")]
    assert list(zip(combined["model"], combined["combination"], combined["method"])) == expected
    assert set(combined["n"]) == {len(TABLE_KGS)}
    runs = pd.read_csv(smoke_run.results / "tables" / "combined_runs.csv")
    pairs = runs[runs["method"] == "learned"].merge(runs[runs["method"] == "random"], on=["model", "kg", "combination"],
                                                    suffixes=("", "_random"))
    assert len(pairs) == len(MODELS) * len(TABLE_KGS)
    assert (pairs["removed_weights"] == pairs["removed_weights_random"]).all()  # same size per matrix
    # an intersection of the seed masks removes no more than the smallest seed mask
    seeds = smoke_run.table("runs").query("method == 'learned' and variant == 'default'")
    smallest = seeds.groupby(["model", "kg"])["removed_weights"].min()
    for row in pairs.itertuples():
        assert row.removed_weights <= smallest[(row.model, row.kg)]
    assert (smoke_run.results / "figures" / "combined.png").read_bytes()[:4] == b"\x89PNG"


def test_paraphrase_table_reports_the_kg_whose_facts_carry_paraphrases(smoke_run):
    table = smoke_run.table("paraphrases")
    assert set(table["kg"]) == {"swimming"}  # `sentences: kcs`; fruit keeps the authors' sentences only
    assert set(zip(table["model"], table["method"])) == {(m, x) for m in MODELS for x in ("learned", "random")}
    assert table["targetkg_paraphrase_relative_delta_ppl_mean"].notna().all()
    kg = [json.loads(line) for line in (smoke_run.results / "data/tiny-gpt2/targetkg/swimming.jsonl").read_text().splitlines()]
    assert all(fact["paraphrases"] for fact in kg)
    assert (smoke_run.results / "figures" / "paraphrases.png").read_bytes()[:4] == b"\x89PNG"


def test_structure_per_head_and_attention_vs_mlp_for_learned_and_random(smoke_run):
    heads = pd.read_csv(smoke_run.results / "figures" / "structure_heads.csv")
    assert set(heads["method"]) == {"learned", "random"} and set(heads["part"]) == {"q", "k", "v", "o"}
    for model in SMOKE["models"]:
        rows = heads[(heads["model"] == model["name"]) & (heads["part"] == "q")]
        assert set(rows["head"]) == set(range(model["tiny"]["heads"]))
    summary = smoke_run.table("structure")
    shares = summary["attention_share_mean"] + summary["mlp_share_mean"]
    assert ((shares - 1).abs() < 1e-6).all()  # the CSV keeps 8 significant digits
    assert (smoke_run.results / "figures" / "structure.png").read_bytes()[:4] == b"\x89PNG"


def test_checkpoints_over_training_are_evaluated_and_the_selection_is_recorded(smoke_run):
    steps = pd.read_csv(smoke_run.results / "figures" / "steps.csv")
    every = SMOKE["training"]["step_mask_every"]
    expected_steps = list(range(every, SMOKE["training"]["steps"] + 1, every))
    for _, run in steps.groupby(["model", "kg", "variant", "seed"]):
        assert sorted(run["step"]) == expected_steps
    run_dir = smoke_run.results / "runs/tiny-gpt2/fruit/default/seed1"
    selection = json.loads((run_dir / "selection.json").read_text())
    assert selection["rule"] == "best" and selection["chosen_step"] in expected_steps
    metrics = json.loads((smoke_run.results / "metrics/tiny-gpt2/fruit/default/seed1/learned.json").read_text())
    assert metrics["mask"]["path"].endswith("selected.safetensors")
    assert metrics["mask"]["selection"]["rule"] == "best"
    assert int(metrics["mask"]["step"]) == selection["chosen_step"]
    metadata, _, _ = read_mask_tensors(run_dir / "selected.safetensors")
    assert metadata["step"] == str(selection["chosen_step"])


def test_random_draws_are_distinct_and_temp_masks_are_gone(smoke_run):
    runs = smoke_run.table("runs")
    random = runs[runs["method"] == "random"]
    assert set(random["draw"]) == set(range(1, SMOKE["random_draws"] + 1))
    # two draws of one run: the same size, other weights (their perplexities differ)
    one = random[(random["model"] == "tiny-gpt2") & (random["kg"] == "fruit") & (random["seed"] == 1)]
    assert one["removed_weights"].nunique() == 1 and one["targetkg_ppl_remaining"].nunique() == SMOKE["random_draws"]
    # keep_random_masks: false -> temp(): random and combined masks deleted once evaluated
    assert not list((smoke_run.results / "random_masks").rglob("*.safetensors"))
    assert not list((smoke_run.results / "combined").rglob("*.safetensors"))
    assert list((smoke_run.results / "runs").rglob("mask.safetensors"))  # learned masks stay
