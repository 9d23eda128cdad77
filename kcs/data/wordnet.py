"""WordNet hypernym graphs: synset lookup, TargetKG neighbourhoods and the WordNet ControlKG.

The reader comes from `kcs.data.wordnet_install.load_wordnet` (installing, finding and loading
WordNet 3.0 live there). All edges are `hyponym IsA hypernym`, heads and tails are synset ids
like `cabin.n.02`; `hypernyms()` only, instance hypernyms are left out, as in the authors' files:
- `sample_neighbourhood`: a TargetKG around a root synset, built as the authors' files suggest
  (docs/method.md 3.1): the root's hypernym edges and those `up` levels above it, plus a seeded
  uniform sample of the hyponym edges within `hops` levels below the root; `size` edges in all.
- `sample_controlkg`: the WordNet ControlKG as the paper rebuilt it: random noun hypernym edges
  with distinct heads whose synsets appear in none of the experiment's TargetKGs; validation rows
  are drawn first so their heads do not change with the train size; optional test rows (held out
  from training and tuning alike) are drawn last, from the heads left, so they change nothing else.
Both are deterministic for a given seed and WordNet version.
"""

from __future__ import annotations

import difflib
import random
import re

from kcs.errors import KcsError

_SYNSET_ID = re.compile(r"^(?P<lemma>.+)\.(?P<pos>[nvasr])\.(?P<sense>\d+)$")


# --- lookup -------------------------------------------------------------------------------------

def surface(synset) -> str:
    """The words a sentence uses for a synset: its first lemma, underscores as spaces (as the authors)."""
    return synset.lemmas()[0].name().replace("_", " ")


def get_synset(wn, name: str, where: str = ""):
    """The synset with id `name` (e.g. 'building.n.01'); KcsError with near matches otherwise."""
    prefix = f"{where}: " if where else ""
    match = _SYNSET_ID.match(name)
    if not match:
        raise KcsError(f"{prefix}'{name}' is not a WordNet synset id; expected lemma.pos.nn, e.g. building.n.01")
    try:
        return wn.synset(name)
    except Exception:  # nltk raises WordNetError or ValueError for unknown ids
        pass
    lemma, pos = match.group("lemma"), match.group("pos")
    lookup_pos = "a" if pos == "s" else pos
    near = [s.name() for s in wn.synsets(lemma, pos=lookup_pos)]
    if not near:
        words = difflib.get_close_matches(lemma.lower(), list(wn.all_lemma_names(pos=lookup_pos)), n=4, cutoff=0.75)
        near = [s.name() for word in words for s in wn.synsets(word, pos=lookup_pos)][:8]
    hint = f"; near matches: {', '.join(near[:8])}" if near else ""
    raise KcsError(f"{prefix}unknown synset '{name}' in WordNet{hint}")


def is_synset_id(text: str) -> bool:
    return bool(_SYNSET_ID.match(text))


# --- sampling -----------------------------------------------------------------------------------

Edge = tuple[str, str]  # (hyponym synset id, hypernym synset id)


def upward_edges(root, levels: int) -> list[Edge]:
    """The root's hypernym edges and those of its hypernyms, `levels` levels up (sorted)."""
    edges: set[Edge] = set()
    frontier = [root]
    for _ in range(levels):
        above = []
        for synset in frontier:
            for hypernym in synset.hypernyms():
                edges.add((synset.name(), hypernym.name()))
                above.append(hypernym)
        frontier = above
    return sorted(edges)


def downward_edges(root, hops: int) -> list[Edge]:
    """Every hyponym edge (child IsA parent) whose parent lies fewer than `hops` levels below the root."""
    edges: set[Edge] = set()
    frontier, seen = [root], {root.name()}
    for _ in range(hops):
        below = []
        for parent in frontier:
            for child in parent.hyponyms():
                edges.add((child.name(), parent.name()))
                if child.name() not in seen:
                    seen.add(child.name())
                    below.append(child)
        frontier = below
    return sorted(edges)


def sample_neighbourhood(wn, root_name: str, *, size: int, hops: int = 3, up: int = 2, seed: int = 0) -> list[Edge]:
    """A TargetKG of `size` hypernym edges around `root_name` (see the module docstring)."""
    root = get_synset(wn, root_name)
    if size < 1 or hops < 0 or up < 0:
        raise KcsError(f"need size >= 1, hops >= 0 and up >= 0 (got size={size}, hops={hops}, up={up})")
    above = upward_edges(root, up)
    below = downward_edges(root, hops)
    if size <= len(above):
        return above[:size]
    wanted = size - len(above)
    if wanted > len(below):
        raise KcsError(
            f"{root_name} has only {len(below)} hyponym edges within {hops} levels (+{len(above)} above); "
            f"lower --size ({size}) or raise --hops"
        )
    return above + random.Random(seed).sample(below, wanted)


def synsets_of(edges) -> set[str]:
    return {name for edge in edges for name in edge}


def _noun_hypernyms(wn) -> list[tuple[str, list[str]]]:
    """(noun synset, its sorted hypernyms) for all of WordNet, computed once per reader (seconds)."""
    table = getattr(wn, "_kcs_noun_hypernyms", None)
    if table is None:
        table = [(s.name(), sorted(h.name() for h in s.hypernyms())) for s in wn.all_synsets("n")]
        wn._kcs_noun_hypernyms = table
    return table


def sample_controlkg(wn, exclude: set[str], *, train_size: int, val_size: int, test_size: int = 0,
                     seed: int = 0) -> tuple[list[Edge], list[Edge], list[Edge]]:
    """Random noun hypernym edges with distinct heads, none touching a synset in `exclude`.

    Returns (train, validation, test); no two share a head or an edge. The test rows are drawn
    after the others from the same generator, so train and validation are the same for any
    `test_size` (and test_size 0 gives an empty test split).
    """
    for option, size in (("--train-size", train_size), ("--val-size", val_size), ("--test-size", test_size)):
        if size < 0:
            raise KcsError(f"{option} must be >= 0 (got {size})")
    by_head: dict[str, list[str]] = {}
    for head, all_tails in _noun_hypernyms(wn):
        if head in exclude:
            continue
        tails = [t for t in all_tails if t not in exclude]
        if tails:
            by_head[head] = tails
    heads = sorted(by_head)
    needed = train_size + val_size + test_size
    if needed > len(heads):
        raise KcsError(f"only {len(heads)} usable noun synsets; lower --train-size/--val-size/--test-size "
                       f"(asked {train_size} + {val_size} + {test_size} = {needed})")
    rng = random.Random(seed)
    chosen = rng.sample(heads, train_size + val_size)
    edges = [(head, rng.choice(by_head[head])) for head in chosen]
    taken = set(chosen)
    rest = [head for head in heads if head not in taken]
    test = [(head, rng.choice(by_head[head])) for head in rng.sample(rest, test_size)]
    return edges[val_size:], edges[:val_size], test
