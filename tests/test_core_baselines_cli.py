"""Random baselines, mask algebra, evaluation, removal and the CLI's handling of bad input."""

import json
import subprocess
import sys

import pytest
import torch

from kcs.errors import KcsError
from kcs.mask_algebra import combine, jaccard
from kcs.maskfile import load_mask, save_mask
from kcs.masking import WeightMask
from kcs.models import load_model, num_blocks, select_blocks
from kcs.random_baseline import draw_seed, random_like

from core_fixtures import ANIMALS, KINDS, fact, write_jsonl


@pytest.fixture
def learned_like_mask(tiny_gpt2_dir):
    model, _ = load_model(tiny_gpt2_dir)
    mask = WeightMask.for_model(model, select_blocks(num_blocks(model)))
    gen = torch.Generator().manual_seed(1)
    # a deliberately uneven subnetwork: very different shares per matrix
    mask.load_binary({n: torch.rand(t.shape, generator=gen) < 0.05 * (i + 1)
                      for i, (n, t) in enumerate(zip(mask.names, mask.logits))})
    return model, mask


def test_random_baseline_matches_every_matrix_count(learned_like_mask):
    _, mask = learned_like_mask
    a, b = random_like(mask, seed=0), random_like(mask, seed=1)
    for name in mask.names:
        assert int(a.binary()[name].sum()) == int(mask.binary()[name].sum())
    assert a.sparsity() == mask.sparsity()
    assert jaccard(a, b) < 0.5  # different draws
    assert jaccard(a, random_like(mask, seed=0)) == 1.0  # same seed, same draw


def test_draw_one_is_the_seed_and_later_draws_differ(learned_like_mask):
    _, mask = learned_like_mask
    assert draw_seed(7) == draw_seed(7, 1) == 7 and len({draw_seed(7, d) for d in (1, 2, 3)}) == 3
    first, second = random_like(mask, 7, draw=1), random_like(mask, 7, draw=2)
    assert jaccard(first, random_like(mask, 7)) == 1.0  # draw 1 = the run's seed, as before draws were counted
    assert jaccard(first, second) < 0.5
    assert all(int(second.binary()[n].sum()) == int(m.sum()) for n, m in mask.binary().items())
    with pytest.raises(KcsError, match="draw"):
        draw_seed(7, 0)


def test_mask_algebra(learned_like_mask):
    _, mask = learned_like_mask
    others = [random_like(mask, s) for s in range(2)]
    union = combine([mask, *others], "union").binary()
    inter = combine([mask, *others], "intersection").binary()
    major = combine([mask, *others], "majority").binary()
    for name in mask.names:
        stack = torch.stack([m.binary()[name] for m in [mask, *others]]).sum(0)
        assert torch.equal(union[name], stack >= 1)
        assert torch.equal(inter[name], stack == 3)
        assert torch.equal(major[name], stack >= 2)
    assert jaccard(mask, mask) == 1.0


def _kcs(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "kcs", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_evaluate_remove_and_random_mask_cli(learned_like_mask, tiny_gpt2_dir, tiny_data, tmp_path):
    model, mask = learned_like_mask
    mask_path = tmp_path / "mask.safetensors"
    save_mask(mask_path, mask, base_model=str(tiny_gpt2_dir), model_type="gpt2")
    config = tmp_path / "eval.yaml"
    config.write_text("controllm_block_size: 32\neval_batch_size: 3\n")
    data = ["--targetkg", tiny_data["targetkg"], "--controlkg", tiny_data["controlkg"], "--controllm", tiny_data["text"],
            "--config", config]
    full = _kcs("evaluate-full", "--model", tiny_gpt2_dir, *data, "--out", tmp_path / "full.json")
    assert full.returncode == 0, full.stderr
    direct = _kcs("evaluate", "--model", tiny_gpt2_dir, "--mask", mask_path, *data, "--out", tmp_path / "m1.json")
    reused = _kcs("evaluate", "--model", tiny_gpt2_dir, "--mask", mask_path, *data, "--out", tmp_path / "m2.json",
                  "--full-metrics", tmp_path / "full.json")
    assert direct.returncode == 0 and reused.returncode == 0, direct.stderr + reused.stderr
    m1, m2 = (json.loads((tmp_path / f).read_text()) for f in ("m1.json", "m2.json"))
    for part in ("targetkg", "controlkg", "controllm"):
        assert m1[part]["ppl_full"] == pytest.approx(m2[part]["ppl_full"], rel=1e-6)
        assert m1[part]["delta_ppl"] == pytest.approx(m1[part]["ppl_remaining"] - m1[part]["ppl_full"])
    assert m1["sparsity"] == pytest.approx(mask.sparsity())
    assert m1["targetkg"]["n"] == 4 and len(m1["per_fact"]["targetkg"]) == 4
    assert "controlkg_test" not in m1 and "ControlKG (test)" not in direct.stdout  # no test split given
    assert m1["provenance"]["versions"]["torch"] and m1["provenance"]["config"]["eval_batch_size"] == 3

    # the removed model is an ordinary HF folder whose outputs equal the remaining view
    out = tmp_path / "removed"
    assert _kcs("remove", "--model", tiny_gpt2_dir, "--mask", mask_path, "--out", out).returncode == 0
    removed, _ = load_model(out)
    params = dict(removed.named_parameters())
    assert all(torch.all(params[n][m.expand_as(params[n])] == 0) for n, m in mask.binary().items())
    again = _kcs("evaluate-full", "--model", out, *data, "--out", tmp_path / "removed_full.json")
    assert again.returncode == 0
    removed_ppl = json.loads((tmp_path / "removed_full.json").read_text())["raw"]["targetkg"]["ppl"]
    assert removed_ppl == pytest.approx(m1["targetkg"]["ppl_remaining"], rel=1e-4)

    rnd = _kcs("random-mask", "--like", mask_path, "--seed", 3, "--out", tmp_path / "random.safetensors")
    assert rnd.returncode == 0, rnd.stderr
    assert load_mask(tmp_path / "random.safetensors").sparsity() == pytest.approx(mask.sparsity())


def test_evaluate_reports_the_held_out_controlkg_test_split(learned_like_mask, tiny_gpt2_dir, tiny_data, tmp_path):
    from kcs.provenance import file_sha256

    _, mask = learned_like_mask
    mask_path = tmp_path / "mask.safetensors"
    save_mask(mask_path, mask, base_model=str(tiny_gpt2_dir), model_type="gpt2")
    config = tmp_path / "eval.yaml"
    config.write_text("controllm_block_size: 32\neval_batch_size: 3\n")
    held_out = write_jsonl(tmp_path / "control_test.jsonl", [fact(a, KINDS[(i + 2) % 6]) for i, a in enumerate(ANIMALS[:5])])
    data = ["--targetkg", tiny_data["targetkg"], "--controlkg", tiny_data["controlkg"], "--controllm", tiny_data["text"],
            "--config", config]
    full = _kcs("evaluate-full", "--model", tiny_gpt2_dir, *data, "--controlkg-test", held_out, "--out", tmp_path / "full.json")
    assert full.returncode == 0, full.stderr
    assert "ControlKG (test) ppl" in full.stdout
    full_metrics = json.loads((tmp_path / "full.json").read_text())
    assert len(full_metrics["raw"]["controlkg_test"]["nll"]) == 5
    assert full_metrics["inputs"]["controlkg_test"] == file_sha256(held_out)  # part of the fingerprint

    direct = _kcs("evaluate", "--model", tiny_gpt2_dir, "--mask", mask_path, *data, "--controlkg-test", held_out,
                  "--out", tmp_path / "m1.json")
    reused = _kcs("evaluate", "--model", tiny_gpt2_dir, "--mask", mask_path, *data, "--controlkg-test", held_out,
                  "--full-metrics", tmp_path / "full.json", "--out", tmp_path / "m2.json")
    assert direct.returncode == 0 and reused.returncode == 0, direct.stderr + reused.stderr
    assert "ControlKG (test) ppl" in direct.stdout
    m1, m2 = (json.loads((tmp_path / f).read_text()) for f in ("m1.json", "m2.json"))
    test, control = m1["controlkg_test"], m1["controlkg"]
    assert set(test) == set(control) and test["n"] == 5 and control["n"] == 8  # shaped like controlkg, its own facts
    assert test["ppl_full"] != pytest.approx(control["ppl_full"])
    assert test["delta_ppl"] == pytest.approx(test["ppl_remaining"] - test["ppl_full"])
    for key in ("ppl_full", "ppl_remaining"):
        assert m2["controlkg_test"][key] == pytest.approx(test[key], rel=1e-6)

    # full-model numbers computed with a test split do not fit an evaluation without one
    stale = _kcs("evaluate", "--model", tiny_gpt2_dir, "--mask", mask_path, *data,
                 "--full-metrics", tmp_path / "full.json", "--out", tmp_path / "m3.json")
    assert stale.returncode == 2 and "differing: controlkg_test" in stale.stderr
    assert not (tmp_path / "m3.json").exists()


def test_bad_inputs_exit_2_with_a_clear_message_and_no_output(tiny_gpt2_dir, tiny_data, tmp_path):
    bad_kg = tmp_path / "bad.jsonl"
    bad_kg.write_text('{"head": "a", "relation": "IsA", "tail": "b", "prompt": "A a is a", "target": " b"}\n{oops\n')
    out = tmp_path / "run"
    res = _kcs("train", "--model", tiny_gpt2_dir, "--targetkg", bad_kg, "--controlkg", tiny_data["controlkg"],
               "--controllm", tiny_data["text"], "--out", out, "--steps", 2)
    assert res.returncode == 2 and f"{bad_kg}:2: not valid JSON" in res.stderr
    assert not (out / "mask.safetensors").exists()

    missing_field = write_jsonl(tmp_path / "missing.jsonl", [{"head": "a", "relation": "IsA", "tail": "b", "prompt": "x"}])
    res = _kcs("train", "--model", tiny_gpt2_dir, "--targetkg", missing_field, "--controlkg", tiny_data["controlkg"],
               "--controllm", tiny_data["text"], "--out", out, "--steps", 2)
    assert res.returncode == 2 and "missing.jsonl:1: missing field(s) target" in res.stderr

    bad_config = tmp_path / "c.yaml"
    bad_config.write_text("stepz: 3\n")
    res = _kcs("train", "--model", tiny_gpt2_dir, "--targetkg", tiny_data["targetkg"], "--controlkg", tiny_data["controlkg"],
               "--controllm", tiny_data["text"], "--out", out, "--config", bad_config)
    assert res.returncode == 2 and "unknown key 'stepz'" in res.stderr

    # a mask from another model is refused, naming the parameter and shapes, and no metrics file appears
    other = tmp_path / "other_model"
    from core_fixtures import make_tiny_model
    make_tiny_model(other, "gpt2", tiny_data["text"], width=48)
    model, _ = load_model(other)
    foreign = tmp_path / "foreign.safetensors"
    save_mask(foreign, WeightMask.for_model(model, [1]), base_model=str(other), model_type="gpt2")
    res = _kcs("evaluate", "--model", tiny_gpt2_dir, "--mask", foreign, "--targetkg", tiny_data["targetkg"],
               "--controlkg", tiny_data["controlkg"], "--controllm", tiny_data["text"], "--out", tmp_path / "m.json")
    assert res.returncode == 2 and "transformer.h.1." in res.stderr and "trained on" in res.stderr
    assert not (tmp_path / "m.json").exists()
    assert not list(tmp_path.glob(".*.tmp"))  # no partial files left behind
