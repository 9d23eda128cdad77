"""The shipped paper KGs: exactly the authors' triplets and sentences, reproducible from their files."""

from __future__ import annotations

import json
import shutil

import pytest

from kcs.data import paper
from kcs.errors import KcsError
from kcs.kg import read_kg
from kcs.provenance import file_sha256

from data_fixtures import PAPER_DATA, WORDNET_ROOTS, run_cli

needs_paper_data = pytest.mark.skipif(
    not PAPER_DATA.is_dir(), reason=f"the authors' files are not at {PAPER_DATA} (CI keeps ../shared beside the clone)"
)


def authors_rows(name: str) -> list[dict]:
    return json.loads((PAPER_DATA / name).read_text())


def test_manifest_matches_the_shipped_files():
    root = paper.shipped_dir()
    manifest = json.loads((root / "MANIFEST.json").read_text())
    shipped = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jsonl"))
    assert shipped == sorted(manifest["files"]) and len(shipped) == 7 * 4 + 5 + 5
    for name, entry in manifest["files"].items():
        assert file_sha256(root / name) == entry["sha256"], name
        assert len(read_kg(root / name)) == entry["facts"], name
    assert "MIT License" in (root / "PROVENANCE.md").read_text()
    assert "Copyright (c) 2024 bayazitdeniz" in (root / "PROVENANCE.md").read_text()


def test_shipped_sizes_are_the_papers():
    sizes = {name: len(read_kg(paper.paper_kg_path(name))) for name in paper.paper_kg_names()}
    assert sizes["building.n.01"] == 11 and sizes["location.n.01"] == 19 and sizes["statement.n.01"] == 16
    assert (sizes["fruit"], sizes["sun"], sizes["swimming"]) == (37, 36, 40)
    assert (sizes["csqa"], sizes["csqa1"], sizes["csqa2"]) == (363, 181, 182)
    assert sizes["conceptnet-controlkg-train"] == 5455 and sizes["conceptnet-controlkg-val"] == 606
    assert sizes["csqa-controlkg-train"] == 4743 and sizes["csqa-controlkg-val"] == 1185


@needs_paper_data
def test_wordnet_kgs_hold_exactly_the_authors_triplets_and_sentences():
    for root in WORDNET_ROOTS:
        best = authors_rows(f"wordnet/targetkg/{root}_best_format.json")
        worse = authors_rows(f"wordnet/targetkg/{root}_worse_format.json")
        for model in paper.GPT2_SIZES:
            facts = read_kg(paper.paper_kg_path(root, model))
            assert [(f.head, f.relation, f.tail) for f in facts] == [(r["head"], "IsA", r["tail"]) for r in best]
            assert [f.sentence for f in facts] == [r[f"best_{model}_input"] for r in best]
            for fact, row in zip(facts, best):
                assert fact.target == " " + row["tail"].rsplit(".", 2)[0].replace("_", " ")
                assert fact.extra["paper_perplexity"] == row[f"{model}_perp"]
                expected = [w["best_gpt2_input"] for w in worse if (w["head"], w["tail"]) == (fact.head, fact.tail)
                            and w["best_gpt2_input"] != fact.sentence]
                assert [p.sentence for p in fact.paraphrases] == expected


@needs_paper_data
def test_conceptnet_and_csqa_kgs_hold_exactly_the_authors_rows():
    pairs = {f"conceptnet_lama/targetkg/{c}_best_format.json": c for c in paper.CONCEPTNET_CONCEPTS}
    pairs.update({f"csqa/{k}_targetkg_best_format.json": k for k in paper.CSQA_KGS})
    pairs.update({"conceptnet_lama/controlkg_train_best_format.json": "conceptnet-controlkg-train",
                  "conceptnet_lama/controlkg_val_best_format.json": "conceptnet-controlkg-val",
                  "csqa/csqa_controlkg_best_format_train.json": "csqa-controlkg-train",
                  "csqa/csqa_controlkg_best_format_val.json": "csqa-controlkg-val"})
    for source, name in pairs.items():
        rows, facts = authors_rows(source), read_kg(paper.paper_kg_path(name))
        assert [(f.head, f.relation, f.tail, f.sentence) for f in facts] == [
            (r["head"], r["rel"], r["tail"], r["best_gpt2_input"]) for r in rows], name
        assert all(f.target == " " + f.tail for f in facts)
        if "id" in rows[0]:
            assert [f.extra["question_id"] for f in facts] == [r["id"] for r in rows]
    fruit = read_kg(paper.paper_kg_path("fruit"))
    raw = [json.loads(line) for line in (PAPER_DATA / "conceptnet_lama/targetkg/fruit.jsonl").read_text().splitlines()]
    assert {f.extra["lama_uuid"] for f in fruit} == {r["uuid"] for r in raw}


@needs_paper_data
def test_reconversion_reproduces_the_shipped_files(tmp_path):
    out = tmp_path / "paper_kgs"
    assert run_cli("convert-paper", "--from", PAPER_DATA, "--out", out) == 0
    shipped = paper.shipped_dir()
    for path in sorted(shipped.rglob("*")):
        if path.is_file() and path.name != "provenance.json":
            assert (out / path.relative_to(shipped)).read_bytes() == path.read_bytes(), path.name


def test_paper_wordnet_edges_are_real_wordnet_3_0_hypernym_edges(wn):
    for root in WORDNET_ROOTS:
        for fact in read_kg(paper.paper_kg_path(root)):
            assert wn.synset(fact.tail) in wn.synset(fact.head).hypernyms(), (root, fact.head, fact.tail)


def test_conceptnet_overlap_is_the_known_one():
    control = {f.triplet for n in ("conceptnet-controlkg-train", "conceptnet-controlkg-val")
               for f in read_kg(paper.paper_kg_path(n))}
    overlap = {c: sum(f.triplet in control for f in read_kg(paper.paper_kg_path(c))) for c in paper.CONCEPTNET_CONCEPTS}
    assert overlap == {"fruit": 10, "sun": 10, "swimming": 19}  # docs/method.md 3.2


def test_paper_kg_command_and_names(tmp_path, capsys):
    out = tmp_path / "building.gpt2-xl.jsonl"
    assert run_cli("paper-kg", "--name", "building.n.01", "--model", "gpt2-xl", "--out", out) == 0
    assert out.read_bytes() == paper.paper_kg_path("building.n.01", "gpt2-xl").read_bytes()
    assert run_cli("paper-kg", "--name", "building.n.01", "--model", "smollm2", "--out", tmp_path / "x.jsonl") == 2
    assert "kcs data verbalise" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
    with pytest.raises(KcsError, match="unknown paper KG 'forest'"):
        paper.paper_kg_path("forest")


@needs_paper_data
def test_a_sentence_that_does_not_end_with_its_tail_fails_the_conversion(tmp_path):
    source = tmp_path / "paper-data"
    shutil.copytree(PAPER_DATA, source)
    for copied in [source, *source.rglob("*")]:
        copied.chmod(0o755 if copied.is_dir() else 0o644)  # the shared originals are read-only
    path = source / "conceptnet_lama" / "targetkg" / "sun_best_format.json"
    rows = json.loads(path.read_text())
    rows[3]["best_gpt2_input"] = rows[3]["best_gpt2_label"] = rows[3]["best_gpt2_input"] + " indeed"
    path.write_text(json.dumps(rows))
    with pytest.raises(KcsError, match=r"sun_best_format.json\[3\].*does not end with the tail"):
        paper.convert_paper(source, tmp_path / "out")
    assert not (tmp_path / "out").exists() and [p for p in tmp_path.iterdir() if p.name != "paper-data"] == []
