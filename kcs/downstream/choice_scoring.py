"""Score each answer choice of a multiple-choice question with a causal LM.

The score of a choice is the log-probability of its tokens given the prompt (its sum, or its mean
per token when `score="mean"`); the predicted answer is the highest-scoring choice, and training
uses a cross-entropy over the choices' scores. This works for any causal LM without new tokens or
heads (the authors' GPT-2 double-heads model needed both; see docs/downstream.md).

Two equivalent layouts of the token sequences:
- separate: one row per (question, choice): prompt + choice, right-padded;
- packed (default): one row per question: prompt, then every choice, with a tree-shaped attention
  mask (a choice token sees the prompt and the earlier tokens of its own choice only) and position
  ids that restart after the prompt for each choice. The prompt is computed once instead of once per
  choice: 2.5-4x fewer tokens. `check_packing` verifies on real questions that both layouts give
  the same scores before a run relies on it.

Computation is split at the last hidden state: `target_hidden` runs the model body and keeps only
the hidden states at the positions that predict a choice token; `target_logprobs` applies the output
layer there. Head-only finetuning caches the first part (the body is frozen) and trains the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from kcs.downstream.mcqa import MCQuestion
from kcs.errors import KcsError

SCORES = ("sum", "mean")


@dataclass
class EncodedChoices:
    """Token rows for some questions, and where each scored choice token sits in them."""

    input_ids: torch.Tensor  # [R, T]
    attention_mask: torch.Tensor  # [R, T] (separate) or [R, 1, T, T] additive float mask (packed)
    position_ids: torch.Tensor  # [R, T]
    token_row: torch.Tensor  # [K] row of each scored token
    token_position: torch.Tensor  # [K] position whose output predicts the token
    token_target: torch.Tensor  # [K] the choice token
    token_pair: torch.Tensor  # [K] (question, choice) pair the token belongs to
    pair_question: torch.Tensor  # [P] question index of each pair
    pair_choice: torch.Tensor  # [P] choice index of each pair
    answers: torch.Tensor  # [Q] gold choice index
    n_choices: torch.Tensor  # [Q]

    @property
    def num_questions(self) -> int:
        return int(self.answers.numel())

    @property
    def max_choices(self) -> int:
        return int(self.n_choices.max())

    @property
    def token_question(self) -> torch.Tensor:
        return self.pair_question[self.token_pair]

    def to(self, device) -> "EncodedChoices":
        return EncodedChoices(**{k: v.to(device) for k, v in self.__dict__.items()})


def _long(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


class ChoiceScorer:
    """Turns questions into token rows and token log-probabilities into choice scores.

    `template` formats the prompt from the question (`{question}`); each choice follows as
    `choice_prefix + choice` (a space by default, as in "A cabin is a kind of" + " house").
    """

    def __init__(self, tokenizer, template: str = "Question: {question}\nAnswer:", score: str = "mean",
                 choice_prefix: str = " ", max_length: int = 256, packed: bool = True):
        if score not in SCORES:
            raise KcsError(f"choice score must be one of {', '.join(SCORES)}, got '{score}'")
        if "{question}" not in template:
            raise KcsError(f"prompt template {template!r} must contain '{{question}}'")
        self.tokenizer = tokenizer
        self.template = template
        self.score = score
        self.choice_prefix = choice_prefix
        self.max_length = max_length
        self.packed = packed
        self.pad_id = next(i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if i is not None)
        self.start_id = next(i for i in (tokenizer.bos_token_id, tokenizer.eos_token_id, 0) if i is not None)

    def prompt(self, question: MCQuestion) -> str:
        return self.template.format(question=question.question)

    def _ids(self, question: MCQuestion) -> tuple[list[int], list[list[int]]]:
        context = self.tokenizer(self.prompt(question))["input_ids"] or [self.start_id]
        continuations = []
        for choice in question.choices:
            ids = self.tokenizer(self.choice_prefix + choice, add_special_tokens=False)["input_ids"]
            if not ids:
                raise KcsError(f"question {question.id}: choice {choice!r} tokenises to nothing")
            continuations.append(ids)
        room = self.max_length - (sum(map(len, continuations)) if self.packed else max(map(len, continuations)))
        if room < 1:
            raise KcsError(f"question {question.id}: its choices do not fit in max_length={self.max_length}")
        return context[-room:], continuations  # long prompts lose their beginning

    def encode(self, questions: Sequence[MCQuestion]) -> EncodedChoices:
        rows: list[list[int]] = []
        positions: list[list[int]] = []
        segments: list[list[int]] = []  # packed: 0 = prompt, c + 1 = choice c
        tok_row, tok_pos, tok_tgt, tok_pair, pair_q, pair_c = [], [], [], [], [], []
        for qi, question in enumerate(questions):
            context, continuations = self._ids(question)
            if self.packed:
                row, pos, seg = list(context), list(range(len(context))), [0] * len(context)
            for ci, continuation in enumerate(continuations):
                pair = len(pair_q)
                pair_q.append(qi)
                pair_c.append(ci)
                if not self.packed:
                    row, pos = context + continuation, list(range(len(context) + len(continuation)))
                    starts = len(context)
                    predictor = [starts - 1 + j for j in range(len(continuation))]
                else:
                    starts = len(row)
                    predictor = [len(context) - 1] + [starts + j for j in range(len(continuation) - 1)]
                    row += continuation
                    pos += range(len(context), len(context) + len(continuation))
                    seg += [ci + 1] * len(continuation)
                for j, token in enumerate(continuation):
                    tok_row.append(len(rows))
                    tok_pos.append(predictor[j])
                    tok_tgt.append(token)
                    tok_pair.append(pair)
                if not self.packed:
                    rows.append(row)
                    positions.append(pos)
            if self.packed:
                rows.append(row)
                positions.append(pos)
                segments.append(seg)
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        position_ids = torch.zeros((len(rows), width), dtype=torch.long)
        present = torch.zeros((len(rows), width), dtype=torch.bool)
        segment = torch.full((len(rows), width), -1, dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
            position_ids[i, : len(r)] = torch.tensor(positions[i])
            present[i, : len(r)] = True
            if self.packed:
                segment[i, : len(r)] = torch.tensor(segments[i])
        if self.packed:
            attention = _tree_mask(segment, present)
        else:
            attention = present.long()
        return EncodedChoices(
            input_ids, attention, position_ids, _long(tok_row), _long(tok_pos), _long(tok_tgt), _long(tok_pair),
            _long(pair_q), _long(pair_c), _long([q.answer_index for q in questions]),
            _long([len(q.choices) for q in questions]),
        )

    def choice_scores(self, token_logprobs: torch.Tensor, enc: EncodedChoices) -> torch.Tensor:
        """[Q, max_choices] scores; missing choices (fewer than the maximum) are -inf."""
        n_pairs = enc.pair_question.numel()
        per_pair = torch.zeros(n_pairs, dtype=token_logprobs.dtype, device=token_logprobs.device)
        per_pair = per_pair.index_add(0, enc.token_pair, token_logprobs)
        if self.score == "mean":
            counts = torch.bincount(enc.token_pair, minlength=n_pairs).clamp(min=1)
            per_pair = per_pair / counts.to(per_pair.dtype)
        scores = torch.full((enc.num_questions, enc.max_choices), float("-inf"),
                            dtype=per_pair.dtype, device=per_pair.device)
        return scores.index_put((enc.pair_question, enc.pair_choice), per_pair)


def _tree_mask(segment: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """[R, 1, T, T] additive mask: key j is visible from query i iff j <= i and j is in the prompt or in
    i's own choice. Padding queries see themselves only (no all-masked rows, hence no NaN)."""
    t = segment.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    same = segment[:, :, None] == segment[:, None, :]
    prompt_key = (segment == 0)[:, None, :]
    visible = causal & (same | prompt_key) & present[:, None, :] & present[:, :, None]
    visible |= torch.eye(t, dtype=torch.bool)
    mask = torch.zeros(visible.shape, dtype=torch.float32)
    mask.masked_fill_(~visible, torch.finfo(torch.float32).min)
    return mask[:, None]


def body(model: nn.Module) -> nn.Module:
    """The transformer without its output layer (GPT2Model, LlamaModel, ...)."""
    return model.base_model


def target_hidden(model: nn.Module, enc: EncodedChoices) -> torch.Tensor:
    """[K, d] final hidden states (after the last norm) at the positions predicting the choice tokens."""
    mask = enc.attention_mask
    if mask.dim() == 4:
        mask = mask.to(next(model.parameters()).dtype)
    hidden = body(model)(input_ids=enc.input_ids, attention_mask=mask,
                         position_ids=enc.position_ids).last_hidden_state
    return hidden[enc.token_row, enc.token_position]


def target_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[K] log-probability of each choice token under the output layer `head`."""
    logits = head(hidden).float()
    return torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)


def _scores(model: nn.Module, scorer: ChoiceScorer, questions: Sequence[MCQuestion]) -> torch.Tensor:
    enc = scorer.encode(questions).to(next(model.parameters()).device)
    logprobs = target_logprobs(model.get_output_embeddings(), target_hidden(model, enc), enc.token_target)
    return scorer.choice_scores(logprobs, enc)


def check_head_path(model: nn.Module, scorer: ChoiceScorer, questions: Sequence[MCQuestion]) -> None:
    """Refuse a model whose logits are not output_layer(last_hidden_state) (e.g. logit soft-capping),
    and a packed layout the model does not honour (custom attention masks ignored)."""
    questions = list(questions)[:2]
    separate = ChoiceScorer(scorer.tokenizer, scorer.template, "sum", scorer.choice_prefix, scorer.max_length,
                            packed=False)
    enc = separate.encode(questions).to(next(model.parameters()).device)
    with torch.no_grad():
        via_head = model.get_output_embeddings()(target_hidden(model, enc))
        logits = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        direct = logits[enc.token_row, enc.token_position]
        if not torch.allclose(via_head, direct, atol=1e-4, rtol=1e-3):
            gap = (via_head - direct).abs().max().item()
            raise KcsError(f"{type(model).__name__}: its logits are not the output layer applied to the last "
                           f"hidden state (largest difference {gap:.3g} over logits up to "
                           f"{direct.abs().max().item():.3g}); choice scoring does not support this architecture")
        if scorer.packed:
            packed = ChoiceScorer(scorer.tokenizer, scorer.template, "sum", scorer.choice_prefix, scorer.max_length)
            expected, got = _scores(model, separate, questions), _scores(model, packed, questions)
            if not torch.allclose(expected, got, atol=1e-3, rtol=1e-3):
                raise KcsError(f"{type(model).__name__} ({model.config._attn_implementation} attention) does not "
                               "honour the packed layout's attention mask; set pack_choices: false in the "
                               "finetuning config")
