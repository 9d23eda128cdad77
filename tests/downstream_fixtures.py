"""Shared helpers for the downstream tests: tiny random models, a tokenizer, toy questions.

Imported explicitly by tests/test_downstream_*.py (not a conftest).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from kcs.downstream.mcqa import MCQuestion

FIXTURES = Path(__file__).parent / "fixtures" / "downstream"
CSQA_LOCAL = FIXTURES / "csqa_local"
CSQA1_KG = FIXTURES / "csqa1_kg.jsonl"
CSQA2_KG = FIXTURES / "csqa2_kg.jsonl"
SMOKE_CONFIG = FIXTURES / "smoke_finetune.yaml"


@functools.lru_cache(maxsize=1)
def tokenizer():
    """A byte-level BPE trained on the fixture questions (kcs tiny-model's own trainer)."""
    from kcs.tiny_models import train_bpe_tokenizer

    texts = [CSQA_LOCAL / "train_rand_split.jsonl", CSQA_LOCAL / "dev_rand_split.jsonl"]
    tok = train_bpe_tokenizer(texts, vocab_size=400)
    tok.padding_side = "right"
    return tok


def tiny_model(family: str = "gpt2", seed: int = 0):
    from kcs.tiny_models import build_model

    tok = tokenizer()
    model = build_model(family, len(tok), layers=2, width=32, heads=2, positions=128,
                        eos_token_id=tok.eos_token_id, seed=seed)
    return model.eval().requires_grad_(False)


def removal_for(model, share: float = 0.3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random boolean removal (True = removed) over every block's projection matrices."""
    from kcs.models import maskable_parameters, num_blocks

    generator = torch.Generator().manual_seed(seed)
    params = maskable_parameters(model, list(range(num_blocks(model))))
    return {name: torch.rand(p.shape, generator=generator) < share for name, p in params.items()}


def toy_questions(n: int, n_choices: int = 4, prefix: str = "q") -> list[MCQuestion]:
    words = ["fridge", "pen", "library", "shoes", "water", "sea", "scissors", "airport", "milk", "bed"]
    out = []
    for i in range(n):
        choices = tuple(words[(i + j) % len(words)] for j in range(n_choices))
        out.append(MCQuestion(f"{prefix}{i}", f"Where is thing {i}?", choices, i % n_choices))
    return out


def save_tiny_model(folder: Path, family: str = "gpt2", seed: int = 0) -> Path:
    model = tiny_model(family, seed)
    model.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder
