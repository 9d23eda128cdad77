"""Checkpoints cannot run code, a damaged one is a clear error, and no code-execution primitive
(pickle loading, unsafe YAML, eval/exec, remote code, shell strings) is anywhere in the tree."""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from kcs.checkpoint import load_checkpoint, save_checkpoint
from kcs.cli import main
from kcs.errors import KcsError

ROOT = Path(__file__).resolve().parents[1]


def test_checkpoint_round_trip_keeps_every_value(tmp_path):
    logits = [torch.randn(3, 4), torch.randn(5, 1)]
    optimiser = torch.optim.Adam([torch.nn.Parameter(t.clone()) for t in logits], lr=0.2, betas=(0.9, 0.99))
    for p in optimiser.param_groups[0]["params"]:
        p.grad = torch.randn_like(p)
    optimiser.step()
    random.seed(3)
    np.random.seed(4)
    state = {"step": 7, "logits": logits, "optimiser": optimiser.state_dict(),
             "samplers": {"controlkg": {"order": [2, 0, 1], "cursor": 1, "epoch": 3}},
             "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
             "identity": {"model": "m", "seed": 1, "config": {"lr": 0.2, "block_range": None}}, "elapsed_s": 1.5}
    save_checkpoint(tmp_path / "last.safetensors", state)
    back = load_checkpoint(tmp_path / "last.safetensors")

    assert back["step"] == 7 and back["elapsed_s"] == 1.5 and back["identity"] == state["identity"]
    assert back["samplers"] == state["samplers"]
    assert all(torch.equal(a, b) for a, b in zip(back["logits"], logits))
    assert back["rng"]["python"] == state["rng"]["python"]  # tuples restored as tuples
    np_a, np_b = back["rng"]["numpy"], state["rng"]["numpy"]
    assert np_a[0] == np_b[0] and np_a[1].dtype == np_b[1].dtype and np.array_equal(np_a[1], np_b[1])
    assert np_a[2:] == np_b[2:]
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    saved = state["optimiser"]
    assert back["optimiser"]["param_groups"] == saved["param_groups"]
    assert set(back["optimiser"]["state"]) == {0, 1}  # integer keys stay integers
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(back["optimiser"]["state"][1][key], saved["state"][1][key])
    # the states load back into the libraries that made them
    random.setstate(back["rng"]["python"])
    np.random.set_state(back["rng"]["numpy"])
    optimiser.load_state_dict(back["optimiser"])


class _WritesAMarker:
    """Unpickling this calls Path.touch(marker): what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _train_args(tiny_gpt2_dir, tiny_data, train_yaml, out, *extra):
    return ["train", "--model", str(tiny_gpt2_dir), "--targetkg", str(tiny_data["targetkg"]),
            "--controlkg", str(tiny_data["controlkg"]), "--controllm", str(tiny_data["text"]),
            "--out", str(out), "--config", str(train_yaml), "--seed", "7", "--no-progress", *extra]


def test_a_pickled_checkpoint_is_never_unpickled(tiny_gpt2_dir, tiny_data, train_yaml, tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "code-ran"
    (run / "checkpoints").mkdir(parents=True)
    with open(run / "checkpoints" / "last.pt", "wb") as handle:
        pickle.dump({"step": 3, "payload": _WritesAMarker(marker)}, handle)
    with open(tmp_path / "probe.pt", "wb") as handle:  # the file really runs code when unpickled
        pickle.dump(_WritesAMarker(tmp_path / "probe-ran"), handle)
    pickle.loads((tmp_path / "probe.pt").read_bytes())
    assert (tmp_path / "probe-ran").exists()

    assert main(_train_args(tiny_gpt2_dir, tiny_data, train_yaml, run)) == 2
    err = capsys.readouterr().err
    assert "last.pt: a pickled checkpoint" in err and "--restart-if-changed" in err
    assert not marker.exists() and not (run / "mask.safetensors").exists()

    assert main(_train_args(tiny_gpt2_dir, tiny_data, train_yaml, run, "--restart-if-changed")) == 0
    assert not marker.exists() and (run / "mask.safetensors").exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "foreign safetensors"])
def test_a_damaged_checkpoint_is_a_clear_error(tiny_gpt2_dir, tiny_data, train_yaml, tmp_path, capsys, damage):
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, {"step": 1, "logits": [torch.ones(64, 64)]})
    ckpt = tmp_path / "run" / "checkpoints" / "last.safetensors"
    ckpt.parent.mkdir(parents=True)
    if damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "truncated":
        ckpt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"\x00not a checkpoint" * 100)
    else:
        from safetensors.torch import save_file
        save_file({"x": torch.ones(2)}, str(ckpt))
    with pytest.raises(KcsError, match=re.escape(str(ckpt))):
        load_checkpoint(ckpt)

    assert main(_train_args(tiny_gpt2_dir, tiny_data, train_yaml, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and "--restart-if-changed" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "mask.safetensors").exists()
    if damage == "truncated":  # the documented way out works
        assert main(_train_args(tiny_gpt2_dir, tiny_data, train_yaml, tmp_path / "run", "--restart-if-changed")) == 0
        assert (tmp_path / "run" / "mask.safetensors").exists()


# Code-execution primitives, each with what to use instead. A line may opt out with
# "# trust: <reason>" (none does today).
FORBIDDEN = {
    r"\btorch\.load\(": "kcs.checkpoint / safetensors",
    r"\bpickle\.loads?\(|\bcPickle\b|\bdill\b|\bjoblib\.load\(|\bmarshal\.loads?\(": "JSON or safetensors",
    r"\byaml\.(load|unsafe_load|full_load)\(": "yaml.safe_load",
    r"allow_pickle\s*=\s*True": "np.load without pickles",
    r"(?<![.\w])(eval|exec)\(": "explicit parsing",
    r"trust_remote_code\s*=\s*True": "models whose code ships with transformers",
    r"shell\s*=\s*True|os\.system\(|os\.popen\(": "subprocess with an argument list",
}
SCANNED = ["kcs", "workflow_scripts", "rules", "scripts", "benchmarks", "Snakefile"]


def test_no_code_execution_primitive_in_the_tree():
    files = []
    for entry in SCANNED:
        path = ROOT / entry
        files += [path] if path.is_file() else [p for p in path.rglob("*") if p.suffix in {".py", ".smk", ".sh"}]
    assert len(files) > 50, "the scan found too few files: is ROOT right?"
    hits = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "# trust:" in line:
                continue
            for pattern, instead in FORBIDDEN.items():
                if re.search(pattern, line):
                    hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}  (use {instead})")
    assert not hits, "code-execution primitives found:\n" + "\n".join(hits)


def test_the_scan_would_catch_each_primitive():
    samples = ["x = torch.load(f)", "pickle.load(h)", "yaml.load(s)", "np.load(f, allow_pickle=True)", "eval(text)",
               "exec(code)", "from_pretrained(p, trust_remote_code=True)", "subprocess.run(cmd, shell=True)"]
    for sample in samples:
        assert any(re.search(p, sample) for p in FORBIDDEN), sample
    assert not any(re.search(p, "model.eval()") for p in FORBIDDEN)
