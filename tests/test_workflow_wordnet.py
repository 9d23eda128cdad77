"""The WordNet data path of the DAG: a sampled TargetKG, a paper TargetKG re-verbalised for a model
that is not GPT-2, and the WordNet ControlKG with its held-out test split (evaluated with the full
model): shared by both TargetKGs, avoiding the paper's TargetKGs, each TargetKG's runs reading it less
the facts that touch their own synsets. Needs WordNet 3.0 installed (scripts/install_wordnet.sh ->
resources/nltk_data)."""

from __future__ import annotations

import json

import pytest

from workflow_fixtures import REPO, load_config, planned_jobs, prepare_workdir, run_snakemake, write_config

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
    own = [f"{DATA}/controlkg_of/animal/{split}.jsonl" for split in ("train", "val", "test")]
    full_metrics = "results/wordnet/full_model/tiny-gpt2/animal.json"
    run_snakemake(workdir, *targets, *own, full_metrics, "--cores", "all", "--configfile", str(path))

    def facts(name):
        return [json.loads(line) for line in (workdir / name).read_text().splitlines()]

    animal, building = facts(targets[0]), facts(targets[1])
    assert len(animal) == 8 and all(f["prompt"] + f["target"] for f in animal)
    assert len(building) == 11 and all(f["verbalised_with"].endswith("tiny-gpt2") for f in building)
    train, val, test = facts(targets[2]), facts(targets[3]), facts(targets[4])
    assert (len(train), len(val), len(test)) == (30, 10, 6)
    def synsets(kg):
        return {s for f in kg for s in (f["head"], f["tail"])}

    # the shared ControlKG avoids the paper's TargetKGs (a fixed set), not the configuration's
    assert not synsets(building) & synsets(train + val + test)
    assert not {f["head"] for f in test} & {f["head"] for f in train + val}  # held out from both
    # animal's runs read it less the facts touching animal's synsets, and nothing else is dropped
    own_train, own_val, own_test = (facts(name) for name in own)
    for shared, kept in ((train, own_train), (val, own_val), (test, own_test)):
        assert kept == [f for f in shared if not {f["head"], f["tail"]} & synsets(animal)]
    # the full model is evaluated on the test split too (the same input for every mask), and its
    # metrics say how many facts each split lost to animal
    full = json.loads((workdir / full_metrics).read_text())
    assert len(full["raw"]["controlkg_test"]["nll"]) == len(own_test) and "controlkg_test" in full["inputs"]
    assert full["controlkg_overlap"]["controlkg_test"] == {
        "by": "entities", "removed": len(test) - len(own_test), "kept": len(own_test),
        "targetkg": ["results/wordnet/data/triplets/targetkg/animal.jsonl"]}

    # a third TargetKG: the shared ControlKG, its sentences and animal's files are up to date; only
    # the new TargetKG's own data is planned (the ControlKG used to be sampled apart from all TargetKGs)
    config["targetkgs"].append({"name": "dog", "wordnet": {"root": "dog.n.01", "size": 6, "seed": 0}, "controlkg": "wordnet"})
    path = write_config(tmp_path / "wordnet_dog.yaml", config)
    dog = [f"{DATA}/controlkg_of/dog/{split}.jsonl" for split in ("train", "val", "test")]
    result = run_snakemake(workdir, "-n", *targets, *own, full_metrics, *dog, "--configfile", str(path), timeout_s=300)
    jobs = planned_jobs(result.stdout)
    assert {rule for rule, _ in jobs} == {"step_settings", "sample_wordnet_targetkg", "run_controlkg"}
    assert all("dog" in wildcards.values() for _, wildcards in jobs), jobs
