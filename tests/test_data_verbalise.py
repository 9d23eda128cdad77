"""Templates, sentence perplexity and verbalisation (tiny random GPT-2 with the real GPT-2 tokenizer)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from kcs.data import paper
from kcs.data.scoring import sentence_perplexities
from kcs.data.templates import candidates_for, expand, indefinite_article, is_plural, load_templates
from kcs.data.triplets import Triplet
from kcs.data.verbalise import verbalise
from kcs.errors import KcsError
from kcs.kg import read_kg

from data_fixtures import WORDNET_ROOTS, run_cli

CONCEPTNET_RELATIONS = {"IsA", "HasProperty", "UsedFor", "AtLocation", "Causes", "CapableOf", "HasPrerequisite",
                        "PartOf", "ReceivesAction", "HasSubevent", "HasA", "CausesDesire", "MadeOf",
                        "MotivatedByGoal", "Desires", "NotDesires"}


def test_articles_and_number():
    assert [indefinite_article(w) for w in ("apple", "cabin", "hour", "university", "one-way street", "eel")] == [
        "an", "a", "an", "a", "a", "an"]
    assert [is_plural(w) for w in ("seeds", "waves", "glass", "bus", "news", "people", "fish", "vitamins",
                                   "drawstring bag", "physics")] == [
        True, True, False, False, False, True, False, True, False, False]


def test_wordnet_templates_give_the_authors_22_variants():
    sentences = {c.sentence for c in candidates_for(load_templates("wordnet"), "IsA", "structure", "artifact")}
    assert len(sentences) == 22
    assert {"A structure is an artifact", " Structure is artifact", " A structure is a sort of artifact",
            "Structure is a hyponym of artifact"} <= sentences
    assert "A structure is a hyponym of artifact" not in sentences  # the authors' hyponym template has no article


def test_wordnet_templates_cover_every_authors_sentence():
    """Each of the authors' WordNet sentences (all sizes, paraphrases too) is one of our candidates."""
    templates = load_templates("wordnet")
    for root in WORDNET_ROOTS:
        for model in paper.GPT2_SIZES:
            for fact in read_kg(paper.paper_kg_path(root, model)):
                head = fact.head.rsplit(".", 2)[0].replace("_", " ")
                ours = {c.sentence for c in candidates_for(templates, "IsA", head, fact.target.strip())}
                assert fact.sentence in ours and {p.sentence for p in fact.paraphrases} <= ours, fact.head


def test_conceptnet_templates_cover_all_relations_in_the_data():
    templates = load_templates("conceptnet")
    assert set(templates.relations) == CONCEPTNET_RELATIONS
    in_data = {f.relation for name in ("fruit", "sun", "swimming", "csqa", "conceptnet-controlkg-train",
                                       "csqa-controlkg-train") for f in read_kg(paper.paper_kg_path(name))}
    assert in_data <= set(templates.relations)
    for relation, group in templates.relations.items():
        for candidate in candidates_for(templates, relation, "seeds", "pod") + candidates_for(
                templates, relation, "an apple", "orange"):
            assert candidate.target in (" pod", " orange") and not candidate.prompt.endswith(" ")


def test_number_and_articles_in_conceptnet_sentences():
    templates = load_templates("conceptnet")
    plural = {c.sentence for c in candidates_for(templates, "AtLocation", "seeds", "pod")}
    assert "Seeds are usually found in a pod" in plural and not any(s.startswith("A seeds") for s in plural)
    singular = {c.sentence for c in candidates_for(templates, "HasA", "jar", "lid")}
    assert {"A jar has a lid", "Jar has lid", " A jar contains a lid"} <= singular
    assert {c.sentence for c in candidates_for(templates, "Causes", "eating", "appetite")} >= {
        "Eating causes an appetite", "An eating can lead to appetite"}


@pytest.mark.parametrize("pattern, message", [
    ("{H} is a {T} indeed", "must end with"),
    ("{H} is a{T}", "space before the tail"),
    ("{H} {is} a {T}", "unknown slot"),
    ("{T} is {H} and {T}", "exactly one"),
])
def test_bad_template_files_are_refused(tmp_path, pattern, message):
    path = tmp_path / "t.yaml"
    path.write_text(json.dumps({"relations": {"Likes": [{"name": "x", "pattern": pattern}]}}))
    with pytest.raises(KcsError, match=message):
        load_templates("conceptnet", path)


def test_a_user_template_file_adds_a_relation(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("relations:\n  Likes:\n    - {name: likes, pattern: \"{H} {likes|like} {a}{T}\"}\n")
    templates = load_templates("conceptnet", path)
    assert "Likes" in templates.relations and "IsA" in templates.relations
    assert {c.sentence for c in expand(templates.relations["Likes"][0], "cats", "fish", plural=True,
                                       leading_space=False)} == {"Cats like a fish", "Cats like fish"}


def manual_perplexity(model, tokenizer, sentence: str) -> float:
    ids = torch.tensor([tokenizer(sentence)["input_ids"]])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss  # Hugging Face's mean NLL of tokens 2..n
    return math.exp(loss.item())


def test_sentence_perplexities_match_the_hugging_face_loss_whatever_the_batching(tiny_model):
    model, tokenizer = tiny_model
    sentences = ["A cabin is a type of house", " Seeds are usually found in a pod, far away from the sea",
                 "A dog is an animal"]
    expected = [manual_perplexity(model, tokenizer, s) for s in sentences]
    for batch_size in (1, 2, 32):
        got = sentence_perplexities(model, tokenizer, sentences, batch_size=batch_size)
        assert got == pytest.approx(expected, rel=1e-4)
    with pytest.raises(KcsError, match="at least 2 tokens"):
        sentence_perplexities(model, tokenizer, ["Fish"])


def test_the_best_template_has_the_lowest_perplexity(tiny_model, wordnet_dir):
    model, tokenizer = tiny_model
    triplets = [Triplet("cabin.n.02", "IsA", "house.n.01"), Triplet("cafe.n.01", "IsA", "restaurant.n.01")]
    facts = verbalise(triplets, model, tokenizer, wordnet_dir=wordnet_dir, model_name="tiny")
    for fact in facts:
        everything = [fact.sentence] + [p.sentence for p in fact.paraphrases]
        scores = sentence_perplexities(model, tokenizer, everything)
        assert scores[0] == pytest.approx(min(scores), rel=1e-4)
        assert fact.extra["perplexity"] == pytest.approx(scores[0], rel=1e-4)
        assert fact.target == {"cabin.n.02": " house", "cafe.n.01": " restaurant"}[fact.head]
        chosen = fact.extra["template"]
        # paraphrases = the other templates' sentences: 22 minus the chosen template's variants
        assert len(fact.paraphrases) == 22 - {"is": 8, "hyponym-of": 2}.get(chosen, 4)
        assert fact.extra["kind"] == "wordnet" and fact.extra["verbalised_with"] == "tiny"


def test_conceptnet_words_are_verbalised_as_written(tiny_model):
    model, tokenizer = tiny_model
    facts = verbalise([Triplet("fish", "AtLocation", "aquarium"), Triplet("waves", "CausesDesire", "surf")],
                      model, tokenizer)
    assert [f.target for f in facts] == [" aquarium", " surf"]
    assert facts[0].extra["kind"] == "conceptnet" and facts[1].sentence.lstrip().startswith("Waves")


def test_verbalise_command_writes_a_kg_file_with_provenance(tmp_path, tiny_model_folder, wordnet_dir):
    triplets = tmp_path / "T.tsv"
    triplets.write_text("head\trelation\ttail\ncabin.n.02\tIsA\thouse.n.01\nhostel.n.01\tIsA\thotel.n.01\n")
    out = tmp_path / "T.kg.jsonl"
    assert run_cli("verbalise", "--triplets", triplets, "--model", tiny_model_folder, "--out", out,
                   "--wordnet-dir", wordnet_dir, "--device", "cpu") == 0
    facts = read_kg(out)
    assert [(f.head, f.tail, f.target) for f in facts] == [("cabin.n.02", "house.n.01", " house"),
                                                          ("hostel.n.01", "hotel.n.01", " hotel")]
    provenance = json.loads((tmp_path / "T.kg.jsonl.provenance.json").read_text())
    assert provenance["model"] == str(tiny_model_folder) and provenance["kind"] == "wordnet"
    # A KG file is a triplet file: re-verbalising the shipped paper KG for another model works.
    again = tmp_path / "building.jsonl"
    assert run_cli("verbalise", "--triplets", paper.paper_kg_path("building.n.01"), "--model", tiny_model_folder,
                   "--out", again, "--wordnet-dir", wordnet_dir, "--device", "cpu") == 0
    rebuilt = read_kg(again)
    assert [f.triplet for f in rebuilt] == [f.triplet for f in read_kg(paper.paper_kg_path("building.n.01"))]
    assert rebuilt[0].extra["source"] == "paper-data/wordnet/targetkg/building.n.01_best_format.json"
