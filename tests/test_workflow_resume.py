"""A training job killed mid-way (SIGKILL, like a preemption or a timeout) resumes from its checkpoint
when the DAG is run again, instead of starting over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from workflow_fixtures import load_config, pipeline_env, prepare_workdir, run_snakemake, snakemake_command, write_config

pytestmark = pytest.mark.integration

STEPS = 400
RUN = "results/resume/runs/tiny-gpt2/fruit/default/seed1"
TARGET = f"{RUN}/mask.safetensors"
LOG = "results/resume/logs/train_mask/tiny-gpt2/fruit/default/seed1.log"


def resume_config() -> dict:
    """The smoke configuration cut to one model, TargetKG and seed, with a longer training."""
    config = load_config()
    config.update(results="results/resume", seeds=[1], ablations=[], downstream=[], random_baseline=False)
    config["models"] = [m for m in config["models"] if m["name"] == "tiny-gpt2"]
    config["targetkgs"] = [k for k in config["targetkgs"] if k["name"] == "fruit"]
    config["training"].update(steps=STEPS, checkpoint_every=5, validate_every=100)
    return config


def descendants(pid: int) -> list[int]:
    """Process ids below `pid` (from /proc), so the test kills only what it started."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_kcs_train(pid: int) -> bool:
    """The Python process running `kcs train` (not the shell that started it)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return False
    return any(arg == "kcs" or arg.endswith("/kcs") for arg in argv[:2]) and "train" in argv


def checkpoint_step(workdir: Path) -> int:
    log = workdir / RUN / "train_log.csv"
    if not (workdir / RUN / "checkpoints" / "last.safetensors").exists() or not log.exists():
        return 0
    lines = log.read_text().splitlines()
    return len(lines) - 1


def test_killed_training_resumes_from_its_checkpoint(tmp_path):
    workdir = prepare_workdir(tmp_path)
    config = write_config(tmp_path / "resume.yaml", resume_config())
    args = (TARGET, "--cores", "all", "--configfile", str(config))
    # Build everything the training needs first, so the timed part below is the training itself.
    run_snakemake(workdir, *args, "--omit-from", "train_mask")

    first = subprocess.Popen(snakemake_command(*args), cwd=workdir, env=pipeline_env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while checkpoint_step(workdir) < 20:
            assert first.poll() is None, "snakemake ended before the training reached step 20:\n" + first.stdout.read()
            assert time.monotonic() < deadline, "the training did not reach step 20 within 300 s"
            time.sleep(0.2)
        trainers = [pid for pid in descendants(first.pid) if is_kcs_train(pid)]
        assert trainers, "no `kcs train` process under snakemake"
        for pid in trainers:
            os.kill(pid, signal.SIGKILL)
        output, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode != 0, output[-2000:]
    assert not (workdir / TARGET).exists()
    killed_at = checkpoint_step(workdir)
    assert 20 <= killed_at < STEPS

    run_snakemake(workdir, *args)
    assert (workdir / TARGET).exists()
    assert "resuming" in (workdir / LOG).read_text()
    log = pd.read_csv(workdir / RUN / "train_log.csv")
    assert list(log["step"]) == list(range(1, STEPS + 1))  # no step lost or repeated
    # the DAG is complete now
    assert "Nothing to be done" in run_snakemake(workdir, "-n", *args).stdout


def test_protected_masks_stop_a_changed_configuration_instead_of_retraining(tmp_path):
    """protect_learned_masks: a finished mask is read-only, and a configuration that would retrain it
    stops with the mask named instead (the paper grid's masks cost GPU-hours each). Root ignores file
    modes, and Snakemake's protection rests on them: there only the read-only mode is checked."""
    workdir = prepare_workdir(tmp_path)
    config = resume_config()
    config["training"].update(steps=4, checkpoint_every=2)
    config["protect_learned_masks"] = True
    path = write_config(tmp_path / "protected.yaml", config)
    args = (TARGET, "--cores", "all", "--configfile", str(path))
    run_snakemake(workdir, *args)
    mask = workdir / TARGET
    assert mask.stat().st_mode & 0o222 == 0  # no write bit for anyone
    if os.geteuid() == 0:
        return
    before = mask.read_bytes()
    config["training"]["steps"] = 6
    write_config(path, config)
    refused = subprocess.run(snakemake_command(*args), cwd=workdir, env=pipeline_env(), capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode != 0
    assert "protected" in (refused.stdout + refused.stderr).lower() and "mask.safetensors" in refused.stdout + refused.stderr
    assert mask.read_bytes() == before


def test_changed_inputs_restart_the_training(tmp_path):
    """A finished run whose configuration changed is retrained from scratch, not refused or resumed."""
    workdir = prepare_workdir(tmp_path)
    config = resume_config()
    config["training"].update(steps=8, checkpoint_every=2)
    path = write_config(tmp_path / "resume.yaml", config)
    args = (TARGET, "--cores", "all", "--configfile", str(path))
    run_snakemake(workdir, *args)
    config["training"]["steps"] = 12
    write_config(path, config)
    run_snakemake(workdir, *args)
    assert "resuming" not in (workdir / LOG).read_text()
    assert not (workdir / RUN / "checkpoints" / "last.safetensors").exists()  # a finished run keeps no resume state
    assert json.loads((workdir / RUN / "run.json").read_text())["steps"] == 12
    assert list(pd.read_csv(workdir / RUN / "train_log.csv")["step"]) == list(range(1, 13))


def _outputs_are_whole(results: Path) -> int:
    """Every mask and JSON result under `results` reads back (no truncated or corrupt file); returns how many."""
    from kcs.maskfile import load_mask

    count = 0
    for path in results.rglob("*"):
        # checkpoints and the shared prefix store (cache/) are resume and cache state, not outputs
        if path.suffix == ".safetensors" and not {"checkpoints", "cache"} & set(path.parts):
            load_mask(path)
            count += 1
        elif path.suffix == ".json":
            json.loads(path.read_text())
            count += 1
    return count


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_dag_completes_on_a_plain_rerun(tmp_path, sig):
    """Ctrl-C (SIGINT to the process group) or SIGKILL of the whole smoke DAG mid-way, then the same
    command again: it completes, and every output reads back whole. Interrupted jobs are rerun by
    the workflow profile (profiles/default: rerun-incomplete); a SIGKILLed Snakemake cannot remove
    its lock, so there the documented `snakemake --unlock` comes first."""
    workdir = prepare_workdir(tmp_path)
    # the smoke DAG on one model without ablations and downstream: every kind of job, a third of them
    config = load_config()
    config.update(ablations=[], downstream=[])
    config["models"] = [m for m in config["models"] if m["name"] == "tiny-gpt2"]
    args = ("--cores", "all", "--configfile", str(write_config(tmp_path / "interrupted.yaml", config)))
    first = subprocess.Popen(snakemake_command(*args), cwd=workdir, env=pipeline_env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        runs = workdir / "results" / "smoke" / "runs"
        while not (runs.exists() and any(runs.rglob("train_log.csv"))):  # mid-way: a training has begun
            assert first.poll() is None, "snakemake ended before any training began:\n" + first.stdout.read()
            assert time.monotonic() < deadline, "no training began within 300 s"
            time.sleep(0.2)
        time.sleep(1.0)
        os.killpg(first.pid, sig)
        output, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode != 0, output[-2000:]
    assert not (workdir / "results" / "smoke" / "tables" / "main.md").exists()

    if sig == signal.SIGKILL:
        refused = subprocess.run(snakemake_command(*args), cwd=workdir, env=pipeline_env(), capture_output=True,
                                 text=True, timeout=300)
        assert refused.returncode != 0 and "--unlock" in refused.stdout + refused.stderr
        run_snakemake(workdir, "--unlock", *args)
    run_snakemake(workdir, *args)  # the plain command again
    assert (workdir / "results" / "smoke" / "tables" / "main.md").exists()
    assert _outputs_are_whole(workdir / "results" / "smoke") > 20
    assert "Nothing to be done" in run_snakemake(workdir, "-n", *args).stdout
