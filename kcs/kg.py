"""The KG file: JSON Lines, one verbalised fact per line.

Required fields: `head`, `relation`, `tail`, `prompt`, `target`, where `prompt + target` is the
sentence and `target` is the tail's surface form as it follows the prompt (usually with its
leading space). Optional: `paraphrases` (a list of {prompt, target}) and any other fields
(e.g. `question_id` for CommonsenseQA-linked facts, `source`), which are kept as `extra`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from kcs.atomic import atomic_path
from kcs.errors import KcsError
from kcs.readers import iter_json_lines

REQUIRED_FIELDS = ("head", "relation", "tail", "prompt", "target")


@dataclass(frozen=True)
class Verbalisation:
    prompt: str
    target: str

    @property
    def sentence(self) -> str:
        return self.prompt + self.target


@dataclass(frozen=True)
class Fact:
    head: str
    relation: str
    tail: str
    prompt: str
    target: str
    paraphrases: tuple[Verbalisation, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def sentence(self) -> str:
        return self.prompt + self.target

    @property
    def triplet(self) -> tuple[str, str, str]:
        return (self.head, self.relation, self.tail)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "head": self.head,
            "relation": self.relation,
            "tail": self.tail,
            "prompt": self.prompt,
            "target": self.target,
        }
        if self.paraphrases:
            row["paraphrases"] = [{"prompt": p.prompt, "target": p.target} for p in self.paraphrases]
        row.update(self.extra)
        return row


def _string_field(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise KcsError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    return value


def parse_fact(row: Any, where: str) -> Fact:
    """Validate one decoded JSON row; `where` is 'FILE:LINE' for error messages."""
    if not isinstance(row, dict):
        raise KcsError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [key for key in REQUIRED_FIELDS if key not in row]
    if missing:
        raise KcsError(
            f"{where}: missing field(s) {', '.join(missing)}; every fact needs "
            f"{', '.join(REQUIRED_FIELDS)} (see README, 'KG file format')"
        )
    values = {key: _string_field(row, key, where) for key in REQUIRED_FIELDS}
    if not values["target"].strip():
        raise KcsError(f"{where}: field 'target' is empty; it must hold the tail's surface form")
    if not values["prompt"].strip():
        raise KcsError(f"{where}: field 'prompt' is empty")
    paraphrases = []
    raw_paraphrases = row.get("paraphrases", [])
    if not isinstance(raw_paraphrases, list):
        raise KcsError(f"{where}: field 'paraphrases' must be a list of {{prompt, target}} objects")
    for i, para in enumerate(raw_paraphrases):
        if not isinstance(para, dict) or not isinstance(para.get("prompt"), str) or not isinstance(
            para.get("target"), str
        ):
            raise KcsError(f"{where}: paraphrases[{i}] must be an object with string 'prompt' and 'target'")
        paraphrases.append(Verbalisation(para["prompt"], para["target"]))
    extra = {k: v for k, v in row.items() if k not in REQUIRED_FIELDS and k != "paraphrases"}
    return Fact(paraphrases=tuple(paraphrases), extra=extra, **values)


def read_kg(path: str | os.PathLike, *, allow_empty: bool = False) -> list[Fact]:
    """Read and validate a KG file; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise KcsError(f"{path}: KG file not found")
    facts = [parse_fact(row, where) for where, row in iter_json_lines(path)]
    if not facts and not allow_empty:
        raise KcsError(f"{path}: the KG file holds no facts")
    return facts


def write_kg(path: str | os.PathLike, facts: Iterable[Fact]) -> None:
    """Write facts atomically (a killed writer leaves no partial file)."""
    with atomic_path(path) as tmp:
        with tmp.open("w", encoding="utf-8") as handle:
            for fact in facts:
                handle.write(json.dumps(fact.to_json(), ensure_ascii=False) + "\n")


def overlap_record(path: str | os.PathLike) -> dict | None:
    """What `kcs data remove-overlap` removed to make this KG file, `{by, removed, kept}`, from the
    provenance it wrote beside the file; None for a file it did not make (no such record). A record
    that does not describe this file (its digest differs: the file was replaced) is an error."""
    from kcs.provenance import file_sha256
    from kcs.readers import read_json

    sidecar = Path(f"{path}.provenance.json")
    if not sidecar.is_file():
        return None
    record = read_json(sidecar, "provenance record")
    if "overlap" not in record or "by" not in record:
        return None
    if record.get("sha256") != file_sha256(path):
        raise KcsError(f"{sidecar}: records the overlap removed from another version of {path} (digest differs); "
                       "remake the file with `kcs data remove-overlap`")
    return {"by": record["by"], "removed": 0 if record.get("kept_overlap") else record["overlap"],
            "kept": record["facts"], "targetkg": record.get("targetkg")}
