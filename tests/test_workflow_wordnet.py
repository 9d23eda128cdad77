"""The WordNet data path of the DAG: a sampled TargetKG, a paper TargetKG re-verbalised for a model
that is not GPT-2, and the WordNet ControlKG that avoids their synsets, with its held-out test split
(evaluated with the full model). Needs WordNet 3.0 installed (scripts/install_wordnet.sh ->
resources/nltk_data)."""

from __future__ import annotations

import json

import pytest

from workflow_fixtures import REPO, load_config, prepare_workdir, run_snakemake, write_config

pytestmark = pytest.mark.integration

WORDNET = REPO / "resources" / "nltk_data"
DATA = "results/wordnet/data/tiny-gpt2"


@pytest.mark.skipif(not (WORDNET / "corpora" / "wordnet").is_dir(), reason="WordNet not installed in resources/nltk_data")
def test_wordnet_targetkgs_and_controlkg(tmp_path):
    workdir = prepare_workdir(tmp_path)
    (workdir / "resources").mkdir()
    (workdir / "resources" / "nltk_data").symlink_to(WORDNET, target_is_directory=True)
    config = load_config()
    config.update(results="results/wordnet", ablations=[], downstream=[])
    config["models"] = config["models"][:1]
    config["targetkgs"] = [
        {"name": "animal", "wordnet": {"root": "animal.n.01", "size": 8, "seed": 0}, "controlkg": "wordnet"},
        {"name": "building", "paper": "building.n.01", "controlkg": "wordnet"},
    ]
    config["controlkgs"] = [{"name": "wordnet", "wordnet": {"train_size": 30, "val_size": 10, "test_size": 6, "seed": 0}}]
    path = write_config(tmp_path / "wordnet.yaml", config)
    targets = [f"{DATA}/targetkg/animal.jsonl", f"{DATA}/targetkg/building.jsonl",
               f"{DATA}/controlkg/wordnet/train.jsonl", f"{DATA}/controlkg/wordnet/val.jsonl",
               f"{DATA}/controlkg/wordnet/test.jsonl"]
    full_metrics = "results/wordnet/full_model/tiny-gpt2/animal.json"
    run_snakemake(workdir, *targets, full_metrics, "--cores", "all", "--configfile", str(path))

    def facts(name):
        return [json.loads(line) for line in (workdir / name).read_text().splitlines()]

    animal, building = facts(targets[0]), facts(targets[1])
    assert len(animal) == 8 and all(f["prompt"] + f["target"] for f in animal)
    assert len(building) == 11 and all(f["verbalised_with"].endswith("tiny-gpt2") for f in building)
    train, val, test = facts(targets[2]), facts(targets[3]), facts(targets[4])
    assert (len(train), len(val), len(test)) == (30, 10, 6)
    target_synsets = {s for f in animal + building for s in (f["head"], f["tail"])}
    assert not target_synsets & {s for f in train + val + test for s in (f["head"], f["tail"])}
    assert not {f["head"] for f in test} & {f["head"] for f in train + val}  # held out from both
    # the full model is evaluated on the test split too (the same input for every mask)
    full = json.loads((workdir / full_metrics).read_text())
    assert len(full["raw"]["controlkg_test"]["nll"]) == 6 and "controlkg_test" in full["inputs"]
