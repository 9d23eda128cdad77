"""Bad input is a clear error, never a silent wrong result, and no output path deletes data kcs
did not write (issue 9, sections 2 to 4). Each case runs the real `kcs` command in-process."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from kcs.atomic import OUTPUT_MARKER, atomic_dir
from kcs.cli import main
from kcs.config import TrainConfig
from kcs.errors import KcsError
from kcs.maskfile import load_mask, save_mask
from kcs.masking import WeightMask
from kcs.models import load_model, num_blocks, select_blocks


@pytest.fixture
def mask_file(tiny_gpt2_dir, tmp_path):
    model, _ = load_model(tiny_gpt2_dir)
    mask = WeightMask.for_model(model, select_blocks(num_blocks(model)))
    gen = torch.Generator().manual_seed(0)
    mask.load_binary({n: torch.rand(t.shape, generator=gen) < 0.1 for n, t in zip(mask.names, mask.logits)})
    path = tmp_path / "mask.safetensors"
    save_mask(path, mask, base_model=str(tiny_gpt2_dir), model_type="gpt2")
    return path


def _rewrite(path, out, edit_tensors=None, edit_metadata=None):
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    if edit_tensors:
        edit_tensors(tensors)
    if edit_metadata:
        edit_metadata(metadata)
    save_file(tensors, str(out), metadata=metadata)
    return out


def _first(d):
    return next(iter(sorted(d)))


def _nan(t):
    t[_first(t)][0, 0] = float("nan")


def _drop(t):
    t.pop(_first(t))


def _extra(t):
    t["transformer.h.9.mlp.c_fc.weight"] = torch.zeros(2, 2)


def _reshape(t):
    name = _first(t)
    t[name] = t[name][:-1].contiguous()


BAD_MASKS = {
    "nan logits": (dict(edit_tensors=_nan), "NaN logits"),
    "missing matrix": (dict(edit_tensors=_drop), "has no tensor for matrix"),
    "extra tensor": (dict(edit_tensors=_extra), "is not among the mask's weight_shapes"),
    "shape disagrees": (dict(edit_tensors=_reshape), "but its metadata"),
    "no granularity": (dict(edit_metadata=lambda m: m.pop("granularity")), "'granularity' is None"),
    "no weight_shapes": (dict(edit_metadata=lambda m: m.pop("weight_shapes")), "has no 'weight_shapes'"),
    "metadata not JSON": (dict(edit_metadata=lambda m: m.update(weight_shapes="{oops")), "'weight_shapes' is not JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_MASKS))
@pytest.mark.parametrize("command", ["sparsity", "random-mask", "remove", "combine-masks"])
def test_every_mask_reader_refuses_a_bad_mask(mask_file, tiny_gpt2_dir, tmp_path, capsys, case, command):
    edits, message = BAD_MASKS[case]
    bad = _rewrite(mask_file, tmp_path / "bad.safetensors", **edits)
    out = tmp_path / "out"
    argv = {"sparsity": ["sparsity", str(bad), "--out", str(out)],
            "random-mask": ["random-mask", "--like", str(bad), "--seed", "1", "--out", str(out)],
            "remove": ["remove", "--model", str(tiny_gpt2_dir), "--mask", str(bad), "--out", str(out)],
            "combine-masks": ["combine-masks", str(mask_file), str(bad), "--how", "union", "--out", str(out)]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and message in err, err
    assert not out.exists()


def test_corrupted_tensor_bytes_fail_the_digest(mask_file, tmp_path):
    data = bytearray(mask_file.read_bytes())
    data[-5] ^= 0xFF  # inside the last tensor's bytes
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(KcsError, match="do not match the digest"):
        load_mask(bad)


def test_a_mask_of_another_base_model_is_warned_about(mask_file, tiny_gpt2_dir, tmp_path, caplog):
    other = _rewrite(mask_file, tmp_path / "other.safetensors",
                     edit_metadata=lambda m: m.update(base_model="someone/another-gpt2"))
    model, _ = load_model(tiny_gpt2_dir)
    with caplog.at_level(logging.WARNING, logger="kcs.maskfile"):
        load_mask(other, model=model)
    assert "someone/another-gpt2" in caplog.text and str(tiny_gpt2_dir.name) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kcs.maskfile"):
        load_mask(mask_file, model=model)
    assert caplog.text == ""


# -- output folders -----------------------------------------------------------------------------
def test_remove_refuses_a_folder_kcs_did_not_write(mask_file, tiny_gpt2_dir, tmp_path, capsys, monkeypatch):
    users = tmp_path / "users-folder"
    users.mkdir()
    (users / "thesis.tex").write_text("years of work")
    assert main(["remove", "--model", str(tiny_gpt2_dir), "--mask", str(mask_file), "--out", str(users)]) == 2
    assert "was not written by kcs" in capsys.readouterr().err
    assert (users / "thesis.tex").read_text() == "years of work"

    monkeypatch.chdir(users)  # `--out .`: the working directory itself
    assert main(["remove", "--model", str(tiny_gpt2_dir), "--mask", str(mask_file), "--out", "."]) == 2
    assert "would contain the working directory" in capsys.readouterr().err
    assert sorted(p.name for p in users.iterdir()) == ["thesis.tex"]

    a_file = tmp_path / "model.bin"
    a_file.write_text("x")
    assert main(["remove", "--model", str(tiny_gpt2_dir), "--mask", str(mask_file), "--out", str(a_file)]) == 2
    assert a_file.read_text() == "x"

    made = tmp_path / "remaining"  # a folder kcs made is replaced as a whole, atomically
    assert main(["remove", "--model", str(tiny_gpt2_dir), "--mask", str(mask_file), "--out", str(made)]) == 0
    (made / "stale.txt").write_text("from an earlier run")
    assert main(["remove", "--model", str(tiny_gpt2_dir), "--mask", str(mask_file), "--out", str(made)]) == 0
    assert not (made / "stale.txt").exists() and (made / OUTPUT_MARKER).exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_atomic_dir_keeps_a_foreign_folder_and_leaves_nothing_on_failure(tmp_path):
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(KcsError, match="was not written by kcs"):
        with atomic_dir(foreign) as tmp:
            (tmp / "x").write_text("new")
    assert (foreign / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty) as tmp:  # an empty folder holds nothing to lose
        (tmp / "x").write_text("new")
    assert (empty / "x").exists()
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "fails") as tmp:
            (tmp / "half").write_text("partial")
            raise RuntimeError("killed half-way")
    assert not (tmp_path / "fails").exists() and not list(tmp_path.glob(".*.tmp"))


# -- configuration ranges -------------------------------------------------------------------------
@pytest.mark.parametrize("text,message", [
    ("temperature: 0\n", "key 'temperature' must be > 0, got 0"),
    ("lr: -0.1\n", "key 'lr' must be > 0, got -0.1"),
    ("lr: .nan\n", "key 'lr' must be a finite number, got nan"),
    ("controlkg_batch_size: 0\n", "'controlkg_batch_size' must be >= 1"),
    ("validate_every: 0\n", "'validate_every' must be >= 1"),
    ("checkpoint_every: 0\n", "'checkpoint_every' must be >= 1"),
    ("warmup_frac: 1.5\n", "key 'warmup_frac' must be <= 1, got 1.5"),
    ("block_range: [5, 2]\n", "is reversed"),
    ("use_targetkg: false\nuse_controlkg: false\nuse_controllm: false\nuse_sparsity: false\n", "every loss term is switched off"),
])
def test_config_ranges_are_checked_with_the_file_named(tmp_path, text, message):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    with pytest.raises(KcsError) as err:
        TrainConfig.from_yaml(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_bad_config_leaves_no_run_directory(tiny_gpt2_dir, tiny_data, tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("temperature: 0\n")
    out = tmp_path / "run"
    assert main(["train", "--model", str(tiny_gpt2_dir), "--targetkg", str(tiny_data["targetkg"]),
                 "--controlkg", str(tiny_data["controlkg"]), "--controllm", str(tiny_data["text"]),
                 "--out", str(out), "--config", str(config), "--no-progress"]) == 2
    assert "temperature" in capsys.readouterr().err
    assert not out.exists()


def test_sparsity_output_records_matrices(mask_file, tmp_path):
    out = tmp_path / "s.json"
    assert main(["sparsity", str(mask_file), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert 0.85 < report["sparsity"] < 0.95


# -- disk ---------------------------------------------------------------------------------------
def test_random_and_combined_masks_are_bit_packed_and_read_back_exactly(mask_file, tmp_path):
    random_out, union_out = tmp_path / "random.safetensors", tmp_path / "union.safetensors"
    assert main(["random-mask", "--like", str(mask_file), "--seed", "3", "--out", str(random_out)]) == 0
    assert main(["combine-masks", str(mask_file), str(random_out), "--how", "union", "--out", str(union_out)]) == 0
    learned, randomised, union = load_mask(mask_file), load_mask(random_out), load_mask(union_out)
    def tensor_bytes(path):
        with safe_open(str(path), framework="pt") as handle:
            return sum(handle.get_tensor(n).numel() * handle.get_tensor(n).element_size() for n in handle.keys())

    assert tensor_bytes(mask_file) >= 31 * tensor_bytes(random_out)  # 1 bit instead of 32 per weight
    for name in learned.names:
        assert int(randomised.binary()[name].sum()) == int(learned.binary()[name].sum())
        assert torch.equal(union.binary()[name], learned.binary()[name] | randomised.binary()[name])
    with safe_open(str(random_out), framework="pt") as handle:
        assert handle.metadata()["encoding"] == "bits"

    def _short(t):
        name = _first(t)
        t[name] = t[name][:-1].contiguous()

    bad = _rewrite(random_out, tmp_path / "short.safetensors", edit_tensors=_short)
    with pytest.raises(KcsError, match="bit-packed mask of shape"):
        load_mask(bad)


# -- inputs that used to end in a traceback ------------------------------------------------------
def _train_argv(tiny_gpt2_dir, tiny_data, out, config, **replace):
    inputs = {"--targetkg": tiny_data["targetkg"], "--controlkg": tiny_data["controlkg"],
              "--controllm": tiny_data["text"], **replace}
    argv = ["train", "--model", str(tiny_gpt2_dir), "--out", str(out), "--config", str(config), "--no-progress"]
    for flag, value in inputs.items():
        argv += [flag, str(value)]
    return argv


@pytest.fixture
def small_config(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("steps: 2\ncontrollm_block_size: 32\ncontrollm_batch_size: 2\neval_controllm_blocks: 2\n")
    return path


@pytest.mark.parametrize("case", ["kg not utf-8", "text not utf-8", "missing input", "input is a folder",
                                  "block longer than context", "prompt longer than context"])
def test_bad_training_inputs_are_one_line_errors(tiny_gpt2_dir, tiny_data, small_config, tmp_path, capsys, case):
    bad = tmp_path / "bad.jsonl"
    replace, config, expected = {}, small_config, None
    if case == "kg not utf-8":
        bad.write_bytes(tiny_data["targetkg"].read_bytes() + b'{"head": "caf\xe9"}\n')
        replace, expected = {"--targetkg": bad}, f"{bad}:5: not UTF-8"
    elif case == "text not utf-8":
        bad.write_bytes(b"fine line\nsecond \xff\xfe line\n")
        replace, expected = {"--controllm": bad}, f"{bad}:2: the ControlLM text file is not UTF-8"
    elif case == "missing input":
        replace, expected = {"--controlkg": tmp_path / "nope.jsonl"}, f"{tmp_path / 'nope.jsonl'}: input file not found"
    elif case == "input is a folder":
        replace, expected = {"--targetkg": tmp_path}, f"{tmp_path}: is a folder, expected a file"
    elif case == "block longer than context":
        config = tmp_path / "long.yaml"
        config.write_text(small_config.read_text().replace("controllm_block_size: 32", "controllm_block_size: 512"))
        expected = "'controllm_block_size' (512) is longer than the model's context (128 positions)"
    else:
        long_fact = {"head": "x", "relation": "IsA", "tail": "y", "prompt": "word " * 200 + "is a kind of", "target": " y"}
        bad.write_text(tiny_data["targetkg"].read_text() + json.dumps(long_fact) + "\n")
        replace, expected = {"--targetkg": bad}, "fact 5"
    out = tmp_path / "run"
    assert main(_train_argv(tiny_gpt2_dir, tiny_data, out, config, **replace)) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err
    if case == "prompt longer than context":
        assert "longer than the model's context of 128" in err
    assert not out.exists()


def test_full_metrics_that_are_not_a_metrics_file(mask_file, tiny_gpt2_dir, tiny_data, tmp_path, capsys):
    for text in ("{not json", json.dumps({"hello": 1})):
        full = tmp_path / "full.json"
        full.write_text(text)
        out = tmp_path / "metrics.json"
        assert main(["evaluate", "--model", str(tiny_gpt2_dir), "--mask", str(mask_file),
                     "--targetkg", str(tiny_data["targetkg"]), "--controlkg", str(tiny_data["controlkg"]),
                     "--controllm", str(tiny_data["text"]), "--full-metrics", str(full), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert str(full) in err and "kcs evaluate-full" in err
        assert not out.exists()


def test_outputs_get_ordinary_permissions(mask_file, tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    out = tmp_path / "random.safetensors"
    assert main(["random-mask", "--like", str(mask_file), "--seed", "3", "--out", str(out)]) == 0
    expected = 0o666 & ~umask
    assert stat.S_IMODE(out.stat().st_mode) == expected
    assert stat.S_IMODE(mask_file.stat().st_mode) == expected


# -- no silent wrong number ---------------------------------------------------------------------
def test_a_diverged_training_stops_with_an_error_and_writes_no_mask(tiny_gpt2_dir, tiny_data, small_config,
                                                                   tmp_path, monkeypatch):
    from kcs import objectives
    from kcs.training import train_mask

    monkeypatch.setattr(objectives, "suppression_kl", lambda logits: logits.sum() * float("nan"))
    out = tmp_path / "run"
    with pytest.raises(KcsError, match=r"the loss became nan at step 1 \(terms: targetkg nan"):
        train_mask(str(tiny_gpt2_dir), tiny_data["targetkg"], tiny_data["controlkg"], [tiny_data["text"]], out,
                   TrainConfig.from_yaml(small_config), progress=False)
    assert not (out / "mask.safetensors").exists() and not (out / "run.json").exists()


def test_results_with_a_non_finite_number_are_not_written(tmp_path):
    from kcs.atomic import write_json

    out = tmp_path / "metrics.json"
    with pytest.raises(KcsError, match=r"targetkg\.ppl_remaining is inf"):
        write_json(out, {"sparsity": 0.98, "targetkg": {"ppl_remaining": float("inf")}}, finite=True)
    with pytest.raises(KcsError, match=r"per_fact\[1\] is nan"):
        write_json(out, {"per_fact": [1.0, float("nan")]}, finite=True)
    assert not out.exists()
    write_json(out, {"p_value": float("nan")})  # other files may hold NaN where a statistic is undefined
    assert out.exists()


def test_a_mask_with_nan_logits_is_not_written(tiny_gpt2_dir, tmp_path):
    model, _ = load_model(tiny_gpt2_dir)
    mask = WeightMask.for_model(model, select_blocks(num_blocks(model)))
    with torch.no_grad():
        mask.logits[1][0, 0] = float("nan")
    with pytest.raises(KcsError, match="NaN logits"):
        save_mask(tmp_path / "m.safetensors", mask, base_model="x", model_type="gpt2")
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EROFS", "EACCES"])
def test_a_full_or_read_only_disk_is_one_line_and_leaves_nothing(mask_file, tmp_path, capsys, monkeypatch, errno_name):
    import errno
    import os

    import kcs.maskfile

    code = getattr(errno, errno_name)

    def failing_save(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise OSError(code, os.strerror(code), filename)

    monkeypatch.setattr(kcs.maskfile, "save_file", failing_save)
    out = tmp_path / "out" / "random.safetensors"
    assert main(["random-mask", "--like", str(mask_file), "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert os.strerror(code) in err and "Traceback" not in err
    assert not out.exists() and not list(out.parent.glob(".*.tmp"))
