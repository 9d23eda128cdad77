"""Finetuning after removal on tiny random models: removed weights stay zero, styles train what they should."""

from __future__ import annotations

import pytest
import torch

from kcs.downstream.choice_scoring import ChoiceScorer, check_head_path, target_hidden, target_logprobs
from kcs.downstream.finetune import FinetuneConfig, Finetuner, load_config
from kcs.errors import KcsError

from downstream_fixtures import removal_for, tiny_model, tokenizer, toy_questions


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("style", ["full", "lora", "head"])
def test_removed_weights_stay_zero_and_the_rest_trains(family, style):
    model = tiny_model(family)
    removed = removal_for(model, share=0.3)
    before = _params(model)
    config = FinetuneConfig(style=style, epochs=2, batch_size=4, lr=0.05, warmup_frac=0.0)
    finetuner = Finetuner(model, tokenizer(), config, removed=removed, seed=3)
    assert finetuner.removed_count == sum(int(m.sum()) for m in removed.values()) > 0
    stats = finetuner.train(toy_questions(12))
    assert stats["steps"] == 6
    after = dict(model.named_parameters())
    for name, member in removed.items():
        assert torch.count_nonzero(after[name][member]) == 0, name
        assert before[name][member].abs().sum() > 0  # they were non-zero before removal
    assert finetuner.removed_nonzero() == 0
    # the kept entries of the removed matrices change only when the body trains
    some = next(iter(removed))
    kept_changed = not torch.equal(after[some][~removed[some]], before[some][~removed[some]])
    assert kept_changed == (style in ("full", "lora"))
    if style == "head":
        # the untied head trained; the model's own (tied) embeddings did not
        emb_name = next(n for n in before if "wte" in n or "embed_tokens" in n)
        assert torch.equal(after[emb_name], before[emb_name])
        assert not torch.equal(finetuner.head.weight, before[emb_name])
    # no parameter is left trainable or parametrised after training
    assert not any(p.requires_grad for p in model.parameters())
    assert set(dict(model.named_parameters())) == set(before)


def test_full_style_gradients_are_masked_so_adam_moments_stay_zero():
    model = tiny_model("gpt2")
    removed = removal_for(model, share=0.5, seed=1)
    finetuner = Finetuner(model, tokenizer(), FinetuneConfig(style="full", epochs=1, batch_size=6, lr=0.1),
                          removed=removed, seed=0)
    finetuner.train(toy_questions(6))
    assert finetuner.removed_nonzero() == 0


def test_no_removal_changes_nothing_before_training():
    model = tiny_model("gpt2")
    before = _params(model)
    finetuner = Finetuner(model, tokenizer(), FinetuneConfig(), removed=None)
    assert finetuner.removed_count == 0
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_neuron_masks_broadcast_to_the_weight():
    model = tiny_model("gpt2")
    name = "transformer.h.1.mlp.c_fc.weight"
    rows = dict(model.named_parameters())[name].shape[0]
    member = torch.zeros(rows, 1, dtype=torch.bool)
    member[:5] = True  # GPT-2 Conv1D stores [in, out]: a neuron mask removes whole input rows
    finetuner = Finetuner(model, tokenizer(), FinetuneConfig(style="lora", epochs=1, batch_size=4),
                          removed={name: member}, seed=0)
    assert finetuner.removed_count == 5 * dict(model.named_parameters())[name].shape[1]
    finetuner.train(toy_questions(4))
    assert torch.count_nonzero(dict(model.named_parameters())[name][:5]) == 0


def test_bad_removal_keys_and_shapes_are_user_errors():
    model = tiny_model("gpt2")
    with pytest.raises(KcsError, match="not a parameter"):
        Finetuner(model, tokenizer(), FinetuneConfig(), removed={"nope.weight": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(KcsError, match="does not fit"):
        Finetuner(model, tokenizer(), FinetuneConfig(),
                  removed={"transformer.h.0.attn.c_attn.weight": torch.ones(3, 7, dtype=torch.bool)})


def test_training_is_deterministic_for_a_seed():
    results = []
    for _ in range(2):
        model = tiny_model("llama")
        finetuner = Finetuner(model, tokenizer(), FinetuneConfig(style="lora", epochs=2, batch_size=3),
                              removed=removal_for(model), seed=7)
        results.append(finetuner.train(toy_questions(9))["loss_curve"])
    assert results[0] == results[1]


def test_head_finetuning_learns_a_fixed_answer():
    """A task whose answer is always the same word: head-only training must learn it."""
    from kcs.downstream.mcqa import MCQuestion

    words = ["fridge", "pen", "library", "shoes"]
    questions = [MCQuestion(f"q{i}", f"Where is thing {i}?", tuple(words[(i + j) % 4] for j in range(4)),
                            (-i) % 4) for i in range(16)]
    assert all(q.choices[q.answer_index] == "fridge" for q in questions)
    model = tiny_model("gpt2")
    finetuner = Finetuner(model, tokenizer(), FinetuneConfig(style="head", epochs=15, batch_size=8, lr=0.05),
                          seed=0)
    finetuner.train(questions[:12])
    assert finetuner.evaluate(questions[12:]).accuracy() == 1.0
    assert finetuner.stats["loss_last"] < finetuner.stats["loss_first"]


def test_choice_scores_are_log_probabilities_of_the_choice_tokens():
    model = tiny_model("gpt2")
    tok = tokenizer()
    scorer = ChoiceScorer(tok, template="{question}", score="sum")
    question = toy_questions(1, n_choices=3)[0]
    enc = scorer.encode([question])
    with torch.no_grad():
        scores = scorer.choice_scores(target_logprobs(model.get_output_embeddings(), target_hidden(model, enc),
                                                      enc.token_target), enc)
        for ci, choice in enumerate(question.choices):
            context = tok(question.question)["input_ids"]
            continuation = tok(" " + choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([context + continuation])
            logp = torch.log_softmax(model(ids).logits[0], dim=-1)
            expected = sum(float(logp[len(context) + j - 1, t]) for j, t in enumerate(continuation))
            assert scores[0, ci].item() == pytest.approx(expected, abs=1e-4)
    check_head_path(model, scorer, [question])


def test_mean_score_divides_by_the_number_of_choice_tokens():
    tok = tokenizer()
    question = toy_questions(1, n_choices=2)[0]
    summed, mean = ChoiceScorer(tok, score="sum"), ChoiceScorer(tok, score="mean")
    enc = summed.encode([question])
    logprobs = -torch.ones(enc.token_target.numel())
    counts = torch.bincount(enc.token_pair)
    assert torch.equal(summed.choice_scores(logprobs, enc)[0], -counts.float())
    assert torch.equal(mean.choice_scores(logprobs, enc)[0], -torch.ones(2))


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    path = tmp_path / "ft.yaml"
    path.write_text("style: head\nlearning_rate: 0.1\n")
    with pytest.raises(KcsError, match="ft.yaml: unknown key 'learning_rate'"):
        load_config(path)
    path.write_text("style: adapters\n")
    with pytest.raises(KcsError, match="key 'style' must be one of 'head', 'lora' or 'full', got 'adapters'"):
        load_config(path)
    path.write_text("epochs: 4\nlr: 0.002\n")
    config = load_config(path, {"style": "lora", "epochs": None})
    assert (config.style, config.epochs, config.lr) == ("lora", 4, 0.002)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_packed_layout_scores_equal_separate_rows(family):
    """One row per question with a tree attention mask must give each choice's own log-probability."""
    model = tiny_model(family)
    tok = tokenizer()
    from kcs.downstream.mcqa import MCQuestion

    questions = [MCQuestion("a", "Where do you keep milk cold?", ("fridge", "xylophone quartet", "oven"), 0),
                 MCQuestion("b", "What keeps you dry?", ("umbrella", "zebra", "a very long purple kettle", "map"), 1),
                 MCQuestion("c", "Cut?", ("scissors", "pillow"), 0)]
    packed, separate = ChoiceScorer(tok, score="sum"), ChoiceScorer(tok, score="sum", packed=False)
    enc_packed, enc_separate = packed.encode(questions), separate.encode(questions)
    assert enc_packed.input_ids.shape[0] == 3 and enc_separate.input_ids.shape[0] == 9
    assert enc_packed.input_ids.numel() < enc_separate.input_ids.numel()
    assert max(torch.bincount(enc_packed.token_pair)) > 1  # some choices span several tokens
    with torch.no_grad():
        scores = [s.choice_scores(target_logprobs(model.get_output_embeddings(), target_hidden(model, e),
                                                  e.token_target), e)
                  for s, e in ((packed, enc_packed), (separate, enc_separate))]
    assert torch.allclose(scores[0], scores[1], atol=1e-4)
    assert scores[0][2, 2] == float("-inf")  # question c has only two choices
