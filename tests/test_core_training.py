"""Mask training: objectives, schedule, config errors, repeatability, the resume decision and resume after SIGKILL."""

import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from kcs import objectives, training
from kcs.checkpoint import save_checkpoint
from kcs.config import TrainConfig
from kcs.errors import KcsError
from kcs.maskfile import read_labels
from kcs.training import Resume, resume_state, run_identity, train_mask


def test_suppression_kl_is_zero_only_for_uniform():
    assert objectives.suppression_kl(torch.zeros(3, 50)).item() == pytest.approx(0.0, abs=1e-6)
    peaked = torch.zeros(1, 50)
    peaked[0, 3] = 10.0
    assert objectives.suppression_kl(peaked).item() > 1.0


def test_maintenance_kl_is_zero_for_identical_distributions():
    head, hidden = torch.randn(30, 6), torch.randn(4, 6)
    p = torch.softmax(hidden @ head.T, -1)
    statistics = (p @ head, (p * p.log()).sum(-1))
    assert objectives.maintenance_kl(hidden @ head.T, hidden, *statistics).item() == pytest.approx(0.0, abs=1e-5)
    other = torch.randn(4, 6)
    assert objectives.maintenance_kl(other @ head.T, other, *statistics).item() > 0.01


def test_lambda_reg_schedule_and_warmup():
    assert objectives.lambda_reg(0, 100, 2.0, 3.0) == 2.0
    assert objectives.lambda_reg(50, 100, 2.0, 3.0) == 2.0
    assert objectives.lambda_reg(75, 100, 2.0, 3.0) == pytest.approx(2.5)
    assert objectives.lambda_reg(100, 100, 2.0, 3.0) == pytest.approx(3.0)
    assert objectives.warmup_factor(0, 100, 0.1) == pytest.approx(0.1)
    assert objectives.warmup_factor(9, 100, 0.1) == 1.0
    assert objectives.warmup_factor(50, 100, 0.1) == 1.0


def test_config_rejects_unknown_and_mistyped_keys(tmp_path):
    bad = tmp_path / "h.yaml"
    bad.write_text("steps: 10\nlamda_reg_init: 2\n")
    with pytest.raises(KcsError, match=r"h.yaml: unknown key 'lamda_reg_init'"):
        TrainConfig.from_yaml(bad)
    bad.write_text("steps: ten\n")
    with pytest.raises(KcsError, match=r"key 'steps' must be an integer, got 'ten'"):
        TrainConfig.from_yaml(bad)
    bad.write_text("kg_kl_position: before\n")
    with pytest.raises(KcsError, match="kg_kl_position"):
        TrainConfig.from_yaml(bad)
    defaults = TrainConfig()
    assert (defaults.lr, defaults.init_p, defaults.lambda_targetkg, defaults.steps) == (0.2, 0.45, 1.5, 40_000)


def _identity(tiny_data, targetkg=None, **overrides):
    return run_identity("tiny", 7, TrainConfig(**overrides), targetkg or tiny_data["targetkg"], tiny_data["controlkg"],
                        [tiny_data["text"]])


def _leave_checkpoint(run, identity, step=9):
    """A run directory as a kill after step `step` leaves it: a checkpoint, a log, run_started.json."""
    (run / "checkpoints").mkdir(parents=True)
    save_checkpoint(run / "checkpoints" / "last.safetensors",
                    {"step": step, "logits": [torch.arange(6.0).view(2, 3)], "identity": identity, "elapsed_s": 2.5})
    (run / "train_log.csv").write_text("step\n")
    (run / "run_started.json").write_text("{}")


def test_a_fresh_directory_starts_at_step_0(tiny_data, tmp_path):
    assert resume_state(tmp_path / "new", _identity(tiny_data)) == Resume(step=0, checkpoint=None, elapsed_s=0.0)
    assert not (tmp_path / "new").exists()  # deciding creates nothing


def test_a_checkpoint_of_the_same_run_resumes_at_its_step_with_its_state(tiny_data, tmp_path):
    _leave_checkpoint(tmp_path / "run", _identity(tiny_data))
    resume = resume_state(tmp_path / "run", _identity(tiny_data))
    assert (resume.step, resume.elapsed_s) == (9, 2.5)
    assert torch.equal(resume.checkpoint["logits"][0], torch.arange(6.0).view(2, 3))
    assert (tmp_path / "run" / "train_log.csv").exists()  # kept: the resumed log goes on from it


@pytest.mark.parametrize("change, message", [
    ({"lr": 0.1}, "config lr=0.2, now 0.1"),
    ({"targetkg": "other"}, "different inputs"),
])
def test_a_checkpoint_of_another_run_is_refused_or_with_restart_starts_over(tiny_data, tmp_path, change, message):
    run = tmp_path / "run"
    _leave_checkpoint(run, _identity(tiny_data))
    if "targetkg" in change:
        changed = tmp_path / "target.jsonl"
        changed.write_text(tiny_data["targetkg"].read_text() + "\n")
        change = {"targetkg": changed}
    with pytest.raises(KcsError, match=message):
        resume_state(run, _identity(tiny_data, **change))
    assert (run / "checkpoints" / "last.safetensors").exists()  # a refusal deletes nothing

    assert resume_state(run, _identity(tiny_data, **change), restart_if_changed=True) == Resume()
    assert not any(path.exists() for path in (run / "checkpoints", run / "train_log.csv", run / "run_started.json"))


def _train(tiny_gpt2_dir, tiny_data, out, yaml, seed=7, labels=None, **overrides):
    config = TrainConfig.from_yaml(yaml, overrides)
    return train_mask(str(tiny_gpt2_dir), tiny_data["targetkg"], tiny_data["controlkg"], [tiny_data["text"]],
                      out, config, seed=seed, progress=False, labels=labels)


def test_cpu_training_is_bit_for_bit_repeatable(tiny_gpt2_dir, tiny_data, train_yaml, tmp_path):
    a_path = _train(tiny_gpt2_dir, tiny_data, tmp_path / "a", train_yaml, labels={"model": "tiny", "kg": "t"})
    a = load_file(a_path)
    b = load_file(_train(tiny_gpt2_dir, tiny_data, tmp_path / "b", train_yaml))
    c = load_file(_train(tiny_gpt2_dir, tiny_data, tmp_path / "c", train_yaml, seed=8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    log = (tmp_path / "a" / "train_log.csv").read_text().splitlines()
    # the run's labels (with its seed) lead every row and are in every mask it wrote: the files say which run
    assert len(log) == 1 + 12 and log[0].startswith("model,kg,seed,method,step,lr,lambda_reg,loss")
    assert all(row.startswith("tiny,t,7,learned,") for row in log[1:])
    labels = {"model": "tiny", "kg": "t", "seed": 7, "method": "learned"}
    assert read_labels(a_path) == labels
    assert all(read_labels(p) == labels for p in (tmp_path / "a" / "checkpoints").glob("step-*.safetensors"))
    assert "val_targetkg_ppl" in log[0] and log[1].split(",")[-1] != ""  # validated at step 1


def test_rerun_of_a_finished_run_is_a_no_op(tiny_gpt2_dir, tiny_data, train_yaml, tmp_path):
    path = _train(tiny_gpt2_dir, tiny_data, tmp_path / "run", train_yaml)
    stamp = path.stat().st_mtime_ns
    _train(tiny_gpt2_dir, tiny_data, tmp_path / "run", train_yaml)
    assert path.stat().st_mtime_ns == stamp


def killed_after_last_checkpoint(monkeypatch, tiny_gpt2_dir, tiny_data, train_yaml, run):
    """A run directory as a kill just before the final mask leaves it (its last checkpoint kept)."""
    kept = run.parent / f"{run.name}-last-checkpoint"
    real_save = training.save_checkpoint

    def save_and_keep(path, state):
        real_save(path, state)
        shutil.copy(path, kept)

    with monkeypatch.context() as patch:
        patch.setattr(training, "save_checkpoint", save_and_keep)
        _train(tiny_gpt2_dir, tiny_data, run, train_yaml)
    (run / "mask.safetensors").unlink()
    (run / "run.json").unlink()
    shutil.copy(kept, run / "checkpoints" / "last.safetensors")
    return run


def test_resume_with_other_config_is_refused(monkeypatch, tiny_gpt2_dir, tiny_data, train_yaml, tmp_path):
    run = killed_after_last_checkpoint(monkeypatch, tiny_gpt2_dir, tiny_data, train_yaml, tmp_path / "run")
    with pytest.raises(KcsError, match="config lr=0.2, now 0.1"):
        _train(tiny_gpt2_dir, tiny_data, run, train_yaml, lr=0.1)


def test_killed_run_resumes_to_the_identical_mask(tiny_gpt2_dir, tiny_data, tmp_path):
    yaml = tmp_path / "h.yaml"
    yaml.write_text("steps: 60\ncontrollm_block_size: 32\ncontrollm_batch_size: 4\ncontrollm_max_blocks: 40\n"
                    "validate_every: 20\ncheckpoint_every: 7\neval_controllm_blocks: 4\nkeep_step_masks: false\n")
    reference = load_file(_train(tiny_gpt2_dir, tiny_data, tmp_path / "uninterrupted", yaml))

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "kcs", "train", "--model", str(tiny_gpt2_dir), "--targetkg", str(tiny_data["targetkg"]),
           "--controlkg", str(tiny_data["controlkg"]), "--controllm", str(tiny_data["text"]), "--out", str(run),
           "--config", str(yaml), "--seed", "7", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = run / "train_log.csv"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it mid-way, between checkpoints
        if log.exists() and len(log.read_text().splitlines()) > 25:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "mask.safetensors").exists(), "the run finished before it could be killed"
    assert (run / "checkpoints" / "last.safetensors").exists()

    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = load_file(run / "mask.safetensors")
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    steps = pd.read_csv(log)["step"].tolist()
    assert steps == list(range(1, 61))  # no step logged twice or lost
    assert not (run / "checkpoints" / "last.safetensors").exists(), "a finished run keeps no resume state"
