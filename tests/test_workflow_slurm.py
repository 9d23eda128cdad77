"""The smoke configuration through the SLURM executor plugin on a real (local, one-node) SLURM cluster,
with the users' profile (slurm/config.yaml): the same outputs as the local run, and a no-op rerun."""

from __future__ import annotations

import pandas as pd
import pytest

from workflow_fixtures import SNAKEFILE, load_config, prepare_workdir, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

SLURM_TIMEOUT_S = 1500
COMPARED_TABLES = ("runs", "main", "kgs", "ablations", "combined")
MODEL = "tiny-gpt2"


def test_smoke_dag_through_slurm_matches_the_local_run(slurm_cluster, smoke_run, tmp_path):
    """The smoke DAG of one model (every kind of job: training, baselines, steps, combinations,
    ablation, downstream), whose rows must equal that model's rows of the local smoke run."""
    workdir = prepare_workdir(tmp_path)
    config = load_config()
    config["models"] = [m for m in config["models"] if m["name"] == MODEL]
    args = ["--snakefile", str(SNAKEFILE), "--configfile", str(write_config(tmp_path / "slurm.yaml", config))]
    slurm_cluster.run_snakemake(workdir, args, timeout_s=SLURM_TIMEOUT_S)
    # the heavy jobs ran as SLURM jobs (each leaves a log per rule); the small local rules ran here
    slurm_logs = list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    rules_on_slurm = {path.parts[path.parts.index("slurm_logs") + 1] for path in slurm_logs}
    assert {"rule_train_mask", "rule_evaluate_mask", "rule_finetune", "rule_evaluate_steps"} <= rules_on_slurm, \
        sorted(rules_on_slurm)

    results = workdir / config["results"]
    for name in COMPARED_TABLES:
        on_slurm = pd.read_csv(results / "tables" / f"{name}.csv")
        local = smoke_run.table(name)
        local = local[local["model"] == MODEL].reset_index(drop=True)
        assert len(on_slurm) == len(local) > 0, name
        pd.testing.assert_frame_equal(on_slurm, local, check_exact=False, rtol=1e-6, obj=f"tables/{name}.csv")

    rerun = slurm_cluster.run_snakemake(workdir, [*args, "--dry-run"], timeout_s=300)
    assert "Nothing to be done" in rerun.stdout, rerun.stdout[-2000:]
