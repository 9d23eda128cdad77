"""Multiple-choice questions, task files, linking questions to KG facts, evaluation groups.

A task is a folder in one of CommonsenseQA's layouts (e.g. `train_rand_split.jsonl`,
`dev_rand_split.jsonl`; read by `kcs.data.csqa.read_csqa`) or two explicit files. A question may
carry `linked_facts`, a list of `[head, relation, tail]` triplets it needs (the WordNet stand-in
writes them), and a task folder a `task.json` with its own `prompt_template`.

A question is linked to a KG fact when
- the fact's `question_id` (or `id`, the authors' CSQA field) equals the question's id (CommonsenseQA), or
- the fact's (head, relation, tail) is one of the question's `linked_facts` (the WordNet stand-in).

Groups of the evaluation set (disjoint and complete):
- `linked`: questions linked to a fact of the removed TargetKG(s);
- `other`: every other evaluation question; when control KGs are given (e.g. the other CSQA
  half) it is further split into `other_linked` (linked to a control fact) and `unlinked`.
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from kcs.config import FinetuneConfig
from kcs.errors import KcsError
from kcs.kg import Fact
from kcs.readers import read_json

Triplet = tuple[str, str, str]

SPLIT_FILES = {"train": "train_rand_split.jsonl", "validation": "dev_rand_split.jsonl"}
# the choices of FinetuneConfig.linked_in_train, defined there once
LINKED_IN_TRAIN_POLICIES = typing.get_args(FinetuneConfig.model_fields["linked_in_train"].annotation)


@dataclass(frozen=True)
class MCQuestion:
    id: str
    question: str
    choices: tuple[str, ...]
    answer_index: int
    labels: tuple[str, ...] = ()
    linked_facts: tuple[Triplet, ...] = ()

    @classmethod
    def from_record(cls, record: dict[str, Any], where: str) -> "MCQuestion":
        """From a `read_csqa` record ({id, question, choices, labels, answer_index}, + linked_facts)."""
        try:
            choices = tuple(str(c) for c in record["choices"])
            answer = int(record["answer_index"])
            qid = str(record["id"])
            question = str(record["question"])
        except (KeyError, TypeError, ValueError) as err:
            raise KcsError(f"{where}: malformed multiple-choice record ({err!r}); expected id, question, "
                           "choices, answer_index") from None
        if len(choices) < 2:
            raise KcsError(f"{where}: question {qid} has {len(choices)} choice(s); at least 2 are needed")
        if not 0 <= answer < len(choices):
            raise KcsError(f"{where}: question {qid} has answer_index {answer} outside its {len(choices)} choices")
        return cls(qid, question, choices, answer, tuple(record.get("labels") or ()),
                   parse_linked_facts(record.get("linked_facts", []), f"{where}: question {qid}"))


def parse_linked_facts(raw: Any, where: str) -> tuple[Triplet, ...]:
    if not isinstance(raw, list):
        raise KcsError(f"{where}: 'linked_facts' must be a list of [head, relation, tail] triplets")
    out = []
    for item in raw:
        if isinstance(item, dict):
            item = [item.get("head"), item.get("relation"), item.get("tail")]
        if not (isinstance(item, (list, tuple)) and len(item) == 3 and all(isinstance(x, str) for x in item)):
            raise KcsError(f"{where}: linked fact {item!r} is not a [head, relation, tail] triplet of strings")
        out.append(tuple(item))
    return tuple(out)


@dataclass
class MCTask:
    train: list[MCQuestion]
    validation: list[MCQuestion]
    sources: dict[str, str]
    prompt_template: str | None = None  # the task's own prompt (task.json), used unless the config sets one


def task_prompt_template(task: Path) -> str | None:
    """`prompt_template` from a task folder's task.json (written by `kcs build-mc-task`), if any."""
    info = task / "task.json"
    if not (task.is_dir() and info.is_file()):
        return None
    value = read_json(info, "task.json (written by `kcs build-mc-task`)").get("prompt_template")
    if value is not None and (not isinstance(value, str) or "{question}" not in value):
        raise KcsError(f"{info}: prompt_template must be a string containing '{{question}}'")
    return value


def _split_file(task: Path, split: str) -> Path | None:
    """The file `read_csqa` reads for `split` (for provenance; None for the hub's parquet layout)."""
    if task.is_file():
        return task
    from kcs.data.csqa import ORIGINAL_FILES

    return next((p for p in (task / f"{split}.jsonl", task / ORIGINAL_FILES[split]) if p.is_file()), None)


def read_split(path: str | os.PathLike, split: str) -> list[MCQuestion]:
    """One split of a task folder (CommonsenseQA layout) or file, through the data module's CSQA reader."""
    from kcs.data.csqa import read_csqa

    if split not in SPLIT_FILES:
        raise KcsError(f"unknown split '{split}'; use one of {', '.join(SPLIT_FILES)}")
    path = Path(path)
    questions = []
    for i, record in enumerate(read_csqa(path, split)):
        if record.get("answer_index") is None:
            raise KcsError(f"{path} ({split}): question {record.get('id')} has no answer; finetuning and evaluation "
                           "need labelled questions (CommonsenseQA's test split has none: use train and validation)")
        questions.append(MCQuestion.from_record(record, f"{path} ({split}, record {i + 1})"))
    return questions


def load_task(task: str | os.PathLike | None = None, *, train: str | os.PathLike | None = None,
              validation: str | os.PathLike | None = None) -> MCTask:
    """A task folder, or explicit train / validation files (which override the folder's)."""
    if task is None and (train is None or validation is None):
        raise KcsError("give a task folder (--task DIR) or both --train FILE and --validation FILE")
    train_src = Path(train) if train is not None else Path(task)
    val_src = Path(validation) if validation is not None else Path(task)
    for src in (train_src, val_src):
        if not src.exists():
            raise KcsError(f"{src}: task folder or file not found")
    task_obj = MCTask(read_split(train_src, "train"), read_split(val_src, "validation"),
                      {"train": str(_split_file(train_src, "train") or train_src),
                       "validation": str(_split_file(val_src, "validation") or val_src)},
                      task_prompt_template(val_src))
    overlap = {q.id for q in task_obj.train} & {q.id for q in task_obj.validation}
    if overlap:
        raise KcsError(f"{train_src} / {val_src}: {len(overlap)} question id(s) are in both the train and the "
                       f"validation split (e.g. {min(overlap)}); the splits must be disjoint")
    return task_obj


# -- linking -------------------------------------------------------------------------------------

def fact_question_id(fact: Fact) -> str | None:
    """The CommonsenseQA question a fact was extracted for (`question_id`; the authors' files say `id`)."""
    value = fact.extra.get("question_id", fact.extra.get("id"))
    return None if value is None else str(value)


@dataclass
class Links:
    """Which questions need which facts."""

    by_question: dict[str, list[Triplet]] = field(default_factory=dict)
    unmatched: list[Triplet] = field(default_factory=list)  # facts no question of the task needs

    @property
    def question_ids(self) -> set[str]:
        return set(self.by_question)


def link_questions(questions: Iterable[MCQuestion], facts: Sequence[Fact]) -> Links:
    """Link questions to facts by question id or by (head, relation, tail) (see the module docstring)."""
    questions = list(questions)
    by_id = {q.id: q for q in questions}
    by_triplet: dict[Triplet, list[str]] = {}
    for q in questions:
        for triplet in q.linked_facts:
            by_triplet.setdefault(triplet, []).append(q.id)
    links = Links()
    for fact in facts:
        matched = []
        qid = fact_question_id(fact)
        if qid is not None and qid in by_id:
            matched.append(qid)
        matched.extend(by_triplet.get(fact.triplet, []))
        if not matched:
            links.unmatched.append(fact.triplet)
        for qid in dict.fromkeys(matched):
            facts_of_q = links.by_question.setdefault(qid, [])
            if fact.triplet not in facts_of_q:
                facts_of_q.append(fact.triplet)
    return links


def split_groups(questions: Sequence[MCQuestion], linked_ids: set[str],
                 control_ids: set[str] | None = None) -> dict[str, list[str]]:
    """Question ids per evaluation group, in task order; `linked` wins over `other_linked`."""
    groups: dict[str, list[str]] = {"linked": [], "other": []}
    if control_ids is not None:
        groups.update(other_linked=[], unlinked=[])
    for q in questions:
        if q.id in linked_ids:
            groups["linked"].append(q.id)
            continue
        groups["other"].append(q.id)
        if control_ids is not None:
            groups["other_linked" if q.id in control_ids else "unlinked"].append(q.id)
    return groups


@dataclass
class PreparedTask:
    """Train and evaluation questions after the leakage policy, with the evaluation groups."""

    train: list[MCQuestion]
    evaluation: list[MCQuestion]
    groups: dict[str, list[str]]
    links: dict[str, list[Triplet]]  # evaluation question id -> removed facts it needs
    counts: dict[str, int]


def prepare(task: MCTask, removed_facts: Sequence[Fact], control_facts: Sequence[Fact] = (),
            linked_in_train: str = "holdout", require_linked: bool = True) -> PreparedTask:
    """Apply the leakage policy and build the groups.

    Questions linked to removed or control facts that sit in the train split would let finetuning
    see the evaluated knowledge: `holdout` moves them to the evaluation set, `drop` discards them,
    `keep` leaves them in training (and out of the evaluation).
    """
    if linked_in_train not in LINKED_IN_TRAIN_POLICIES:
        raise KcsError(f"linked_in_train must be one of {', '.join(LINKED_IN_TRAIN_POLICIES)}, "
                       f"got '{linked_in_train}'")
    all_questions = task.train + task.validation
    removed = link_questions(all_questions, removed_facts)
    control = link_questions(all_questions, control_facts) if control_facts else None
    needed = removed.question_ids | (control.question_ids if control else set())
    train_linked = [q for q in task.train if q.id in needed]
    if linked_in_train == "keep":
        train, evaluation = list(task.train), list(task.validation)
    else:
        train = [q for q in task.train if q.id not in needed]
        evaluation = list(task.validation) + (train_linked if linked_in_train == "holdout" else [])
    eval_ids = {q.id for q in evaluation}
    linked_ids = removed.question_ids & eval_ids
    if require_linked and not linked_ids:
        raise KcsError(
            f"none of the {len(removed_facts)} removed facts is linked to an evaluation question of the task "
            f"({task.sources['validation']}); check that --linked-kg belongs to this task (CSQA facts carry "
            "`question_id`; WordNet questions carry `linked_facts`)"
        )
    groups = split_groups(evaluation, linked_ids, control.question_ids & eval_ids if control else None)
    counts = {
        "train_questions": len(train),
        "evaluation_questions": len(evaluation),
        "validation_questions": len(task.validation),
        "linked_questions_in_train": len(train_linked),
        "removed_facts": len(removed_facts),
        "removed_facts_unmatched": len(removed.unmatched),
        "control_facts": len(control_facts),
        "control_facts_unmatched": len(control.unmatched) if control else 0,
        **{f"group_{name}": len(ids) for name, ids in groups.items()},
    }
    links = {qid: facts for qid, facts in removed.by_question.items() if qid in eval_ids}
    return PreparedTask(train, evaluation, groups, links, counts)
