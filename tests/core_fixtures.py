"""Tiny models, tokenizers and KG files built in the tests (no downloads)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

ANIMALS = ["dog", "cat", "horse", "cow", "sheep", "goat", "lion", "tiger", "bear", "wolf", "fox", "deer"]
KINDS = ["animal", "mammal", "creature", "pet", "beast", "hunter"]
FILLER = ("the a of and to in is was for on that with as by it at from his an were are which this be or "
          "has had not but their kind sort type").split()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def fact(head: str, tail: str) -> dict:
    return {"head": head, "relation": "IsA", "tail": tail, "prompt": f"A {head} is a kind of", "target": f" {tail}"}


def make_text(path: Path, lines: int = 300, seed: int = 0) -> Path:
    rng = random.Random(seed)
    vocabulary = FILLER + ANIMALS + KINDS
    path.write_text("".join(" ".join(rng.choice(vocabulary) for _ in range(18)) + ".\n" for _ in range(lines)))
    return path


def make_tiny_model(folder: Path, family: str, text: Path, layers: int = 2, width: int = 32, vocab: int = 320):
    """A randomly initialised model with a byte-level BPE tokenizer trained on `text`, saved as a folder."""
    from kcs.tiny_models import build_model, train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer([text], vocab)
    model = build_model(family, len(tokenizer), layers, width, 4, 128, tokenizer.eos_token_id, seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_data")
    return {
        "text": make_text(root / "text.txt"),
        "targetkg": write_jsonl(root / "target.jsonl", [fact(a, KINDS[i % 6]) for i, a in enumerate(ANIMALS[:4])]),
        "controlkg": write_jsonl(root / "control.jsonl", [fact(a, KINDS[i % 6]) for i, a in enumerate(ANIMALS[4:], 4)]),
    }


@pytest.fixture(scope="session", params=["gpt2", "llama"])
def tiny_model_dir(request, tmp_path_factory, tiny_data) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp(f"tiny_{request.param}"), request.param, tiny_data["text"])


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, tiny_data) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny_gpt2_only"), "gpt2", tiny_data["text"])


@pytest.fixture
def train_yaml(tmp_path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(
        "steps: 12\ncontrollm_block_size: 32\ncontrollm_batch_size: 4\ncontrollm_max_blocks: 40\n"
        "validate_every: 4\ncheckpoint_every: 3\neval_controllm_blocks: 4\n"
    )
    return path
