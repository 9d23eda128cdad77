"""Triplets -> KG facts: every template's sentences scored, the lowest-perplexity one kept.

For each (head, relation, tail) the relation's templates (`kcs.data.templates`) give candidate
sentences, all ending with the tail. Each is scored with `kcs.data.scoring.sentence_perplexities`
under the model being studied (the paper: the per-model minimum-perplexity verbalisation); the
best becomes the fact's `prompt` + `target`, and the candidates of the other templates become its
`paraphrases` (formatting variants of the chosen template are left out, as in the authors'
`*_worse_format.json`). Extra fields: `template`, `perplexity`, `kind` and those of the input.

Two kinds of graph:
- `wordnet`: heads and tails are synset ids (`cabin.n.02`); the sentence uses the first lemma.
  Unknown synsets are errors with near matches. Only the relation `IsA` has templates.
- `conceptnet`: heads and tails are words or phrases, used as written.
`kind="auto"` picks wordnet when every head and tail looks like a synset id.

`plan` does every check that needs no model (relations with templates, known synsets, duplicates)
and lists the candidates; `choose_best` scores them; `verbalise` is both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from kcs.data.templates import Candidate, TemplateSet, candidates_for, load_templates
from kcs.data.triplets import Triplet, check_duplicates
from kcs.errors import KcsError
from kcs.kg import Fact, Verbalisation
from kcs.progress import ProgressLog

log = logging.getLogger(__name__)


def detect_kind(triplets: Sequence[Triplet]) -> str:
    from kcs.data.wordnet import is_synset_id

    flags = [is_synset_id(t.head) and is_synset_id(t.tail) for t in triplets]
    if all(flags):
        return "wordnet"
    if any(flags):
        first_word = next(t for t, f in zip(triplets, flags) if not f)
        raise KcsError(
            f"{first_word.where}: mixes synset ids and plain words ({first_word.head!r}, {first_word.tail!r}); "
            "a graph is either WordNet (all synset ids) or ConceptNet-style (words); pass --kind to force one"
        )
    return "conceptnet"


def surface_forms(triplets: Sequence[Triplet], kind: str, wordnet_dir=None) -> list[tuple[str, str]]:
    """The words each triplet's sentence uses for its head and tail."""
    if kind == "conceptnet":
        return [(t.head, t.tail) for t in triplets]
    from kcs.data.wordnet import get_synset, surface
    from kcs.data.wordnet_install import load_wordnet

    wn = load_wordnet(wordnet_dir)
    return [(surface(get_synset(wn, t.head, t.where)), surface(get_synset(wn, t.tail, t.where))) for t in triplets]


@dataclass(frozen=True)
class Plan:
    """Everything decided before a model is needed: the kind, templates and candidate sentences."""

    kind: str
    templates: TemplateSet
    triplets: tuple[Triplet, ...]
    candidates: tuple[tuple[Candidate, ...], ...]


def plan(triplets: Sequence[Triplet], *, kind: str = "auto", templates: TemplateSet | None = None,
         templates_file=None, wordnet_dir=None) -> Plan:
    """Check the triplets (relations with templates, known synsets) and list their candidates."""
    if not triplets:
        raise KcsError("the graph is empty: nothing to verbalise")
    check_duplicates(triplets, "triplets")
    if kind == "auto":
        kind = detect_kind(triplets)
    if templates is None:
        templates = load_templates(kind, templates_file)
    for t in triplets:
        templates.for_relation(t.relation, t.where)
    forms = surface_forms(triplets, kind, wordnet_dir)
    candidates = tuple(tuple(candidates_for(templates, t.relation, head, tail, t.where))
                       for t, (head, tail) in zip(triplets, forms))
    return Plan(kind, templates, tuple(triplets), candidates)


def choose_best(prepared: Plan, model, tokenizer, *, batch_size: int = 32, model_name: str | None = None,
                log_every: int = 2000, log_seconds: float = 60.0) -> list[Fact]:
    """Score every candidate under `model`; one Fact per triplet, in input order.

    Progress (sentences scored, rate, ETA) is logged every `log_every` sentences or `log_seconds`.
    """
    from kcs.data.scoring import sentence_perplexities

    unique = list(dict.fromkeys(c.sentence for group in prepared.candidates for c in group))
    log.info("scoring %d candidate sentences for %d facts", len(unique), len(prepared.triplets))
    progress = ProgressLog(log, f"verbalise {len(prepared.triplets)} facts", len(unique), log_every, log_seconds,
                           unit="sentences")
    scored = 0

    def count_batch(module, args, kwargs, output) -> None:
        nonlocal scored
        scored += len(kwargs["input_ids"]) if "input_ids" in kwargs else len(args[0])
        progress.update(scored)

    # Facts are not done one by one: sentence_perplexities sorts all sentences by length into
    # batches. Counting its forward calls follows it without changing those batches (or scores).
    hook = model.register_forward_hook(count_batch, with_kwargs=True)
    try:
        scores = dict(zip(unique, sentence_perplexities(model, tokenizer, unique, batch_size=batch_size)))
    finally:
        hook.remove()
    facts = []
    for triplet, candidates in zip(prepared.triplets, prepared.candidates):
        best = min(candidates, key=lambda c: scores[c.sentence])  # ties: the first in template order
        paraphrases = tuple(Verbalisation(c.prompt, c.target) for c in candidates if c.template != best.template)
        extra = {**triplet.extra, "kind": prepared.kind, "template": best.template,
                 "perplexity": scores[best.sentence]}
        if model_name:
            extra["verbalised_with"] = model_name
        facts.append(Fact(triplet.head, triplet.relation, triplet.tail, best.prompt, best.target, paraphrases, extra))
    return facts


def verbalise(triplets: Sequence[Triplet], model, tokenizer, *, kind: str = "auto",
              templates: TemplateSet | None = None, templates_file=None, wordnet_dir=None,
              batch_size: int = 32, model_name: str | None = None, log_every: int = 2000,
              log_seconds: float = 60.0) -> list[Fact]:
    """One Fact per triplet, in input order (see the module docstring)."""
    prepared = plan(triplets, kind=kind, templates=templates, templates_file=templates_file, wordnet_dir=wordnet_dir)
    return choose_best(prepared, model, tokenizer, batch_size=batch_size, model_name=model_name,
                       log_every=log_every, log_seconds=log_seconds)
