"""`kcs tiny-model`: the small random models of the smoke configuration, as normal model folders."""

from __future__ import annotations

import pytest

from kcs.cli import main as kcs_main
from kcs.models import load_model, maskable_parameters, num_blocks

TEXT = "A cabin is a kind of house.\nThe dog ran along the river bank at dawn.\n" * 20


@pytest.mark.parametrize("family, model_type", [("gpt2", "gpt2"), ("llama", "llama")])
def test_tiny_model_folder_loads_with_a_trained_tokenizer(tmp_path, family, model_type):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    out = tmp_path / family
    assert kcs_main(["tiny-model", "--family", family, "--out", str(out), "--layers", "3", "--width", "16",
                     "--heads", "2", "--tokenizer-texts", str(text), "--vocab-size", "300"]) == 0
    model, tokenizer = load_model(out)
    assert model.config.model_type == model_type and num_blocks(model) == 3
    assert len(tokenizer) == model.get_input_embeddings().weight.shape[0] <= 300
    assert tokenizer.decode(tokenizer(" A cabin is a kind of house").input_ids) == " A cabin is a kind of house"
    assert len(maskable_parameters(model, [1, 2])) == (8 if family == "gpt2" else 14)
    assert (out / "kcs_tiny_model.json").is_file()


def test_tiny_model_copies_a_tokenizer_and_is_seeded(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    base = ["tiny-model", "--family", "gpt2", "--width", "16", "--heads", "2", "--seed", "3"]
    assert kcs_main([*base, "--out", str(tmp_path / "a"), "--tokenizer-texts", str(text), "--vocab-size", "300"]) == 0
    assert kcs_main([*base, "--out", str(tmp_path / "b"), "--tokenizer", str(tmp_path / "a")]) == 0
    a, tok_a = load_model(tmp_path / "a")
    b, tok_b = load_model(tmp_path / "b")
    assert tok_a.get_vocab() == tok_b.get_vocab()
    assert all((pa == pb).all() for pa, pb in zip(a.parameters(), b.parameters()))  # same seed, same weights


def test_tiny_model_user_errors(tmp_path, capsys):
    assert kcs_main(["tiny-model", "--family", "gpt2", "--out", str(tmp_path / "x"), "--tokenizer", str(tmp_path / "none")]) == 2
    assert "tokenizer folder not found" in capsys.readouterr().err
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    assert kcs_main(["tiny-model", "--family", "gpt2", "--out", str(tmp_path / "y"), "--width", "30", "--heads", "4",
                     "--tokenizer-texts", str(text), "--vocab-size", "300"]) == 2
    assert "multiple of --heads" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
