"""The offline WordNet multiple-choice task: linked questions, no leakage, valid distractors, determinism."""

from __future__ import annotations

import functools

import pytest

from kcs.data.paths import package_resource
from kcs.errors import KcsError
from kcs.kg import read_kg

BUILDING = package_resource("paper_kgs", "wordnet", "building.n.01.gpt2.jsonl")
LOCATION = package_resource("paper_kgs", "wordnet", "location.n.01.gpt2.jsonl")


@functools.lru_cache(maxsize=1)
def _wordnet():
    from kcs.data.wordnet_install import load_wordnet

    try:
        return load_wordnet()
    except KcsError as err:
        pytest.skip(f"WordNet 3.0 is not installed ({err}); run scripts/install_wordnet.sh")


@functools.lru_cache(maxsize=2)
def _built(seed: int = 0):
    from kcs.downstream.wordnet_task import build_task

    facts = read_kg(BUILDING) + read_kg(LOCATION)
    return facts, build_task(_wordnet(), facts, train_size=60, validation_size=30, n_choices=5, seed=seed)


def test_every_linked_fact_is_asked_in_validation_and_never_in_training():
    facts, (train, validation, counts) = _built()
    linked_val = {tuple(f) for q in validation for f in q.linked_facts}
    assert {f.triplet for f in facts} <= linked_val
    assert counts["validation_linked"] == len([q for q in validation if {tuple(f) for f in q.linked_facts} &
                                               {f.triplet for f in facts}])
    # region.n.01 and region.n.03 both read "A region is a kind of" -> "location": one shared question
    region = [q for q in validation if q.stem == "A region is a kind of"]
    assert len(region) == 1 and len(region[0].linked_facts) == 2
    assert len(validation) == 30 + counts["validation_linked"] and len(train) == 60
    # no training question asks about a linked head word, and train and validation share no head word
    linked_words = {q.concept for q in validation if {tuple(f) for f in q.linked_facts} & {f.triplet for f in facts}}
    assert not {q.concept for q in train} & linked_words
    assert not {q.concept for q in train} & {q.concept for q in validation}
    assert not {tuple(f) for q in train for f in q.linked_facts} & {f.triplet for f in facts}


def test_cabin_question_has_one_true_answer():
    from kcs.downstream.wordnet_task import _ancestor_words

    _, (_, validation, _) = _built()
    cabin = next(q for q in validation if q.linked_facts == [["cabin.n.02", "IsA", "house.n.01"]])
    assert cabin.stem == "A cabin is a kind of" and cabin.answer == "house"
    assert cabin.choices[cabin.answer_index] == "house" and len(set(cabin.choices)) == 5
    ancestors = _ancestor_words(_wordnet(), "cabin")
    assert {"house", "building", "structure"} <= ancestors
    for question in validation:
        wrong = [c for i, c in enumerate(question.choices) if i != question.answer_index]
        assert not set(wrong) & _ancestor_words(_wordnet(), question.concept), question.stem
        assert question.concept not in question.choices


def test_the_task_is_deterministic_per_seed_and_answers_are_spread():
    from kcs.downstream.wordnet_task import build_task

    _, (train, _, _) = _built(0)

    facts = read_kg(BUILDING) + read_kg(LOCATION)
    again = build_task(_wordnet(), facts, train_size=60, validation_size=30, n_choices=5, seed=0)
    assert [q.csqa_row() for q in again[0]] == [q.csqa_row() for q in train]
    other = build_task(_wordnet(), facts, train_size=60, validation_size=30, n_choices=5, seed=1)
    assert [q.id for q in other[0]] != [q.id for q in train]
    positions = {q.answer_index for q in train}
    assert len(positions) >= 4


def test_written_task_reads_back_through_the_csqa_reader_with_links(tmp_path):
    from kcs.downstream.mcqa import load_task, prepare
    from kcs.downstream.wordnet_task import write_task

    _, (train, validation, counts) = _built()
    write_task(tmp_path / "task", train, validation, {"counts": counts, "prompt_template": "{question}"})
    task = load_task(tmp_path / "task")
    assert task.prompt_template == "{question}"
    assert [q.id for q in task.validation] == [q.id for q in validation]
    cabin = next(q for q in task.validation if q.id == "cabin.n.02|IsA|house.n.01")
    assert cabin.question == "A cabin is a kind of" and cabin.linked_facts == (("cabin.n.02", "IsA", "house.n.01"),)
    prepared = prepare(task, read_kg(BUILDING), read_kg(LOCATION))
    assert len(prepared.groups["linked"]) == len(read_kg(BUILDING))
    assert prepared.counts["linked_questions_in_train"] == 0
    assert sorted(prepared.groups["other_linked"] + prepared.groups["unlinked"]) == sorted(prepared.groups["other"])


def test_unknown_synsets_in_a_linked_kg_are_user_errors():
    from kcs.downstream.wordnet_task import build_task
    from kcs.kg import Fact

    with pytest.raises(KcsError, match="unknown synset 'cabbin.n.02'"):
        build_task(_wordnet(), [Fact("cabbin.n.02", "IsA", "house.n.01", "A cabin is a", " house")], train_size=5,
                   validation_size=5)
