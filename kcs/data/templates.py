"""Verbalisation templates: how a (head, relation, tail) becomes candidate sentences.

Templates are data (`kcs/resources/templates/{wordnet,conceptnet}.yaml`); a user file given with
`--templates` adds relations or replaces the templates of a relation. File layout:

    kind: conceptnet          # a name, recorded in the output
    number: auto              # auto: verb forms follow the head's number; singular: always singular
    leading_space: true       # also offer every sentence with a leading space (GPT-2 has no BOS)
    relations:
      IsA:
        - {name: kind-of, pattern: "{H} {is|are} a kind of {T}", head_article: true}

Pattern slots: `{H}` the head; `{T}` the tail, which must end the pattern (the tail is the
predicted target); `{a}` an optional indefinite article before the tail ("a"/"an" by the tail's
first sound, or nothing), `{the}` an optional "the", `{a/the}` either or nothing; `{x|y}` the
singular|plural form chosen by the head's number. A singular head is offered with and without
"a/an" unless `head_article: false`. The sentence's first letter is capitalised.

Every combination of these choices is one candidate; `kcs.data.verbalise` keeps the one with the
lowest perplexity and the candidates of the *other* templates as paraphrases (as the authors'
`*_worse_format.json` files do for WordNet).
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kcs.data.paths import package_resource
from kcs.errors import KcsError
from kcs.readers import read_yaml_mapping

KINDS = ("wordnet", "conceptnet")
_SLOT = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Template:
    relation: str
    name: str
    pattern: str
    head_article: bool = True


@dataclass(frozen=True)
class TemplateSet:
    kind: str
    number: str  # "auto" | "singular"
    leading_space: bool
    relations: dict[str, tuple[Template, ...]]
    source: str

    def for_relation(self, relation: str, where: str = "") -> tuple[Template, ...]:
        if relation not in self.relations:
            prefix = f"{where}: " if where else ""
            raise KcsError(
                f"{prefix}relation '{relation}' has no verbalisation templates ({self.source} knows "
                f"{', '.join(sorted(self.relations))}); add templates for it with --templates FILE "
                "(format: docs/data.md, 'Templates')"
            )
        return self.relations[relation]


def validate_pattern(pattern: str, where: str) -> None:
    slots = _SLOT.findall(pattern)
    if slots.count("H") != 1 or slots.count("T") != 1:
        raise KcsError(f"{where}: pattern {pattern!r} needs exactly one {{H}} and one {{T}}")
    if not pattern.endswith("{T}"):
        raise KcsError(f"{where}: pattern {pattern!r} must end with {{T}} (the tail is the predicted target)")
    body = pattern[:-3]
    if not re.search(r"( |\{a\}|\{the\}|\{a/the\})$", body) or re.search(r"\S(\{a\}|\{the\}|\{a/the\})$", body):
        raise KcsError(f"{where}: pattern {pattern!r} needs a space before the tail (or before its article slot)")
    for slot in slots:
        if slot not in ("H", "T", "a", "the", "a/the") and slot.count("|") != 1:
            raise KcsError(f"{where}: unknown slot {{{slot}}} in {pattern!r}; use H, T, a, the, a/the or x|y")


def _parse_file(path: Path) -> TemplateSet:
    data = read_yaml_mapping(path, "template")
    if not isinstance(data.get("relations"), dict):
        raise KcsError(f"{path}: a template file needs a 'relations' mapping (relation -> list of templates)")
    unknown = set(data) - {"kind", "number", "leading_space", "relations"}
    if unknown:
        raise KcsError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    number = data.get("number", "auto")
    if number not in ("auto", "singular"):
        raise KcsError(f"{path}: 'number' must be auto or singular, got {number!r}")
    relations: dict[str, tuple[Template, ...]] = {}
    for relation, entries in data["relations"].items():
        if not isinstance(entries, list) or not entries:
            raise KcsError(f"{path}: relation {relation}: give a non-empty list of templates")
        templates = []
        for i, entry in enumerate(entries):
            where = f"{path}: {relation}[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("pattern"), str):
                raise KcsError(f"{where}: each template needs a string 'pattern' (and a 'name')")
            extra = set(entry) - {"name", "pattern", "head_article"}
            if extra:
                raise KcsError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
            validate_pattern(entry["pattern"], where)
            templates.append(Template(str(relation), str(entry.get("name", f"t{i}")), entry["pattern"],
                                      bool(entry.get("head_article", True))))
        names = [t.name for t in templates]
        if len(set(names)) != len(names):
            raise KcsError(f"{path}: relation {relation}: template names must be unique ({names})")
        relations[str(relation)] = tuple(templates)
    return TemplateSet(str(data.get("kind", path.stem)), number, bool(data.get("leading_space", True)),
                       relations, str(path))


def load_templates(kind: str, extra: str | os.PathLike | None = None) -> TemplateSet:
    """The shipped templates of `kind` (wordnet|conceptnet), extended/overridden by `extra`."""
    if kind not in KINDS:
        raise KcsError(f"unknown template kind '{kind}'; use one of {', '.join(KINDS)}")
    base = _parse_file(package_resource("templates", f"{kind}.yaml"))
    if extra is None:
        return base
    extra_path = Path(extra)
    if not extra_path.is_file():
        raise KcsError(f"{extra_path}: template file not found")
    user = _parse_file(extra_path)
    return TemplateSet(base.kind, base.number, base.leading_space, {**base.relations, **user.relations},
                       f"{base.source} + {user.source}")


# --- English helpers ----------------------------------------------------------------------------

# Words whose first letter misleads the a/an rule (pronunciation, not spelling, decides).
_AN_EXCEPTIONS = ("hour", "honest", "honor", "honour", "heir", "herb")
_A_EXCEPTIONS = ("uni", "use", "usu", "uti", "ure", "uro", "eu", "ewe", "one", "once", "ubiq", "unanim", "uvu")
_IRREGULAR_PLURALS = {
    "people", "children", "men", "women", "feet", "teeth", "mice", "geese", "oxen", "cattle", "police", "data",
}
_SINGULAR_S = {
    "news", "physics", "mathematics", "economics", "politics", "athletics", "gymnastics", "series", "species",
    "chess", "gas", "bus", "lens", "christmas", "always", "this", "his", "its", "yes", "alias", "canvas",
    "atlas", "iris", "bias", "plus", "thus", "pants", "scissors", "glasses", "clothes",
}
_PLURAL_ONLY = {"pants", "scissors", "glasses", "clothes", "trousers", "jeans"}


def indefinite_article(phrase: str) -> str:
    word = phrase.strip().split(" ")[0].lower()
    if not word:
        return "a"
    if word.startswith(_AN_EXCEPTIONS):
        return "an"
    if word.startswith(_A_EXCEPTIONS):
        return "a"
    return "an" if word[0] in "aeiou" else "a"


def is_plural(phrase: str) -> bool:
    """A heuristic on the last word: irregular plurals, else a final -s that is not -ss/-us/-is."""
    word = phrase.strip().split(" ")[-1].lower()
    if word in _IRREGULAR_PLURALS or word in _PLURAL_ONLY:
        return True
    if word in _SINGULAR_S or len(word) < 4:
        return False
    return word.endswith("s") and not word.endswith(("ss", "us", "is", "ous"))


def _capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:] if sentence[:1].islower() else sentence


@dataclass(frozen=True)
class Candidate:
    template: str
    prompt: str
    target: str

    @property
    def sentence(self) -> str:
        return self.prompt + self.target


def expand(template: Template, head: str, tail: str, *, plural: bool, leading_space: bool) -> list[Candidate]:
    """Every sentence the template gives for (head, tail), tail last; duplicates removed."""
    body = template.pattern[:-3]
    pieces = _SLOT.split(body)  # text, slot, text, slot, ...
    options: list[list[str]] = []
    for index, piece in enumerate(pieces):
        if index % 2 == 0:
            options.append([piece])
        elif piece == "H":
            forms = [head]
            if template.head_article and not plural:
                forms = [f"{indefinite_article(head)} {head}", head]
            options.append(forms)
        elif piece == "a":
            options.append([f"{indefinite_article(tail)} ", ""])
        elif piece == "the":
            options.append(["the ", ""])
        elif piece == "a/the":
            options.append([f"{indefinite_article(tail)} ", "the ", ""])
        else:
            singular, plural_form = piece.split("|")
            options.append([plural_form if plural else singular])
    candidates: dict[str, Candidate] = {}
    spaces = ["", " "] if leading_space else [""]
    for choice in itertools.product(*options):
        text = _capitalise("".join(choice))
        for space in spaces:
            prompt = space + text[:-1]  # text ends with the space before the tail
            candidate = Candidate(template.name, prompt, " " + tail)
            candidates.setdefault(candidate.sentence, candidate)
    return list(candidates.values())


def candidates_for(templates: TemplateSet, relation: str, head: str, tail: str, where: str = "") -> list[Candidate]:
    plural = templates.number == "auto" and is_plural(head)
    out: list[Candidate] = []
    for template in templates.for_relation(relation, where):
        out.extend(expand(template, head, tail, plural=plural, leading_space=templates.leading_space))
    return out
