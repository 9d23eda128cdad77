"""Mask training: objectives, schedule, config errors, repeatability and resume after SIGKILL."""

import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from kcs import objectives, training
from kcs.config import TrainConfig
from kcs.errors import KcsError
from kcs.training import train_mask


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


def _train(tiny_gpt2_dir, tiny_data, out, yaml, seed=7, **overrides):
    config = TrainConfig.from_yaml(yaml, overrides)
    return train_mask(str(tiny_gpt2_dir), tiny_data["targetkg"], tiny_data["controlkg"], [tiny_data["text"]],
                      out, config, seed=seed, progress=False)


def test_cpu_training_is_bit_for_bit_repeatable(tiny_gpt2_dir, tiny_data, train_yaml, tmp_path):
    a = load_file(_train(tiny_gpt2_dir, tiny_data, tmp_path / "a", train_yaml))
    b = load_file(_train(tiny_gpt2_dir, tiny_data, tmp_path / "b", train_yaml))
    c = load_file(_train(tiny_gpt2_dir, tiny_data, tmp_path / "c", train_yaml, seed=8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    log = (tmp_path / "a" / "train_log.csv").read_text().splitlines()
    assert len(log) == 1 + 12 and log[0].startswith("step,lr,lambda_reg,loss")
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
    steps = [int(line.split(",")[0]) for line in log.read_text().splitlines()[1:]]
    assert steps == list(range(1, 61))  # no step logged twice or lost
    assert not (run / "checkpoints" / "last.safetensors").exists(), "a finished run keeps no resume state"
