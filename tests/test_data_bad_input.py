"""Bad input: a clear error naming the file and line, exit status 2, and no output file left behind."""

from __future__ import annotations

import json
import re

import pytest

from kcs.data.triplets import read_triplets
from kcs.errors import KcsError

from data_fixtures import FIXTURES, leftovers, run_cli

CASES = {
    "malformed-tsv": ("T.tsv", "cabin.n.02\tIsA\thouse.n.01\nhostel.n.01 IsA hotel.n.01\n",
                      [r"T\.tsv:2", "3 tab-separated"]),
    "malformed-json": ("T.jsonl", '{"head": "cabin.n.02", "relation": "IsA", "tail": "house.n.01"}\n{"head": "x",\n',
                       [r"T\.jsonl:2", "not valid JSON"]),
    "missing-field": ("T.jsonl", '{"head": "cabin.n.02", "tail": "house.n.01"}\n', [r"T\.jsonl:1", "'relation'"]),
    "unknown-synset": ("T.tsv", "cabin.n.02\tIsA\thouse.n.01\nbuildng.n.01\tIsA\tstructure.n.01\n",
                       [r"T\.tsv:2", r"unknown synset 'buildng\.n\.01'", r"near matches: building\.n\.01"]),
    "empty-graph": ("T.tsv", "head\trelation\ttail\n\n# nothing here\n", [r"T\.tsv", "empty"]),
    "no-templates": ("T.tsv", "fish\tAtLocation\tpond\nfish\tSwimsIn\tpond\n",
                     [r"T\.tsv:2", "relation 'SwimsIn' has no verbalisation templates", "--templates"]),
    "duplicates": ("T.tsv", "cabin.n.02\tIsA\thouse.n.01\nhostel.n.01\tIsA\thotel.n.01\ncabin.n.02\tIsA\thouse.n.01\n",
                   [r"T\.tsv:3", "duplicate triplet", r"first at .*T\.tsv:1"]),
    "mixed-kinds": ("T.tsv", "cabin.n.02\tIsA\thouse.n.01\nfish\tIsA\tanimal\n", [r"T\.tsv:2", "mixes synset ids"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_verbalise_refuses_bad_triplets(case, tmp_path, capsys, tiny_model_folder, wordnet_dir):
    name, content, patterns = CASES[case]
    triplets = tmp_path / name
    triplets.write_text(content)
    out = tmp_path / "out" / "KG.jsonl"
    code = run_cli("verbalise", "--triplets", triplets, "--model", tiny_model_folder, "--out", out,
                   "--wordnet-dir", wordnet_dir, "--device", "cpu")
    err = capsys.readouterr().err
    assert code == 2, err
    for pattern in patterns:
        assert re.search(pattern, err), (pattern, err)
    assert leftovers(tmp_path) == [name]  # no output, no provenance, no temporary file


def test_remove_overlap_refuses_a_bad_targetkg(tmp_path, capsys):
    target = tmp_path / "T.tsv"
    target.write_text("fruit\tIsA\tfood\tsweet\n")
    control = tmp_path / "C.jsonl"
    control.write_text(json.dumps({"head": "jar", "relation": "HasA", "tail": "lid", "prompt": "A jar has a",
                                   "target": " lid"}) + "\n")
    assert run_cli("remove-overlap", "--targetkg", target, "--controlkg", control, "--out", tmp_path / "C2.jsonl") == 2
    assert f"{target}:1" in capsys.readouterr().err
    assert leftovers(tmp_path) == ["C.jsonl", "T.tsv"]


def test_sample_conceptnet_unknown_concept_lists_near_matches(tmp_path, capsys):
    out = tmp_path / "T.jsonl"
    assert run_cli("sample-conceptnet", "--concept", "fruits", "--lama-dir", FIXTURES / "lama", "--out", out) == 2
    assert "concept 'fruits' does not occur" in (err := capsys.readouterr().err) and "fruit" in err
    assert leftovers(tmp_path) == []


def test_sample_wordnet_unknown_root(tmp_path, capsys, wordnet_dir):
    assert run_cli("sample-wordnet", "--root", "biulding.n.01", "--size", "5", "--out", tmp_path / "T.jsonl",
                   "--wordnet-dir", wordnet_dir) == 2
    assert "near matches: building.n.01" in capsys.readouterr().err
    assert leftovers(tmp_path) == []


def test_a_malformed_lama_line_names_file_and_line(tmp_path, capsys):
    lama = tmp_path / "test.jsonl"
    lama.write_text('{"sub": "fish", "pred": "AtLocation", "obj": "pond"}\n{"sub": "fish", "pred": "IsA"}\n')
    assert run_cli("sample-conceptnet", "--concept", "fish", "--lama-dir", lama, "--out", tmp_path / "T.jsonl") == 2
    assert f"{lama}:2" in capsys.readouterr().err and not (tmp_path / "T.jsonl").exists()


def test_json_duplicates_and_kg_files_are_read_as_triplets(tmp_path):
    path = tmp_path / "K.jsonl"
    row = {"head": "jar", "relation": "HasA", "tail": "lid", "prompt": "A jar has a", "target": " lid", "question_id": "q"}
    path.write_text(json.dumps(row) + "\n")
    [triplet] = read_triplets(path)
    assert triplet.key == ("jar", "HasA", "lid") and triplet.extra == {"question_id": "q"}
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "rel": "HasA"}) + "\n")
    with pytest.raises(KcsError, match=r"K\.jsonl:2: duplicate triplet"):
        read_triplets(path)


def test_controllm_and_csqa_bad_sources(tmp_path, capsys):
    assert run_cli("controllm", "--source", "files", "--files", tmp_path / "none.txt", "--out", tmp_path / "L.txt") == 2
    assert "none.txt: text file not found" in capsys.readouterr().err
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    assert run_cli("controllm", "--source", "files", "--files", tmp_path / "latin1.txt", "--out", tmp_path / "L.txt") == 2
    assert "not UTF-8" in capsys.readouterr().err
    (tmp_path / "blank.txt").write_text("\n\n")
    assert run_cli("controllm", "--source", "files", "--files", tmp_path / "blank.txt", "--out", tmp_path / "L.txt") == 2
    assert "is empty" in capsys.readouterr().err
    bad = tmp_path / "train.jsonl"
    bad.write_text(json.dumps({"id": "q1", "question": "Why?", "choices": {"label": ["A", "B"], "text": ["x", "y"]},
                               "answerKey": "C"}) + "\n")
    assert run_cli("csqa", "--source", tmp_path, "--split", "train", "--out", tmp_path / "Q.jsonl") == 2
    assert "train.jsonl:1: answerKey 'C' is not one of the labels" in capsys.readouterr().err
    assert not (tmp_path / "L.txt").exists() and not (tmp_path / "Q.jsonl").exists()
