"""The offline stand-in for CommonsenseQA: a multiple-choice hypernymy task built from WordNet 3.0.

Each question asks for the hypernym of a noun: "A cabin is a kind of" with choices such as
house / vehicle / fruit / emotion / tool; it is linked to the fact (cabin.n.02, IsA, house.n.01)
the way a CommonsenseQA question is linked to the ConceptNet facts extracted for it.

- Every fact of the linked KGs (e.g. the demo's WordNet TargetKGs) becomes one validation question
  (facts asking the same question with the same answer share it). These are the questions whose
  knowledge a removal may take away.
- The other validation questions and all training questions are random noun hypernym edges whose
  head word is common (SemCor count >= `min_count`), whose head is that word's first (most
  frequent) sense, and whose head and tail are plain lower-case words. Each head word is asked
  once in the whole task.
- Leakage: no training question asks about a head word of a linked fact (so neither the linked facts
  nor the same question about another sense are trained on), and train and validation share no
  head word. Training questions may still have a linked fact's tail as their answer
  ("A bungalow is a kind of house"): related, not identical, knowledge, as in CommonsenseQA.
- Distractors: surface forms of other hypernyms in the task, preferring those in the same WordNet
  lexicographer file as the answer (harder), never a word that names an ancestor of any noun sense
  of the head word (so no distractor is also a true answer), never the head word itself.
Everything is deterministic for a seed and a WordNet version. Files use CommonsenseQA's local
layout (`train_rand_split.jsonl`, `dev_rand_split.jsonl`) plus a `linked_facts` field per question.
"""

from __future__ import annotations

import functools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from kcs.errors import KcsError
from kcs.kg import Fact

LABELS = "ABCDEFGHIJ"
PROMPT_TEMPLATE = "{question}"  # the stem is already a sentence start: "A cabin is a kind of" + " house"
_PLAIN = re.compile(r"^[a-z][a-z]+( [a-z]+)?$")


@dataclass
class WordNetQuestion:
    id: str
    stem: str
    concept: str
    answer: str
    choices: list[str]
    answer_index: int
    linked_facts: list[list[str]]

    def csqa_row(self) -> dict:
        """CommonsenseQA's JSON Lines schema (+ linked_facts)."""
        return {
            "answerKey": LABELS[self.answer_index],
            "id": self.id,
            "question": {
                "question_concept": self.concept,
                "choices": [{"label": LABELS[i], "text": c} for i, c in enumerate(self.choices)],
                "stem": self.stem,
            },
            "linked_facts": self.linked_facts,
        }


def _surface(synset) -> str:
    from kcs.data.wordnet import surface

    return surface(synset)


def stem_for(head_word: str) -> str:
    article = "An" if head_word[0] in "aeiou" else "A"
    return f"{article} {head_word} is a kind of"


def _ancestor_words(wn, head_word: str) -> set[str]:
    """Every lemma (spaces for underscores) of every ancestor of every noun sense of `head_word`."""
    words: set[str] = set()
    for sense in wn.synsets(head_word.replace(" ", "_"), pos="n"):
        for ancestor in sense.closure(lambda s: s.hypernyms() + s.instance_hypernyms()):
            words.update(lemma.name().replace("_", " ").lower() for lemma in ancestor.lemmas())
    return words


def _head_words(wn, head_word: str) -> set[str]:
    words = {head_word}
    for sense in wn.synsets(head_word.replace(" ", "_"), pos="n"):
        words.update(lemma.name().replace("_", " ").lower() for lemma in sense.lemmas())
    return words


@functools.lru_cache(maxsize=4)
def sense_counts(wn) -> dict[str, int]:
    """SemCor tag counts by sense key, read once from WordNet's `cntlist.rev` (the file behind
    nltk's `Lemma.count()`, which searches it anew on every call: too slow for every noun)."""
    counts: dict[str, int] = {}
    try:
        handle = wn.open("cntlist.rev")
    except (OSError, LookupError):
        raise KcsError("this WordNet install has no cntlist.rev (word frequencies); reinstall it with "
                       "scripts/install_wordnet.sh, or build the task with --min-count 0") from None
    with handle:
        for line in handle:
            key, _, count = line.split()
            counts[key] = int(count)
    return counts


@functools.lru_cache(maxsize=8)
def candidate_edges(wn, min_count: int) -> tuple[tuple[str, str], ...]:
    """(head, tail) synset ids of plain-word noun hypernym edges with a common head word (sorted).

    The head must be its word's first (most frequent) noun sense, so that the question
    "A bass is a kind of" asks about the sense a reader (or a language model) thinks of first.
    """
    counts = sense_counts(wn) if min_count > 0 else {}
    edges = []
    for synset in wn.all_synsets("n"):
        head_word = _surface(synset)
        if not _PLAIN.match(head_word) or not synset.hypernyms():
            continue
        if min_count > 0 and counts.get(synset.lemmas()[0].key(), 0) < min_count:
            continue
        if wn.synsets(head_word.replace(" ", "_"), pos="n")[0] != synset:
            continue
        for hypernym in synset.hypernyms():
            if _PLAIN.match(_surface(hypernym)):
                edges.append((synset.name(), hypernym.name()))
    return tuple(sorted(edges))


class _Distractors:
    def __init__(self, wn, tails: Sequence[str]):
        self.by_lexname: dict[str, list[str]] = {}
        self.all_words: list[str] = []
        seen: set[str] = set()
        for name in sorted(set(tails)):
            synset = wn.synset(name)
            word = _surface(synset)
            if not _PLAIN.match(word):
                continue
            self.by_lexname.setdefault(synset.lexname(), [])
            if word not in self.by_lexname[synset.lexname()]:
                self.by_lexname[synset.lexname()].append(word)
            if word not in seen:
                seen.add(word)
                self.all_words.append(word)

    def sample(self, rng: random.Random, lexname: str, k: int, banned: set[str]) -> list[str]:
        chosen: list[str] = []
        for pool in (self.by_lexname.get(lexname, []), self.all_words):
            options = [w for w in pool if w not in banned and w not in chosen]
            rng.shuffle(options)
            chosen.extend(options[: k - len(chosen)])
            if len(chosen) == k:
                return chosen
        raise KcsError(f"not enough distractor words for a {k + 1}-choice question; lower --choices")


def _make_question(wn, rng: random.Random, distractors: _Distractors, head: str, tail: str,
                   relation: str, n_choices: int) -> WordNetQuestion:
    head_syn, tail_syn = wn.synset(head), wn.synset(tail)
    head_word, answer = _surface(head_syn), _surface(tail_syn)
    banned = _ancestor_words(wn, head_word) | _head_words(wn, head_word) | {answer.lower()}
    choices = [answer] + distractors.sample(rng, tail_syn.lexname(), n_choices - 1, banned)
    rng.shuffle(choices)
    return WordNetQuestion(f"{head}|{relation}|{tail}", stem_for(head_word), head_word, answer, choices,
                           choices.index(answer), [[head, relation, tail]])


def build_task(wn, linked_facts: Sequence[Fact], *, train_size: int = 300, validation_size: int = 150,
               n_choices: int = 5, min_count: int = 5, seed: int = 0,
               relation: str = "IsA") -> tuple[list[WordNetQuestion], list[WordNetQuestion], dict]:
    """(train, validation, counts). `validation_size` counts the questions not linked to a fact."""
    from kcs.data.wordnet import get_synset

    if not 2 <= n_choices <= len(LABELS):
        raise KcsError(f"--choices must be between 2 and {len(LABELS)}, got {n_choices}")
    rng = random.Random(seed)
    for fact in linked_facts:
        for name in (fact.head, fact.tail):
            get_synset(wn, name, where=f"linked fact ({fact.head}, {fact.relation}, {fact.tail})")
    candidates = candidate_edges(wn, min_count)
    distractors = _Distractors(wn, [t for _, t in candidates] + [f.tail for f in linked_facts])

    # linked questions: one per (stem, answer); facts asking the same thing share a question
    linked: dict[tuple[str, str], WordNetQuestion] = {}
    for fact in linked_facts:
        key = (_surface(wn.synset(fact.head)), _surface(wn.synset(fact.tail)))
        if key in linked:
            if [fact.head, fact.relation, fact.tail] not in linked[key].linked_facts:
                linked[key].linked_facts.append([fact.head, fact.relation, fact.tail])
            continue
        linked[key] = _make_question(wn, rng, distractors, fact.head, fact.tail, fact.relation, n_choices)

    # the rest: distinct head words, none asked by a linked question
    used_words = {head_word for head_word, _ in linked}
    linked_triplets = {fact.triplet for fact in linked_facts}
    by_word: dict[str, list[tuple[str, str]]] = {}
    for head, tail in candidates:
        word = _surface(wn.synset(head))
        if word in used_words or (head, relation, tail) in linked_triplets:
            continue
        by_word.setdefault(word, []).append((head, tail))
    words = sorted(by_word)
    needed = train_size + validation_size
    if needed > len(words):
        raise KcsError(f"only {len(words)} usable head words (min_count={min_count}); lower --train-size/"
                       f"--validation-size (asked {needed}) or --min-count")
    chosen = rng.sample(words, needed)
    sampled = [_make_question(wn, rng, distractors, *rng.choice(by_word[w]), relation, n_choices) for w in chosen]
    train = sorted(sampled[:train_size], key=lambda q: q.id)
    validation = sorted(list(linked.values()) + sampled[train_size:], key=lambda q: q.id)
    counts = {"train": len(train), "validation": len(validation), "validation_linked": len(linked),
              "linked_facts": len(linked_facts), "candidate_head_words": len(words)}
    return train, validation, counts


def write_task(out_dir: str | Path, train: Sequence[WordNetQuestion], validation: Sequence[WordNetQuestion],
               info: dict) -> Path:
    """The task folder, atomically: CSQA-layout split files and task.json (settings, counts, provenance)."""
    from kcs.atomic import atomic_dir
    from kcs.downstream.mcqa import SPLIT_FILES

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for split, questions in (("train", train), ("validation", validation)):
            with (tmp / SPLIT_FILES[split]).open("w", encoding="utf-8") as handle:
                for q in questions:
                    handle.write(json.dumps(q.csqa_row(), ensure_ascii=False) + "\n")
        (tmp / "task.json").write_text(json.dumps(info, indent=2) + "\n")
    return out_dir
