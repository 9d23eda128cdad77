"""Running the Snakemake pipeline in tests: a working directory, a runner, the smoke run.

Import explicitly (pytest puts tests/ on sys.path):

    from workflow_fixtures import smoke_run  # noqa: F401  (the session fixture)

The pipeline's paths are relative to the working directory (the repository root for users). A test
works in a temporary directory holding links to the repository's `config.yaml`, `configs/` and
`tests/` (what the configurations read), runs the repository's Snakefile there, and so never writes into
the checkout (resources/models, results/, .snakemake/ all land in the temporary directory).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
PAPER_CONFIG = REPO / "config.yaml"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
SMOKE_CONFIG = REPO / "configs" / "smoke.yaml"
# What the pipeline reads relative to the working directory: config.yaml (the Snakefile's
# `configfile:`, merged under any --configfile) and the smoke configuration's input files.
LINKED = ("config.yaml", "configs", "tests")
SMOKE_TIMEOUT_S = 900


def prepare_workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = path / name
        if not link.exists():
            link.symlink_to(REPO / name, target_is_directory=(REPO / name).is_dir())
    return path


def pipeline_env() -> dict[str, str]:
    """This interpreter's bin folder first on PATH: the rules call `kcs` (and SLURM jobs snakemake)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *args]


def run_snakemake(workdir: Path, *args: str, timeout_s: float = SMOKE_TIMEOUT_S,
                  check: bool = True) -> subprocess.CompletedProcess:
    """`snakemake --snakefile REPO/Snakefile ARGS` in workdir; output (stdout+stderr) in .stdout."""
    result = subprocess.run(snakemake_command(*args), cwd=workdir, env=pipeline_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} exited {result.returncode} in {workdir}:\n"
                             + "\n".join(result.stdout.splitlines()[-80:]))
    return result


def load_config(path: Path = SMOKE_CONFIG) -> dict:
    return yaml.safe_load(path.read_text())


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run (`snakemake -n`), as rule -> number of jobs."""
    counts: dict[str, int] = {}
    lines = dry_run_output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")


def planned_jobs(dry_run_output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run (`snakemake -n`) plans."""
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in dry_run_output.splitlines():
        header = JOB_HEADER.match(line)
        if header:
            jobs.append((header.group(1), {}))
        elif line.startswith("    wildcards: ") and jobs:
            jobs[-1][1].update(part.split("=", 1) for part in line.split(": ", 1)[1].split(", "))
    return jobs


@dataclass(frozen=True)
class SmokeRun:
    workdir: Path
    results: Path  # workdir / results/smoke
    output: str  # snakemake's output
    seconds: float

    def table(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.results / "tables" / f"{name}.csv")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """The whole smoke DAG, run once per test session on this machine (local executor)."""
    workdir = prepare_workdir(tmp_path_factory.mktemp("smoke_local"))
    started = time.monotonic()
    result = run_snakemake(workdir, "--cores", "all", "--configfile", "configs/smoke.yaml")
    results = workdir / load_config()["results"]
    return SmokeRun(workdir, results, result.stdout, time.monotonic() - started)
