"""Triplet files: (head, relation, tail) before verbalisation, and TargetKG/ControlKG overlap.

Two layouts are read (docs/interfaces.md, "Triplet file"):
- JSON Lines: one object per line with string fields `head`, `relation` (or `rel`, the authors'
  name) and `tail`; other fields are kept (`question_id`, `source`, ...). A KG file is also a
  valid triplet file, so a verbalised KG can be re-verbalised for another model.
- TSV: `head<TAB>relation<TAB>tail`, an optional header line `head relation tail`, `#` comments.
Blank lines are skipped. A malformed line, an empty file or a repeated (head, relation, tail)
is a KcsError naming the file and line(s): a duplicate would silently weigh a fact twice.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from kcs.atomic import atomic_path
from kcs.errors import KcsError
from kcs.kg import Fact
from kcs.readers import parse_json_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Triplet:
    head: str
    relation: str
    tail: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    where: str = field(default="", compare=False, hash=False)  # FILE:LINE, for error messages

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.head, self.relation, self.tail)

    def to_json(self) -> dict[str, Any]:
        return {"head": self.head, "relation": self.relation, "tail": self.tail, **self.extra}


# Fields describing a verbalisation, dropped when a KG file is read as triplets: they belong to the
# old sentences (and model), not to the fact, and verbalising writes its own.
_VERBALISATION_FIELDS = {"prompt", "target", "paraphrases", "perplexity", "template", "kind", "verbalised_with",
                         "paper_perplexity", "paper_entropy"}


def _parse_json_row(row: Any, where: str) -> Triplet:
    if not isinstance(row, dict):
        raise KcsError(f"{where}: expected a JSON object with head, relation, tail; got {type(row).__name__}")
    relation_key = "relation" if "relation" in row else "rel"
    values = {}
    for key in ("head", relation_key, "tail"):
        value = row.get(key)
        if not isinstance(value, str) or not value.strip():
            name = "relation" if key == "rel" else key
            raise KcsError(f"{where}: field '{name}' must be a non-empty string (got {value!r})")
        values[key] = value.strip()
    extra = {k: v for k, v in row.items() if k not in ("head", "relation", "rel", "tail")
             and k not in _VERBALISATION_FIELDS}
    return Triplet(values["head"], values[relation_key], values["tail"], extra, where)


def _parse_tsv_line(line: str, where: str) -> Triplet:
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != 3 or not all(part.strip() for part in fields):
        raise KcsError(
            f"{where}: expected 3 tab-separated non-empty fields head<TAB>relation<TAB>tail, got {len(fields)} "
            f"field(s): {line.strip()!r}"
        )
    head, relation, tail = (part.strip() for part in fields)
    return Triplet(head, relation, tail, {}, where)


def read_triplets(path: str | os.PathLike, *, allow_duplicates: bool = False) -> list[Triplet]:
    """Read a TSV or JSON Lines triplet file (also a KG file), validated line by line."""
    path = Path(path)
    if not path.is_file():
        raise KcsError(f"{path}: triplet file not found")
    triplets: list[Triplet] = []
    with path.open(encoding="utf-8") as handle:
        lines = list(enumerate(handle, start=1))
    content = [(n, line) for n, line in lines if line.strip() and not line.lstrip().startswith("#")]
    is_json = bool(content) and content[0][1].lstrip().startswith("{")
    for lineno, line in content:
        where = f"{path}:{lineno}"
        if is_json:
            triplets.append(_parse_json_row(parse_json_line(line, where), where))
        else:
            if lineno == content[0][0] and line.strip().lower().split() == ["head", "relation", "tail"]:
                continue  # header
            triplets.append(_parse_tsv_line(line, where))
    if not triplets:
        raise KcsError(f"{path}: the graph is empty (no triplets); give at least one head<TAB>relation<TAB>tail")
    if not allow_duplicates:
        check_duplicates(triplets, str(path))
    return triplets


def check_duplicates(triplets: Iterable[Triplet | Fact], what: str) -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for index, item in enumerate(triplets, start=1):
        key = (item.head, item.relation, item.tail)
        where = getattr(item, "where", "") or f"{what}: item {index}"
        if key in seen:
            raise KcsError(
                f"{where}: duplicate triplet {key} (first at {seen[key]}); each fact must occur once, "
                "remove the repeated line"
            )
        seen[key] = where


def write_triplets(path: str | os.PathLike, triplets: Iterable[Triplet]) -> None:
    """JSON Lines, atomically."""
    rows = [t.to_json() for t in triplets]
    if not rows:
        raise KcsError(f"{path}: refusing to write an empty graph")
    with atomic_path(path) as tmp:
        with tmp.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


# How a ControlKG fact can overlap a TargetKG: the same (head, relation, tail), or a shared head or tail
# (the WordNet ControlKG's rule: no synset of the TargetKG, docs/method.md 3.1).
OVERLAP_KINDS = ("facts", "entities")


def split_overlap(control: list, target: list, by: str = "facts") -> tuple[list, list]:
    """(kept, overlapping): the control items that do not / do overlap the TargetKG items `target`,
    by the same (head, relation, tail) (`by="facts"`) or by a head or tail among the TargetKG's heads
    and tails (`by="entities"`)."""
    if by not in OVERLAP_KINDS:
        raise KcsError(f"overlap by {by!r}: expected one of {', '.join(OVERLAP_KINDS)}")
    if by == "facts":
        keys = {(t.head, t.relation, t.tail) for t in target}
        hits = [(item.head, item.relation, item.tail) in keys for item in control]
    else:
        entities = {name for t in target for name in (t.head, t.tail)}
        hits = [item.head in entities or item.tail in entities for item in control]
    kept = [item for item, hit in zip(control, hits) if not hit]
    overlapping = [item for item, hit in zip(control, hits) if hit]
    return kept, overlapping
