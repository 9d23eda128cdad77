"""Progress lines in job logs (kcs.progress): the interval rule, the text, resume, and each long job."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

from kcs.config import TrainConfig
from kcs.progress import ProgressLog

LOGGER = logging.getLogger("test.progress")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def logged_steps(caplog, label: str, unit: str = "step") -> list[int]:
    return [int(m.group(1)) for m in re.finditer(rf"{re.escape(label)}: {unit} (\d+)/", caplog.text)]


def run_steps(progress: ProgressLog, clock: FakeClock, steps, seconds_per_step: float) -> list[int]:
    logged = []
    for step in steps:
        clock.now += seconds_per_step
        if progress.update(step):
            logged.append(step)
    return logged


# -- the helper -----------------------------------------------------------------------------------

def test_lines_every_n_steps_plus_the_first_and_the_last(caplog):
    clock = FakeClock()
    progress = ProgressLog(LOGGER, "job", 35, every=10, seconds=60, clock=clock)
    with caplog.at_level(logging.INFO):
        assert run_steps(progress, clock, range(1, 36), 0.1) == [1, 10, 20, 30, 35]
    assert logged_steps(caplog, "job") == [1, 10, 20, 30, 35]


def test_slow_steps_get_a_line_every_t_seconds():
    clock = FakeClock()
    progress = ProgressLog(LOGGER, "job", 12, every=1000, seconds=5, clock=clock)
    # a step every 2 s: 6 s have passed at steps 4, 7 and 10
    assert run_steps(progress, clock, range(1, 13), 2.0) == [1, 4, 7, 10, 12]


def test_steps_that_jump_log_when_they_cross_a_multiple():
    clock = FakeClock()
    progress = ProgressLog(LOGGER, "job", 100, every=25, seconds=0, unit="sentences", clock=clock)
    assert run_steps(progress, clock, [*range(8, 97, 8), 100], 0.1) == [8, 32, 56, 80, 100]


def test_line_text_has_values_rate_elapsed_and_eta(caplog):
    clock = FakeClock()
    progress = ProgressLog(LOGGER, "train run-7", 40000, every=50, seconds=60, clock=clock)
    clock.now = 50.0
    with caplog.at_level(logging.INFO):
        assert progress.update(120, loss=1.23449, loss_targetkg=0.5, sparsity=0.981234)
    # 120 steps in 50 s = 2.4 step/s; 39880 steps left / 2.4 = 16617 s
    assert caplog.messages == ["train run-7: step 120/40000 (0.3%) loss 1.234 loss_targetkg 0.5 sparsity 0.9812 "
                               "| 2.4 step/s, elapsed 0:00:50, eta 4:36:57"]


def test_a_resumed_job_counts_only_this_sessions_steps(caplog):
    clock = FakeClock()
    progress = ProgressLog(LOGGER, "job", 40000, every=100, seconds=60, start=30000, clock=clock)
    clock.now = 5.0
    with caplog.at_level(logging.INFO):
        assert progress.update(30010, loss=2.0)  # the session's first step is logged, not a multiple of 100
    # 10 steps in 5 s (not 30010): 2 step/s, 9990 left -> 4995 s
    assert caplog.messages == ["job: step 30010/40000 (75.0%) loss 2 | 2 step/s, elapsed 0:00:05, eta 1:23:15"]


def test_a_step_is_logged_once_and_zero_elapsed_time_has_no_rate(caplog):
    clock = FakeClock()
    progress = ProgressLog(LOGGER, "job", 3, clock=clock)
    with caplog.at_level(logging.INFO):
        assert progress.update(1) and not progress.update(1)
    assert caplog.messages == ["job: step 1/3 (33.3%) | elapsed 0:00:00"]


# -- each long job, bar off ------------------------------------------------------------------------

def _train(tiny_gpt2_dir, tiny_data, train_yaml, out, **kwargs):
    from kcs.training import train_mask

    return train_mask(str(tiny_gpt2_dir), tiny_data["targetkg"], tiny_data["controlkg"], [tiny_data["text"]], out,
                      TrainConfig.from_yaml(train_yaml), seed=7, progress=False, **kwargs)


def test_training_logs_steps_and_losses(tiny_gpt2_dir, tiny_data, train_yaml, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="kcs.training"):
        _train(tiny_gpt2_dir, tiny_data, train_yaml, tmp_path / "run", log_every=5, log_seconds=0)
    assert logged_steps(caplog, "train run") == [1, 5, 10, 12]
    lines = [m for m in caplog.messages if m.startswith("train run: step")]
    for name in ("loss", "loss_targetkg", "loss_controlkg", "loss_controllm", "sparsity"):
        assert all(f" {name} " in line for line in lines), name
    assert all(re.search(r"\| [\d.e+]+ step/s, elapsed \d+:\d\d:\d\d, eta \d+:\d\d:\d\d$", line) for line in lines)
    assert "val_targetkg_ppl" in lines[0]  # step 1 is a validation step


def test_resumed_training_logs_from_the_resume_step(monkeypatch, tiny_gpt2_dir, tiny_data, train_yaml, tmp_path,
                                                    caplog):
    from kcs import training

    run = tmp_path / "run"
    kept = tmp_path / "step6.safetensors"
    real_save = training.save_checkpoint

    def save_and_keep_step_6(path, state):
        real_save(path, state)
        if state["step"] == 6:
            kept.write_bytes(path.read_bytes())

    with monkeypatch.context() as patch:
        patch.setattr(training, "save_checkpoint", save_and_keep_step_6)
        _train(tiny_gpt2_dir, tiny_data, train_yaml, run)
    (run / "mask.safetensors").unlink()  # as if killed after the checkpoint of step 6
    (run / "run.json").unlink()
    (run / "checkpoints" / "last.safetensors").write_bytes(kept.read_bytes())
    starts = []

    class RecordingProgressLog(ProgressLog):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            starts.append(self.start)

    monkeypatch.setattr(training, "ProgressLog", RecordingProgressLog)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kcs.training"):
        _train(tiny_gpt2_dir, tiny_data, train_yaml, run, log_every=100, log_seconds=0)
    assert logged_steps(caplog, "train run") == [7, 12]
    assert starts == [6]  # rate and ETA count the 6 steps of this session


def test_verbalisation_logs_sentences_scored(tiny_model, caplog):
    from kcs.data.scoring import sentence_perplexities
    from kcs.data.triplets import Triplet
    from kcs.data.verbalise import choose_best, plan

    model, tokenizer = tiny_model
    prepared = plan([Triplet("fish", "AtLocation", "aquarium"), Triplet("waves", "CausesDesire", "surf")])
    unique = list(dict.fromkeys(c.sentence for group in prepared.candidates for c in group))
    unhooked = dict(zip(unique, sentence_perplexities(model, tokenizer, unique, batch_size=4)))
    with caplog.at_level(logging.INFO, logger="kcs.data.verbalise"):
        facts = choose_best(prepared, model, tokenizer, batch_size=4, log_every=8, log_seconds=0)
    steps = logged_steps(caplog, "verbalise 2 facts", "sentences")
    total = len(unique)
    assert steps[0] == 4 and steps[-1] == total and all(b - a <= 8 for a, b in zip(steps, steps[1:]))
    assert f"sentences {total}/{total} (100.0%)" in caplog.text and "sentences/s" in caplog.text
    # counting batches changes no score, and the counting hook is gone afterwards
    assert [f.extra["perplexity"] for f in facts] == [min(unhooked[c.sentence] for c in group)
                                                      for group in prepared.candidates]
    assert not model._forward_hooks


def test_evaluation_logs_batches_and_running_perplexity(tiny_gpt2_dir, tiny_data, caplog):
    from kcs.encoding import encode_verbalisations, read_text_blocks
    from kcs.evaluation import kg_statistics, lm_perplexity
    from kcs.kg import read_kg
    from kcs.masking import MaskedLM
    from kcs.models import load_model

    model, tokenizer = load_model(str(tiny_gpt2_dir), device="cpu")
    lm = MaskedLM(model, None).eval()
    enc = encode_verbalisations(read_kg(tiny_data["controlkg"]), tokenizer, "controlkg")  # 8 facts
    text = read_text_blocks([tiny_data["text"]], tokenizer, 32, 12)
    with caplog.at_level(logging.INFO, logger="kcs.evaluation"):
        quiet_kg = kg_statistics(lm, ["full"], enc, 1)
        quiet_lm = lm_perplexity(lm, ["full"], text, 2)
        assert caplog.messages == []  # unnamed (training's validation): no lines
        kg = kg_statistics(lm, ["full"], enc, 1, log_label="evaluate controlkg", log_every=3)
        ppl = lm_perplexity(lm, ["full"], text, 2, log_label="evaluate controllm", log_every=4)
    assert logged_steps(caplog, "evaluate controlkg", "batch") == [1, 3, 6, 8]
    assert logged_steps(caplog, "evaluate controllm", "batch") == [1, 4, 6]
    assert f"batch 8/8 (100.0%) ppl_full {kg['full']['ppl']:.4g} |" in caplog.text  # the last running value is the result
    assert f"batch 6/6 (100.0%) ppl_full {ppl['full']:.4g} |" in caplog.text
    assert kg["full"]["ppl"] == quiet_kg["full"]["ppl"] and ppl == quiet_lm


def test_finetuning_logs_steps_and_loss(caplog):
    from kcs.downstream.finetune import FinetuneConfig, Finetuner

    from downstream_fixtures import tiny_model as tiny_mc_model
    from downstream_fixtures import tokenizer, toy_questions

    finetuner = Finetuner(tiny_mc_model("gpt2"), tokenizer(), FinetuneConfig(style="head", epochs=2, batch_size=2))
    with caplog.at_level(logging.INFO, logger="kcs.downstream.finetune"):
        stats = finetuner.train(toy_questions(12), log_every=4, log_seconds=0)
    assert stats["steps"] == 12
    assert logged_steps(caplog, "finetune head") == [1, 4, 8, 12]
    assert f"step 12/12 (100.0%) loss {stats['loss_last']:.4g} batch_accuracy" in caplog.text
    assert "step/s" in caplog.text


def test_kcs_train_without_bar_writes_progress_lines_to_stderr(tiny_gpt2_dir, tiny_data, train_yaml, tmp_path):
    cmd = [sys.executable, "-m", "kcs", "train", "--model", str(tiny_gpt2_dir), "--targetkg", str(tiny_data["targetkg"]),
           "--controlkg", str(tiny_data["controlkg"]), "--controllm", str(tiny_data["text"]),
           "--out", str(tmp_path / "cli-run"), "--config", str(train_yaml), "--no-progress",
           "--log-every", "4", "--log-seconds", "0"]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if "kcs.training: train cli-run: step" in line]
    assert [re.search(r"step (\d+)/12", line).group(1) for line in lines] == ["1", "4", "8", "12"]
    assert all(" loss_targetkg " in line and " sparsity " in line and "step/s" in line for line in lines)
    assert not re.search(r"train cli-run: +\d+%\|", done.stderr)  # and no training bar
