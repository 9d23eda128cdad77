"""The method works: a tiny model taught a handful of facts forgets exactly the targeted ones.

A small GPT-2 is trained from scratch to know 12 'X is a kind of Y' facts and some filler text.
A mask trained to suppress 4 of the facts must raise their perplexity clearly while the other 8
facts and the text barely move; a random subnetwork of the same size per matrix must not do it.
"""

import random

import pytest
import torch

from kcs.config import TrainConfig
from kcs.evaluation import evaluate_mask
from kcs.maskfile import save_mask
from kcs.random_baseline import random_like
from kcs.training import train_mask

from core_fixtures import ANIMALS, FILLER, KINDS, fact, write_jsonl


def _teach(folder, sentences, text_lines):
    from kcs.tiny_models import build_model, train_bpe_tokenizer

    corpus = folder.parent / "corpus.txt"
    corpus.write_text("".join(s + "\n" for s in sentences + text_lines))
    tokenizer = train_bpe_tokenizer([corpus], 400)
    torch.manual_seed(0)
    model = build_model("gpt2", len(tokenizer), 4, 128, 4, 64, tokenizer.eos_token_id, seed=0)
    facts = tokenizer(sentences, return_tensors="pt", padding=True)
    text = tokenizer(text_lines, return_tensors="pt", padding=True, truncation=True, max_length=24)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(250):
        rows = torch.randint(0, text["input_ids"].shape[0], (16,))
        loss = 0.0
        for ids, att in ((facts["input_ids"], facts["attention_mask"]), (text["input_ids"][rows], text["attention_mask"][rows])):
            loss = loss + model(input_ids=ids, attention_mask=att, labels=ids.masked_fill(att == 0, -100)).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    root = tmp_path_factory.mktemp("functional")
    facts = [fact(animal, KINDS[i % len(KINDS)]) for i, animal in enumerate(ANIMALS)]
    rng = random.Random(1)
    # learnable 'ordinary text': a small grammar, so the model has a distribution worth keeping
    subjects, verbs, objects = FILLER[:8], ["saw", "took", "had", "made", "found"], FILLER[8:16]
    text_lines = [f"the {rng.choice(subjects)} {rng.choice(verbs)} the {rng.choice(objects)} and the "
                  f"{rng.choice(subjects)} {rng.choice(verbs)} it." for _ in range(200)]
    model = _teach(root / "model", [f["prompt"] + f["target"] for f in facts], text_lines)
    (root / "text.txt").write_text("\n".join(text_lines) + "\n")
    return {
        "model": str(model),
        "targetkg": write_jsonl(root / "target.jsonl", facts[:4]),
        "controlkg": write_jsonl(root / "control.jsonl", facts[4:]),
        "text": root / "text.txt",
        "root": root,
    }


def test_learned_subnetwork_suppresses_only_the_target_facts(taught):
    config = TrainConfig.from_dict({
        "steps": 300, "controllm_block_size": 24, "controllm_batch_size": 8, "validate_every": 50,
        "checkpoint_every": 300, "eval_controllm_blocks": 8, "top_k_blocks": 2, "keep_step_masks": False,
    })
    args = (taught["targetkg"], taught["controlkg"], [taught["text"]])
    mask_path = train_mask(taught["model"], *args, taught["root"] / "run", config, seed=0, progress=False)
    learned = evaluate_mask(taught["model"], mask_path, *args, config)

    from kcs.maskfile import load_mask
    mask = load_mask(mask_path)
    random_path = taught["root"] / "random.safetensors"
    save_mask(random_path, random_like(mask, seed=0), base_model=taught["model"], model_type="gpt2")
    baseline = evaluate_mask(taught["model"], random_path, *args, config)

    t, c, lm = learned["targetkg"], learned["controlkg"], learned["controllm"]
    print(f"sparsity {learned['sparsity']:.4f}; target {t['ppl_full']:.2f}->{t['ppl_remaining']:.2f}; "
          f"control {c['ppl_full']:.2f}->{c['ppl_remaining']:.2f}; text {lm['ppl_full']:.2f}->{lm['ppl_remaining']:.2f}; "
          f"random target {baseline['targetkg']['ppl_remaining']:.2f}")
    assert t["ppl_full"] < 3.0  # the facts were really learned
    assert learned["sparsity"] > 0.8  # a small subnetwork (a tiny model has little room to spare)
    assert t["ppl_remaining"] > 5 * t["ppl_full"]  # the targeted facts are forgotten
    assert c["ppl_remaining"] < 1.5 * c["ppl_full"]  # the other facts are kept
    assert lm["ppl_full"] < 100  # the text was learned too (400-token vocabulary)
    assert abs(lm["relative_delta_ppl"]) < 0.3  # and barely moves
    assert baseline["sparsity"] == pytest.approx(learned["sparsity"])
    assert baseline["targetkg"]["relative_delta_ppl"] < 0.2 * t["relative_delta_ppl"]
