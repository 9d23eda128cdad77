"""Turning KG facts and ControlLM text into model inputs.

A KG sentence is `prompt + target`. Its target tokens are those that end after the prompt. The KG
loss terms read the distribution that predicts the *last* target token (docs/method.md 2.2):
- kg_kl_position="tail" (default, the paper's intent): logits at index last-1;
- kg_kl_position="after_tail" (the authors' released code): logits at index last, which predict
  the token after the sentence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from kcs.errors import KcsError
from kcs.kg import Fact, Verbalisation

KL_POSITIONS = ("tail", "after_tail")


@dataclass
class KGEncoding:
    input_ids: torch.Tensor  # [N, T], right padded
    attention_mask: torch.Tensor  # [N, T]
    last_index: torch.Tensor  # [N] index of the last target token
    target_start: torch.Tensor  # [N] index of the first target token

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def subset(self, rows: torch.Tensor | slice) -> "KGEncoding":
        ids, att = self.input_ids[rows], self.attention_mask[rows]
        width = int(att.sum(dim=1).max())  # trim padding the subset does not need
        return KGEncoding(ids[:, :width], att[:, :width], self.last_index[rows], self.target_start[rows])

    def to(self, device) -> "KGEncoding":
        return KGEncoding(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.last_index, self.target_start)))

    def kl_index(self, position: str) -> torch.Tensor:
        if position not in KL_POSITIONS:
            raise KcsError(f"kg_kl_position must be one of {', '.join(KL_POSITIONS)}, got '{position}'")
        return self.last_index - 1 if position == "tail" else self.last_index

    def gold_last(self) -> torch.Tensor:
        return self.input_ids.gather(1, self.last_index[:, None]).squeeze(1)

    def tail_labels(self) -> torch.Tensor:
        """Labels for causal-LM loss over all target tokens (-100 elsewhere), unshifted."""
        positions = torch.arange(self.input_ids.shape[1], device=self.input_ids.device)[None, :]
        keep = (positions >= self.target_start[:, None]) & (positions <= self.last_index[:, None])
        return torch.where(keep, self.input_ids, torch.full_like(self.input_ids, -100))


def encode_verbalisations(items: Sequence[Verbalisation | Fact], tokenizer, where: str = "KG") -> KGEncoding:
    if not items:
        raise KcsError(f"{where}: no facts to encode")
    rows, starts, lasts = [], [], []
    for i, item in enumerate(items):
        sentence = item.prompt + item.target
        encoded = tokenizer(sentence, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        target_tokens = [k for k, (start, end) in enumerate(offsets) if end > len(item.prompt) and end > start]
        if not target_tokens:
            raise KcsError(f"{where}: fact {i + 1} ('{sentence}') has no target token after its prompt")
        if target_tokens[0] == 0:
            raise KcsError(f"{where}: fact {i + 1} ('{sentence}') starts with its target; a prompt must precede it")
        if len(ids) > _context(tokenizer):
            raise KcsError(f"{where}: fact {i + 1} ('{sentence}') is {len(ids)} tokens, longer than the model's "
                           f"context of {_context(tokenizer)}; shorten it or leave it out")
        rows.append(ids)
        starts.append(target_tokens[0])
        lasts.append(target_tokens[-1])
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
    return KGEncoding(input_ids, attention, torch.tensor(lasts), torch.tensor(starts))


def _context(tokenizer) -> int:
    """The longest input the model takes (kcs.models.load_model sets it from the model's config)."""
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit > 0 else 10**9


def read_utf8(path: Path, what: str) -> str:
    """A text file's contents; a file that is not UTF-8 is an error naming its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise KcsError(f"{path}:{line}: the {what} file is not UTF-8 ({err.reason} at byte {err.start}); "
                       "convert it, e.g. with iconv -t UTF-8") from None


def paraphrase_items(facts: Sequence[Fact]) -> list[Verbalisation]:
    return [para for fact in facts for para in fact.paraphrases]


def read_text_blocks(paths: Sequence[str | os.PathLike], tokenizer, block_size: int,
                     max_blocks: int | None = None) -> torch.Tensor:
    """Tokenise each line separately, concatenate, cut into `block_size` blocks (remainder dropped)."""
    if block_size > _context(tokenizer):
        raise KcsError(f"config key 'controllm_block_size' ({block_size}) is longer than the model's context "
                       f"({_context(tokenizer)} positions); use at most {_context(tokenizer)}")
    ids: list[int] = []
    needed = None if max_blocks is None else max_blocks * block_size
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise KcsError(f"{path}: ControlLM text file not found")
        lines = [line for line in read_utf8(path, "ControlLM text").splitlines(keepends=True) if line.strip()]
        for start in range(0, len(lines), 1000):
            for line_ids in tokenizer(lines[start:start + 1000], add_special_tokens=False)["input_ids"]:
                ids.extend(line_ids)
            if needed is not None and len(ids) >= needed:
                break
        if needed is not None and len(ids) >= needed:
            break
    n_blocks = len(ids) // block_size
    if max_blocks is not None:
        n_blocks = min(n_blocks, max_blocks)
    if n_blocks == 0:
        names = ", ".join(str(p) for p in paths)
        raise KcsError(f"{names}: fewer than {block_size} tokens of text; give more ControlLM text or a smaller block size")
    return torch.tensor(ids[: n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)
