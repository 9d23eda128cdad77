"""Adding a TargetKG, a seed or a model to a finished configuration runs only what is new.

On a copy of the finished smoke configuration: one more entry, a dry run whose planned jobs must be
exactly the new entry's (by rule name and wildcard) and the ones that aggregate over that kind of entry
(the tables and figures, the overlaps, the seed combinations), then the real run, after which every
file that existed before, outside the aggregating outputs, is byte-identical (every mask and metrics
file included). The three additions are applied one after the other to the same copy, so each is
also an addition to a configuration that was itself extended.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from workflow_fixtures import REPO, load_config, planned_jobs, run_snakemake, write_config

pytestmark = pytest.mark.integration

# The report rules aggregate over every run: they rerun whenever a run is added (and `all` collects them).
REPORT_RULES = set(re.findall(r"^rule (\w+):", (REPO / "rules" / "reporting.smk").read_text(), re.M)) | {"all"}


def digests(results: Path) -> dict[str, str]:
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file()}


# Outputs that aggregate over runs and may be rewritten by an addition (with the logs and benchmark
# files of the jobs that rewrite them).
AGGREGATED = re.compile(r"^(tables|figures|logs|benchmarks)/|^overlap/[^/]+/(kgs|seeds)/|^combined(_metrics)?/"
                        r"|^config/completed\.yaml$")


def add_and_run(workdir: Path, config: dict, name: str, is_new, aggregating: set[str]) -> list[tuple[str, dict]]:
    """Write the extended config, check the dry run's plan, run it, check that nothing else changed."""
    path = write_config(workdir / f"{name}.yaml", config)
    results = workdir / config["results"]
    before = digests(results)
    jobs = planned_jobs(run_snakemake(workdir, "-n", "--configfile", str(path), timeout_s=300).stdout)
    assert jobs and any(is_new(wildcards) for _, wildcards in jobs), f"{name}: nothing new planned"
    unexpected = [(rule, w) for rule, w in jobs if not is_new(w) and rule not in REPORT_RULES | aggregating]
    assert not unexpected, f"{name}: jobs of what existed are planned again: {unexpected}"
    run_snakemake(workdir, "--cores", "all", "--configfile", str(path))
    after = digests(results)
    changed = [f for f, digest in before.items() if not AGGREGATED.match(f) and after.get(f) != digest]
    assert not changed, f"{name}: files of what existed changed: {changed}"
    assert any(f.startswith("runs/") and f.endswith("mask.safetensors") for f in before)
    # the record of the complete run now includes the addition: a rerun has nothing to say or do
    rerun = run_snakemake(workdir, "-n", "--configfile", str(path), timeout_s=300).stdout
    assert "nothing changed since the last complete run" in rerun and not planned_jobs(rerun)
    return jobs


@pytest.fixture(scope="module")
def finished_copy(smoke_run, tmp_path_factory):
    """A copy of the finished smoke run (results and Snakemake's records, timestamps kept)."""
    workdir = tmp_path_factory.mktemp("additions") / "work"
    shutil.copytree(smoke_run.workdir, workdir, symlinks=True)
    return workdir


def test_adding_a_targetkg_a_seed_and_a_model_runs_only_what_is_new(finished_copy):
    config = load_config()

    # a TargetKG: its data, runs, baselines, evaluations; the overlaps between TargetKGs; the report
    config["targetkgs"].append({"name": "sun", "paper": "sun", "controlkg": "conceptnet"})
    plan = run_snakemake(finished_copy, "-n", "--configfile", str(write_config(finished_copy / "plan.yaml", config)),
                         timeout_s=300).stdout
    assert "+ TargetKG sun: its data, 4 trainings with their evaluations and baselines; nothing that exists reruns" in plan
    jobs = add_and_run(finished_copy, config, "new_kg",
                       lambda w: w.get("kg") == "sun" or w.get("paper_kg") == "sun", {"overlap_kgs"})
    assert {"train_mask", "evaluate_mask", "random_mask", "evaluate_full"} <= {rule for rule, w in jobs if w.get("kg") == "sun"}

    # a seed: its runs; what combines or compares the seeds of each (model, TargetKG); the report
    config["seeds"].append(3)
    jobs = add_and_run(finished_copy, config, "new_seed", lambda w: w.get("seed") == "3",
                       {"overlap_seeds", "combine_seed_masks", "random_combined_mask", "evaluate_combined_mask"})
    assert {"train_mask", "evaluate_mask"} <= {rule for rule, w in jobs if w.get("seed") == "3"}

    # a model: everything of that model (its settings included); the report
    config["models"].append({"name": "tiny-gpt2-b", "tiny": {"family": "gpt2", "layers": 2, "width": 32, "heads": 2,
                                                             "seed": 1, "vocab_size": 500}})
    jobs = add_and_run(finished_copy, config, "new_model",
                       lambda w: "tiny-gpt2-b" in (w.get("model"), w.get("name")), set())
    assert {"prepare_model_tiny", "train_mask", "evaluate_mask"} <= {rule for rule, w in jobs if w.get("model") == "tiny-gpt2-b"
                                                                     or w.get("name") == "tiny-gpt2-b"}
