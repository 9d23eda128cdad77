"""Fixtures shared by the test modules, registered once here (the modules import only helpers).

Tiers (markers, `pyproject.toml`): unit tests run everywhere in seconds to minutes; `integration`
runs the Snakemake DAG on the smoke configuration; `slurm` needs the single-node cluster that
scripts/slurm_cluster.sh starts; `gpu` runs only where CUDA works. `.ci/run` runs them all.
"""

pytest_plugins = ["core_fixtures", "data_fixtures", "downstream_fixtures", "slurm_fixtures", "workflow_fixtures"]
