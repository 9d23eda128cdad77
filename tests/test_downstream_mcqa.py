"""CommonsenseQA loading from local files, question-to-fact linking, disjoint and complete groups."""

from __future__ import annotations

import json

import pytest

from kcs.downstream.mcqa import MCQuestion, MCTask, link_questions, load_task, prepare, split_groups
from kcs.errors import KcsError
from kcs.kg import Fact, read_kg

from downstream_fixtures import CSQA1_KG, CSQA2_KG, CSQA_LOCAL, toy_questions


def test_csqa_loads_from_local_original_files():
    task = load_task(CSQA_LOCAL)
    assert [len(task.train), len(task.validation)] == [12, 8]
    first = task.validation[0]
    assert first.id == "d01"
    assert first.question == "Where would you put a plate after dinner?"
    assert first.choices == ("sink", "bed", "car", "tree", "lamp") and first.answer_index == 0
    assert first.labels == ("A", "B", "C", "D", "E")
    honey = next(q for q in task.validation if q.id == "d02")
    assert honey.choices[honey.answer_index] == "honey"
    assert task.sources["validation"].endswith("dev_rand_split.jsonl")


def test_explicit_split_files_override_the_folder(tmp_path):
    rows = (CSQA_LOCAL / "dev_rand_split.jsonl").read_text().splitlines()[:3]
    small = tmp_path / "dev_small.jsonl"
    small.write_text("\n".join(rows) + "\n")
    task = load_task(CSQA_LOCAL, validation=small)
    assert [q.id for q in task.validation] == ["d01", "d02", "d03"]
    assert len(task.train) == 12


def test_overlapping_splits_and_unlabelled_questions_are_refused(tmp_path):
    with pytest.raises(KcsError, match="in both the train and the validation split"):
        load_task(train=CSQA_LOCAL / "train_rand_split.jsonl", validation=CSQA_LOCAL / "train_rand_split.jsonl")
    row = json.loads((CSQA_LOCAL / "dev_rand_split.jsonl").read_text().splitlines()[0])
    del row["answerKey"]
    unlabelled = tmp_path / "dev.jsonl"
    unlabelled.write_text(json.dumps(row) + "\n")
    with pytest.raises(KcsError, match="has no answer"):
        load_task(CSQA_LOCAL, validation=unlabelled)


def test_linking_by_question_id_is_exact():
    task = load_task(CSQA_LOCAL)
    facts = read_kg(CSQA1_KG)
    links = link_questions(task.train + task.validation, facts)
    assert links.by_question == {
        "d02": [("bee", "CapableOf", "honey")],
        "d04": [("key", "UsedFor", "open a door")],
        "d05": [("clock", "UsedFor", "telling time")],
        "t06": [("fish", "AtLocation", "sea")],
    }
    assert links.unmatched == []


def test_linking_by_triplet_and_unmatched_facts():
    questions = [MCQuestion("a", "A cabin is a kind of", ("house", "car"), 0,
                            linked_facts=(("cabin.n.02", "IsA", "house.n.01"),)),
                 MCQuestion("b", "A hostel is a kind of", ("hotel", "car"), 0,
                            linked_facts=(("hostel.n.01", "IsA", "hotel.n.01"),))]
    facts = [Fact("cabin.n.02", "IsA", "house.n.01", "A cabin is a", " house"),
             Fact("cafe.n.01", "IsA", "restaurant.n.01", "A cafe is a", " restaurant"),
             Fact("cabin.n.02", "IsA", "house.n.12", "A cabin is a", " house")]  # same words, other synset
    links = link_questions(questions, facts)
    assert links.by_question == {"a": [("cabin.n.02", "IsA", "house.n.01")]}
    assert links.unmatched == [("cafe.n.01", "IsA", "restaurant.n.01"), ("cabin.n.02", "IsA", "house.n.12")]


def test_the_authors_id_field_also_links():
    fact = Fact("bee", "CapableOf", "honey", "Bees make", " honey", extra={"id": "d02"})
    assert link_questions(load_task(CSQA_LOCAL).validation, [fact]).question_ids == {"d02"}


@pytest.mark.parametrize("policy", ["holdout", "drop", "keep"])
def test_groups_are_disjoint_and_complete_under_each_leakage_policy(policy):
    task = load_task(CSQA_LOCAL)
    prepared = prepare(task, read_kg(CSQA1_KG), read_kg(CSQA2_KG), linked_in_train=policy)
    eval_ids = [q.id for q in prepared.evaluation]
    groups = prepared.groups
    assert sorted(groups["linked"] + groups["other"]) == sorted(eval_ids)
    assert not set(groups["linked"]) & set(groups["other"])
    assert sorted(groups["other_linked"] + groups["unlinked"]) == sorted(groups["other"])
    assert not set(groups["other_linked"]) & set(groups["unlinked"])
    assert set(groups["other_linked"]) == {"d03", "d07"}
    train_ids = {q.id for q in prepared.train}
    assert not train_ids & set(eval_ids)
    if policy == "holdout":  # t06 needs a removed fact: moved from training to the evaluation
        assert groups["linked"] == ["d02", "d04", "d05", "t06"] and "t06" not in train_ids
    elif policy == "drop":
        assert groups["linked"] == ["d02", "d04", "d05"] and "t06" not in train_ids
    else:
        assert groups["linked"] == ["d02", "d04", "d05"] and "t06" in train_ids
    assert prepared.counts["linked_questions_in_train"] == 1
    assert set(prepared.links) == set(groups["linked"])


def test_without_control_facts_there_are_two_groups():
    prepared = prepare(load_task(CSQA_LOCAL), read_kg(CSQA2_KG))
    assert set(prepared.groups) == {"linked", "other"}
    assert prepared.groups["linked"] == ["d03", "d07"]
    assert len(prepared.groups["other"]) == 6


def test_a_kg_unrelated_to_the_task_is_a_user_error():
    task = MCTask(toy_questions(4, prefix="t"), toy_questions(4, prefix="v"), {"train": "x", "validation": "y"})
    with pytest.raises(KcsError, match="none of the 1 removed facts"):
        prepare(task, [Fact("a", "IsA", "b", "An a is a", " b", extra={"question_id": "nope"})])


def test_split_groups_keeps_task_order_and_prefers_linked():
    questions = toy_questions(5)
    groups = split_groups(questions, {"q3", "q1"}, {"q1", "q2"})
    assert groups == {"linked": ["q1", "q3"], "other": ["q0", "q2", "q4"], "other_linked": ["q2"],
                      "unlinked": ["q0", "q4"]}


def test_shipped_csqa_halves_link_by_question_id():
    """The authors' csqa1/csqa2 KGs as shipped by kcs: every fact carries a question id, the halves are disjoint."""
    from kcs.data.paths import package_resource

    half1, half2 = (read_kg(package_resource("paper_kgs", "csqa", f"csqa{i}.jsonl")) for i in (1, 2))
    ids1 = {f.extra["question_id"] for f in half1}
    ids2 = {f.extra["question_id"] for f in half2}
    assert len(half1) == 181 and len(half2) == 182
    assert len(ids1) == 181 and len(ids2) == 182 and not ids1 & ids2
    questions = [MCQuestion(qid, "q?", ("a", "b"), 0) for qid in sorted(ids1 | ids2)]
    links = link_questions(questions, half1)
    assert links.question_ids == ids1 and not links.unmatched
