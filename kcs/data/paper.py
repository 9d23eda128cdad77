"""The paper's own KGs: the authors' files converted into kcs KG files and shipped in the package.

Bayazit et al. released their TargetKG/ControlKG files under the MIT licence (copyright 2024
bayazitdeniz). `convert_paper(source, out)` turns them (the layout of `../shared/paper-data/`:
`wordnet/targetkg/`, `conceptnet_lama/`, `csqa/`) into `kcs/resources/paper_kgs/`:

    wordnet/<root>.<model>.jsonl     7 roots x 4 GPT-2 sizes: the authors chose a verbalisation per
                                     size (`best_<model>_input`); paraphrases from *_worse_format.json
                                     (gpt2-relative, as the authors made them; the model's own best
                                     sentence is left out)
    conceptnet/{fruit,sun,swimming}.jsonl                 gpt2 fields (the authors' loader uses them
    conceptnet/controlkg_{train,val}.jsonl                for every size), LAMA uuid kept
    csqa/{csqa,csqa1,csqa2}.jsonl    gpt2 fields, `question_id` = the CommonsenseQA question id
    csqa/controlkg_{train,val}.jsonl
    MANIFEST.json, PROVENANCE.md, provenance.json

Each sentence is split into `prompt` + `target`, the target being " " + the tail's surface form
(the synset's lemma for WordNet), which must end the sentence: a sentence that does not is
reported and the conversion fails, so the shipped files hold exactly the authors' triplets and
sentences. Extra fields: `source` (the authors' file), `paper_perplexity`, `paper_entropy`
(their scores of the chosen sentence), `head_synonyms`/`tail_synonyms` (WordNet),
`lama_uuid` (ConceptNet TargetKGs), `question_id` (CSQA). The WordNet ControlKG is not among the
authors' files: `kcs data wordnet-controlkg` rebuilds it.
Overlap between the ConceptNet TargetKGs and their ControlKG is kept here as released
(docs/method.md 3.2); `kcs data remove-overlap` removes it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from kcs.atomic import atomic_dir
from kcs.data.paths import package_resource
from kcs.errors import KcsError
from kcs.kg import Fact, Verbalisation
from kcs.provenance import file_sha256
from kcs.readers import iter_json_lines

log = logging.getLogger(__name__)

GPT2_SIZES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
WORDNET_ROOTS = ("building.n.01", "change.n.01", "communication.n.02", "location.n.01", "magnitude.n.01",
                 "representation.n.02", "statement.n.01")
CONCEPTNET_CONCEPTS = ("fruit", "sun", "swimming")
CSQA_KGS = ("csqa", "csqa1", "csqa2")
CONTROLKGS = ("conceptnet-controlkg-train", "conceptnet-controlkg-val", "csqa-controlkg-train", "csqa-controlkg-val")
CITATION = ('Bayazit, Foroutan, Chen, Weiss, Bosselut, "Discovering Knowledge-Critical Subnetworks in '
            'Pretrained Language Models", EMNLP 2024')

PROVENANCE_MD = f"""# Provenance of the shipped paper KGs

These files are the knowledge graphs released by the authors of {CITATION},
converted into the kcs KG format (docs/interfaces.md, "KG file") by `kcs data convert-paper`
(kcs/data/paper.py). The triplets and sentences are exactly the authors'; only the layout
changed (prompt/target split, field names). MANIFEST.json lists every source file with its
SHA-256 and the file made from it.

- `wordnet/<root>.<model>.jsonl`: the 7 WordNet TargetKGs, one file per GPT-2 size, with the
  authors' per-size lowest-perplexity verbalisation; paraphrases from `*_worse_format.json`.
- `conceptnet/`: the 3 ConceptNet TargetKGs (LAMA ConceptNet probe) and the ConceptNet ControlKG.
  Note (docs/method.md 3.2): some TargetKG triplets also occur in the ControlKG (fruit 10/37,
  sun 10/36, swimming 19/40); `kcs data remove-overlap` removes them.
- `csqa/`: the CommonsenseQA-derived TargetKGs (`question_id` links a fact to its question)
  and their ControlKG.
The WordNet ControlKG was not released; `kcs data wordnet-controlkg` rebuilds it from WordNet 3.0.

## Licence of the data (the authors' MIT licence)

MIT License

Copyright (c) 2024 bayazitdeniz

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def shipped_dir() -> Path:
    return package_resource("paper_kgs")


def paper_kg_names() -> list[str]:
    return list(WORDNET_ROOTS + CONCEPTNET_CONCEPTS + CSQA_KGS + CONTROLKGS)


def paper_wordnet_synsets() -> set[str]:
    """Every synset (head or tail) of the authors' seven WordNet TargetKGs: the fixed set that kcs's
    WordNet ControlKG avoids, as the authors' ControlKG does, whichever TargetKGs a configuration lists
    (docs/method.md 3.1)."""
    from kcs.data.triplets import read_triplets

    return {name for root in WORDNET_ROOTS for t in read_triplets(paper_kg_path(root)) for name in (t.head, t.tail)}


def paper_kg_path(name: str, model: str = "gpt2", root: str | os.PathLike | None = None) -> Path:
    """The shipped KG file for `name` (see `paper_kg_names`) and, for WordNet, the GPT-2 size."""
    base = Path(root) if root is not None else shipped_dir()
    if name in WORDNET_ROOTS:
        if model not in GPT2_SIZES:
            raise KcsError(
                f"the authors verbalised the WordNet TargetKGs for {', '.join(GPT2_SIZES)} only, not '{model}'; "
                f"re-verbalise the triplets for it: kcs data verbalise --triplets {base / 'wordnet' / (name + '.gpt2.jsonl')} "
                f"--model {model} --out KG.jsonl"
            )
        path = base / "wordnet" / f"{name}.{model}.jsonl"
    elif name in CONCEPTNET_CONCEPTS:
        path = base / "conceptnet" / f"{name}.jsonl"
    elif name in CSQA_KGS:
        path = base / "csqa" / f"{name}.jsonl"
    elif name in CONTROLKGS:
        kind, _, split = name.split("-")
        path = base / kind / f"controlkg_{split}.jsonl"
    else:
        raise KcsError(f"unknown paper KG '{name}'; known: {', '.join(paper_kg_names())}")
    if not path.is_file():
        raise KcsError(f"{path}: shipped paper KG missing; reinstall kcs or run kcs data convert-paper")
    return path


# --- conversion ---------------------------------------------------------------------------------

def _load_json(path: Path) -> list[dict]:
    if not path.is_file():
        raise KcsError(f"{path}: expected file of the authors' data not found (is --from the paper-data folder?)")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise KcsError(f"{path}: not valid JSON ({err.msg})") from None
    if not isinstance(rows, list) or not rows:
        raise KcsError(f"{path}: expected a non-empty JSON array")
    return rows


def _load_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise KcsError(f"{path}: expected file of the authors' data not found")
    return [row for _, row in iter_json_lines(path)]


def synset_surface(synset_id: str) -> str:
    return synset_id.rsplit(".", 2)[0].replace("_", " ")


class _Splitter:
    """Splits sentences at the tail and collects the ones that do not end with it."""

    def __init__(self) -> None:
        self.bad: list[str] = []

    def __call__(self, sentence: str, tail: str, where: str) -> Verbalisation | None:
        target = " " + tail
        if not sentence.endswith(target) or len(sentence) == len(target):
            self.bad.append(f"{where}: {sentence!r} does not end with the tail {tail!r}")
            return None
        return Verbalisation(sentence[: -len(target)], target)


def _fact(row: dict, relation: str, model: str, source: str, tail_surface: str, split: _Splitter,
          where: str, paraphrases=(), **extra: Any) -> Fact | None:
    sentence, label = row[f"best_{model}_input"], row[f"best_{model}_label"]
    if sentence != label:
        split.bad.append(f"{where}: best_{model}_input and best_{model}_label differ")
        return None
    best = split(sentence, tail_surface, where)
    if best is None:
        return None
    fields = {"source": f"paper-data/{source}", "paper_perplexity": row.get(f"{model}_perp"),
              "paper_entropy": row.get(f"{model}_entropy"), **extra}
    return Fact(row["head"], relation, row["tail"], best.prompt, best.target, tuple(paraphrases), fields)


def convert_wordnet(source: Path, split: _Splitter) -> dict[str, list[Fact]]:
    out: dict[str, list[Fact]] = {}
    for root in WORDNET_ROOTS:
        best_name = f"wordnet/targetkg/{root}_best_format.json"
        worse_name = f"wordnet/targetkg/{root}_worse_format.json"
        best_rows, worse_rows = _load_json(source / best_name), _load_json(source / worse_name)
        others: dict[tuple[str, str], list[Verbalisation]] = {}
        for index, row in enumerate(worse_rows):
            para = split(row["best_gpt2_input"], synset_surface(row["tail"]), f"{worse_name}[{index}]")
            if para is not None:
                others.setdefault((row["head"], row["tail"]), []).append(para)
        for model in GPT2_SIZES:
            facts = []
            for index, row in enumerate(best_rows):
                chosen = row[f"best_{model}_input"]
                paraphrases = [p for p in others.get((row["head"], row["tail"]), []) if p.prompt + p.target != chosen]
                fact = _fact(row, "IsA", model, best_name, synset_surface(row["tail"]), split,
                             f"{best_name}[{index}]", paraphrases,
                             head_synonyms=row.get("head_synonyms", []), tail_synonyms=row.get("tail_synonyms", []))
                if fact is not None:
                    facts.append(fact)
            out[f"wordnet/{root}.{model}.jsonl"] = facts
    return out


def convert_conceptnet(source: Path, split: _Splitter) -> dict[str, list[Fact]]:
    out: dict[str, list[Fact]] = {}
    for concept in CONCEPTNET_CONCEPTS:
        name = f"conceptnet_lama/targetkg/{concept}_best_format.json"
        uuids = {(r["sub"], r["pred"], r["obj"]): r.get("uuid")
                 for r in _load_jsonl(source / f"conceptnet_lama/targetkg/{concept}.jsonl")}
        facts = []
        for index, row in enumerate(_load_json(source / name)):
            uuid = uuids.get((row["head"], row["rel"], row["tail"]))
            extra = {"lama_uuid": uuid} if uuid else {}
            fact = _fact(row, row["rel"], "gpt2", name, row["tail"], split, f"{name}[{index}]", **extra)
            if fact is not None:
                facts.append(fact)
        out[f"conceptnet/{concept}.jsonl"] = facts
    for part in ("train", "val"):
        name = f"conceptnet_lama/controlkg_{part}_best_format.json"
        out[f"conceptnet/controlkg_{part}.jsonl"] = [
            f for index, row in enumerate(_load_json(source / name))
            if (f := _fact(row, row["rel"], "gpt2", name, row["tail"], split, f"{name}[{index}]")) is not None
        ]
    return out


def convert_csqa(source: Path, split: _Splitter) -> dict[str, list[Fact]]:
    out: dict[str, list[Fact]] = {}
    for kg in CSQA_KGS:
        name = f"csqa/{kg}_targetkg_best_format.json"
        out[f"csqa/{kg}.jsonl"] = [
            f for index, row in enumerate(_load_json(source / name))
            if (f := _fact(row, row["rel"], "gpt2", name, row["tail"], split, f"{name}[{index}]",
                           question_id=row["id"])) is not None
        ]
    for part in ("train", "val"):
        name = f"csqa/csqa_controlkg_best_format_{part}.json"
        out[f"csqa/controlkg_{part}.jsonl"] = [
            f for index, row in enumerate(_load_json(source / name))
            if (f := _fact(row, row["rel"], "gpt2", name, row["tail"], split, f"{name}[{index}]")) is not None
        ]
    return out


def _kg_text(facts: list[Fact]) -> str:
    return "".join(json.dumps(f.to_json(), ensure_ascii=False) + "\n" for f in facts)


def convert_paper(source: str | os.PathLike, out: str | os.PathLike, *, provenance: dict | None = None) -> dict:
    """Convert the authors' files under `source` into `out` (atomically, as a whole); returns the manifest."""
    source = Path(source)
    if not source.is_dir():
        raise KcsError(f"{source}: the authors' data folder not found (e.g. ../shared/paper-data)")
    split = _Splitter()
    files = {**convert_wordnet(source, split), **convert_conceptnet(source, split), **convert_csqa(source, split)}
    if split.bad:
        shown = "\n  ".join(split.bad[:20])
        raise KcsError(f"{len(split.bad)} sentence(s) of the authors' files cannot be split at the tail:\n  {shown}")
    sources = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.json*") if p.is_file())
    manifest = {
        "description": f"The authors' KGs of {CITATION}, converted by kcs data convert-paper",
        "licence": "MIT, copyright 2024 bayazitdeniz (see PROVENANCE.md)",
        "sources": {name: file_sha256(source / name) for name in sources},
        "files": {},
    }
    with atomic_dir(out) as tmp:
        os.chmod(tmp, 0o755)
        for name, facts in sorted(files.items()):
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_kg_text(facts), encoding="utf-8")
            manifest["files"][name] = {"facts": len(facts), "sha256": file_sha256(path),
                                       "from": sorted({f.extra["source"] for f in facts})}
        (tmp / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (tmp / "PROVENANCE.md").write_text(PROVENANCE_MD, encoding="utf-8")
        if provenance is not None:
            (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    log.info("converted %d KG files from %s into %s", len(files), source, out)
    return manifest
