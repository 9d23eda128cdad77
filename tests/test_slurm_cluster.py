"""The users' SLURM profile (slurm/config.yaml), run for real on a local one-node cluster."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import slurm_fixtures
from slurm_fixtures import CLUSTER_SCRIPT, REPO_ROOT, USER_PROFILE

TOY_WORKFLOW = Path(__file__).parent / "fixtures" / "slurm_toy"


def _dry_run_from_repo_root(workdir: Path) -> str:
    """`snakemake --cores all --profile slurm` exactly as users type it, from the repo root."""
    result = subprocess.run(
        [
            sys.executable, "-m", "snakemake", "--cores", "all", "--profile", "slurm",
            "--snakefile", str(TOY_WORKFLOW / "Snakefile"), "--directory", str(workdir),
            "--dry-run",
        ],  # fmt: skip
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _job_resources(dry_run_output: str, rule: str) -> dict[str, str]:
    block = re.search(rf"rule {rule}:\n(.*?)\n\n", dry_run_output + "\n\n", re.S)
    assert block, f"rule {rule} missing from the dry run:\n{dry_run_output}"
    line = re.search(r"resources: (.*)", block.group(1))
    assert line, block.group(1)
    return dict(item.split("=", 1) for item in line.group(1).split(", "))


def test_user_profile_settings():
    profile = yaml.safe_load((USER_PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["retries"] == 2
    assert isinstance(profile["jobs"], int) and profile["jobs"] > 0
    defaults = profile["default-resources"]
    assert {"runtime", "mem_mb", "cpus_per_task"} <= set(defaults)
    # Site-specific keys stay commented out: a wrong partition/account breaks every submission.
    assert "slurm_partition" not in defaults and "slurm_account" not in defaults
    # CI-only settings must not leak into the users' profile.
    assert "slurm-status-command" not in profile


def test_profile_found_from_repo_root_and_resources(tmp_path):
    output = _dry_run_from_repo_root(tmp_path)
    prepare = _job_resources(output, "prepare")
    assert prepare["mem_mb"] == "4000" and prepare["runtime"] == "60"
    threads = min(2, os.cpu_count())
    assert prepare["cpus_per_task"] == str(threads)  # follows the rule's threads
    assert _job_resources(output, "gpu")["gpu"] == "1"
    assert _job_resources(output, "memory")["mem_mb"] == "200"  # first attempt


@pytest.mark.parametrize("ci", ["true", ""])
def test_missing_cluster_skips_locally_but_fails_in_ci(monkeypatch, ci):
    monkeypatch.setattr(slurm_fixtures.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv("KCS_TEST_SLURM", raising=False)
    reason = slurm_fixtures._why_cannot_start()
    assert reason and "root" in reason
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="needs root"):
        slurm_fixtures._unavailable(reason)


def _job_field(job_id: str, field: str) -> str:
    """A field of `scontrol show job` (finished jobs stay listed for MinJobAge = 300 s)."""
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
    match = re.search(rf"\b{field}=(\S+)", shown.stdout)
    assert match, f"no {field} for job {job_id}: {shown.stdout}{shown.stderr}"
    return match.group(1)


@pytest.mark.slurm
def test_cluster_script_is_idempotent(slurm_cluster, tmp_path):
    started = time.monotonic()
    again = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    assert time.monotonic() - started < 5
    status = subprocess.run(["bash", str(CLUSTER_SCRIPT), "status"], capture_output=True, text=True)
    assert status.returncode == 0, status.stdout
    assert re.search(r"\b(idle|mix|alloc)\b", status.stdout), status.stdout
    gres = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True)
    assert "gpu:2" in gres.stdout
    # Stopping where nothing runs (an empty state dir) is a harmless no-op.
    idle_stop = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "stop"],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KCS_SLURM_DIR": str(tmp_path / "none")},
        capture_output=True,
        text=True,
    )
    assert idle_stop.returncode == 0, idle_stop.stderr


@pytest.mark.slurm
def test_toy_workflow_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    workdir = tmp_path / "toy"
    shutil.copytree(TOY_WORKFLOW, workdir)
    started = time.monotonic()
    result = slurm_cluster.run_snakemake(workdir, timeout_s=300)
    elapsed = time.monotonic() - started
    print(f"cluster start {slurm_cluster.start_seconds:.1f}s, toy run {elapsed:.1f}s")

    records = {
        name: dict(item.split("=", 1) for item in (workdir / "out" / f"{name}.txt").read_text().split())
        for name in ("prepare", "gpu", "memory")
    }
    job_ids = [records[name]["job"] for name in records]
    assert all(job_id.isdigit() for job_id in job_ids), records
    assert len(set(job_ids)) == 3, records
    assert records["prepare"]["cpus"] == str(min(2, os.cpu_count()))
    assert records["prepare"]["mem"] == "4000"  # the profile's default mem_mb, attempt 1
    assert re.fullmatch(r"\d+(,\d+)*", records["gpu"]["cuda"]), records["gpu"]
    # The profile's settings reach sbatch: runtime (minutes, growing with attempt) and --requeue.
    assert _job_field(records["prepare"]["job"], "TimeLimit") == "01:00:00"
    assert _job_field(records["memory"]["job"], "TimeLimit") == "02:00:00"  # attempt 2
    assert _job_field(records["gpu"]["job"], "Requeue") == "1"
    # The memory rule failed at 200 MB and the profile's retry resubmitted it with 400 MB.
    assert records["memory"]["mem"] == "400"
    assert "Trying to restart job" in result.stdout
    memory_logs = sorted(
        (workdir / ".snakemake" / "slurm_logs" / "rule_memory").glob("*.log"),
        key=lambda log: int(log.stem),
    )
    assert [int(log.stem) for log in memory_logs][-1] == int(records["memory"]["job"])
    assert len(memory_logs) == 2 and "simulated OOM with 200 MB" in memory_logs[0].read_text()
