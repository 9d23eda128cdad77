"""`kcs knowledge`: per-fact rank/probability and per-KG perplexity of the full model."""

import csv
import json
import math
import random
import subprocess
import sys

import pytest
import torch

from kcs.cli import main
from kcs.encoding import encode_verbalisations
from kcs.evaluation import kg_statistics
from kcs.kg import read_kg
from kcs.knowledge import as_masked_lm, fact_knowledge, kg_knowledge, rank_order, vocabulary_size
from kcs.masking import MaskedLM
from kcs.models import load_model

from core_fixtures import ANIMALS, FILLER, KINDS, fact, write_jsonl


def _direct(model, tokenizer, facts):
    """Rank (0-based), probability and NLL of each fact's last target token, straight from HF logits."""
    out = []
    for f in facts:
        ids = tokenizer(f.sentence)["input_ids"]
        prompt_len = len(tokenizer(f.prompt)["input_ids"])
        assert len(ids) > prompt_len  # the sentence ends with its target
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, len(ids) - 2].double()
        gold = ids[-1]
        log_p = torch.log_softmax(logits, -1)[gold].item()
        out.append({"rank": int((logits > logits[gold]).sum()), "prob": math.exp(log_p), "nll": -log_p, "gold": gold})
    return out


def test_ranks_and_probabilities_match_the_logits(tiny_model_dir, tiny_data):
    model, tokenizer = load_model(tiny_model_dir)
    facts = read_kg(tiny_data["controlkg"])
    rows = fact_knowledge(model, tokenizer, facts, batch_size=3)  # padded batches of 3, 3, 2
    direct = _direct(model, tokenizer, facts)
    assert len(rows) == len(facts)
    for row, f, d in zip(rows, facts, direct):
        assert (row["head"], row["relation"], row["tail"], row["sentence"]) == (f.head, f.relation, f.tail, f.sentence)
        assert row["gold_token_id"] == d["gold"]
        assert row["rank"] == d["rank"]
        assert row["prob"] == pytest.approx(d["prob"], rel=1e-4)
        assert row["nll"] == pytest.approx(d["nll"], rel=1e-4)
        assert row["logprob"] == pytest.approx(-row["nll"])
        assert 0 <= row["rank"] < vocabulary_size(as_masked_lm(model))


def test_kg_ppl_is_the_evaluations_and_summary_is_consistent(tiny_gpt2_dir, tiny_data):
    model, tokenizer = load_model(tiny_gpt2_dir)
    facts = read_kg(tiny_data["controlkg"])
    lm = MaskedLM(model, None).eval()
    for batch_size in (3, 250):
        summary = kg_knowledge(lm, tokenizer, facts, batch_size=batch_size, with_facts=True)
        stats = kg_statistics(lm, ["full"], encode_verbalisations(facts, tokenizer), batch_size)["full"]
        assert summary["ppl"] == pytest.approx(stats["ppl"], rel=1e-9)
        # the paper's definition, from logits computed without kcs: mean over batches of exp(mean NLL)
        nll = [d["nll"] for d in _direct(model, tokenizer, facts)]
        batches = [nll[i:i + batch_size] for i in range(0, len(nll), batch_size)]
        assert summary["ppl"] == pytest.approx(sum(math.exp(sum(b) / len(b)) for b in batches) / len(batches), rel=1e-4)
        ranks = sorted(row["rank"] for row in summary["facts"])
        assert summary["n_facts"] == 8 and summary["batch_size"] == batch_size
        assert summary["uniform_ppl"] == model.config.vocab_size == 320
        assert summary["ppl_over_uniform"] == pytest.approx(summary["ppl"] / 320)
        assert summary["median_rank"] == (ranks[3] + ranks[4]) / 2
        assert summary["hits_at_1"] == sum(r < 1 for r in ranks) / 8
        assert 0 <= summary["hits_at_1"] <= summary["hits_at_10"] <= 1
        assert summary["mean_p"] == pytest.approx(sum(row["prob"] for row in summary["facts"]) / 8)
    # a plain HF model and its MaskedLM give the same report; batch size < 1 is refused
    assert kg_knowledge(model, tokenizer, facts, 3)["ppl"] == pytest.approx(kg_knowledge(lm, tokenizer, facts, 3)["ppl"])
    from kcs.errors import KcsError
    with pytest.raises(KcsError, match="batch size"):
        kg_knowledge(model, tokenizer, facts, 0)


def test_rank_order():
    summaries = [{"ppl_over_uniform": 0.5, "hits_at_10": 0.1}, {"ppl_over_uniform": 0.1, "hits_at_10": 0.9},
                 {"ppl_over_uniform": 0.5, "hits_at_10": 0.5}]
    assert rank_order(summaries, None) == [0, 1, 2]
    assert rank_order(summaries, "ppl_over_uniform") == [1, 0, 2]  # ties keep the given order
    assert rank_order(summaries, "hits_at_10") == [1, 2, 0]


@pytest.fixture(scope="module")
def known_and_shuffled(tiny_gpt2_dir, tmp_path_factory):
    """The tiny model briefly trained on 12 facts, the facts, and the same facts with random tails."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("knowledge")
    facts = [fact(a, KINDS[i % len(KINDS)]) for i, a in enumerate(ANIMALS)]
    rng = random.Random(0)
    shuffled = [{**f, "tail": w, "target": f" {w}"} for f, w in zip(facts, rng.sample(FILLER, len(facts)))]
    known_path, shuffled_path = write_jsonl(root / "known.jsonl", facts), write_jsonl(root / "shuffled.jsonl", shuffled)

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    model.eval()  # no dropout; gradients still flow
    batch = tokenizer([f["prompt"] + f["target"] for f in facts], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimiser.step()
    trained = root / "trained"
    model.save_pretrained(trained)
    tokenizer.save_pretrained(trained)
    return trained, known_path, shuffled_path


def test_a_known_kg_ranks_above_a_shuffled_tail_kg(known_and_shuffled, tmp_path, capsys):
    trained, known, shuffled = known_and_shuffled
    out = tmp_path / "report.json"
    # given shuffled first, printed known first
    assert main(["knowledge", "--model", str(trained), "--kg", str(shuffled), "--kg", str(known),
                 "--batch-size", "5", "--out", str(out), "--rank-by", "ppl_over_uniform"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| KG | facts | ppl | uniform | ppl/uniform | median rank | hits@1 | hits@10 | mean p")
    assert [line.split(" | ")[0][2:] for line in table[2:]] == ["known", "shuffled"]
    report = json.loads(out.read_text())
    assert report["ranking"] == ["known", "shuffled"] and [k["name"] for k in report["kgs"]] == ["shuffled", "known"]
    known_s, shuffled_s = report["kgs"][1]["summary"], report["kgs"][0]["summary"]
    assert known_s["ppl_over_uniform"] < 0.1, table
    assert shuffled_s["ppl_over_uniform"] > 10 * known_s["ppl_over_uniform"], table
    assert known_s["hits_at_10"] > shuffled_s["hits_at_10"] and known_s["mean_p"] > shuffled_s["mean_p"]
    for s in (known_s, shuffled_s):
        assert s["hits_at_1"] <= s["hits_at_10"]
    # without --rank-by: the order given
    assert main(["knowledge", "--model", str(trained), "--kg", str(shuffled), "--kg", str(known),
                 "--batch-size", "5", "--out", str(out)]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0][2:] for line in table[2:]] == ["shuffled", "known"]


def _kcs(*args):
    return subprocess.run([sys.executable, "-m", "kcs", *map(str, args)], capture_output=True, text=True)


def test_cli_writes_json_and_csv(tiny_gpt2_dir, tiny_data, tmp_path):
    out, per_fact = tmp_path / "out" / "report.json", tmp_path / "facts.csv"
    res = _kcs("knowledge", "--model", tiny_gpt2_dir, "--kg", tiny_data["targetkg"], "--kg", tiny_data["controlkg"],
               "--batch-size", 3, "--device", "cpu", "--out", out, "--per-fact-csv", per_fact)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("| ")]
    assert len(lines) == 4 and lines[2].startswith("| target | 4 | ") and lines[3].startswith("| control | 8 | ")
    report = json.loads(out.read_text())
    assert [k["name"] for k in report["kgs"]] == ["target", "control"]
    assert [len(k["facts"]) for k in report["kgs"]] == [4, 8]
    assert report["kgs"][0]["summary"]["uniform_ppl"] == 320 and report["batch_size"] == 3
    from kcs.provenance import file_sha256
    assert report["provenance"]["inputs"]["kgs"][str(tiny_data["targetkg"])] == file_sha256(tiny_data["targetkg"])
    assert report["provenance"]["model"] == str(tiny_gpt2_dir) and report["provenance"]["versions"]["torch"]
    with per_fact.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and [r["kg"] for r in rows] == ["target"] * 4 + ["control"] * 8
    assert rows[0]["head"] == "dog" and int(rows[0]["rank"]) == report["kgs"][0]["facts"][0]["rank"]
    assert float(rows[0]["prob"]) == pytest.approx(report["kgs"][0]["facts"][0]["prob"])
    assert not list(out.parent.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_bad_input_exits_2_naming_the_file_and_writes_nothing(tiny_gpt2_dir, tiny_data, tmp_path, capsys):
    out, per_fact = tmp_path / "report.json", tmp_path / "facts.csv"
    missing = tmp_path / "no_such_kg.jsonl"
    res = _kcs("knowledge", "--model", tiny_gpt2_dir, "--kg", tiny_data["targetkg"], "--kg", missing,
               "--out", out, "--per-fact-csv", per_fact)
    assert res.returncode == 2 and f"{missing}: KG file not found" in res.stderr
    assert not out.exists() and not per_fact.exists()

    def fails(*args):
        code = main(["knowledge", *map(str, args), "--out", str(out), "--per-fact-csv", str(per_fact)])
        return code, capsys.readouterr().err

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, err = fails("--model", tiny_gpt2_dir, "--kg", empty)
    assert code == 2 and f"{empty}: the KG file holds no facts" in err
    no_model = tmp_path / "no_such_model"
    code, err = fails("--model", no_model, "--kg", tiny_data["targetkg"])
    assert code == 2 and f"{no_model}: model folder not found" in err
    not_a_model = tmp_path / "not_a_model"
    not_a_model.mkdir()
    code, err = fails("--model", not_a_model, "--kg", tiny_data["targetkg"])
    assert code == 2 and f"{not_a_model}: not a model folder" in err
    bad_line = write_jsonl(tmp_path / "bad_line.jsonl", [fact("dog", "animal"), {**fact("cat", "pet"), "target": " "}])
    code, err = fails("--model", tiny_gpt2_dir, "--kg", bad_line)
    assert code == 2 and f"{bad_line}:2: field 'target' is empty" in err
    code, err = fails("--model", tiny_gpt2_dir, "--kg", tiny_data["targetkg"], "--batch-size", 0)
    assert code == 2 and "--batch-size" in err
    assert not out.exists() and not per_fact.exists()
