"""WordNet 3.0 (the real database installed under resources/): install (wordnet_install), lookup, sampling,
ControlKG (wordnet)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kcs.data import wordnet as wordnet_mod
from kcs.data import wordnet_install
from kcs.errors import KcsError

from data_fixtures import PAPER_DATA, WORDNET_ROOTS, leftovers, run_cli

DEBIAN_WORDNET = Path("/usr/share/wordnet")
LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")


def test_the_installed_wordnet_is_version_3_0(wn, wordnet_dir):
    assert wn.get_version() == "3.0"
    assert wordnet_install.count_synsets(wordnet_dir / "corpora" / "wordnet") == wordnet_install.WORDNET30_NOUN_SYNSETS
    assert sorted(s.name() for s in wn.synset("dog.n.01").hypernyms()) == ["canine.n.02", "domestic_animal.n.01"]
    lexnames = (wordnet_dir / "corpora" / "wordnet" / "lexnames").read_text().splitlines()
    assert len(lexnames) == 45 and lexnames[3] == "03\tnoun.Tops\t1" and lexnames[44] == "44\tadj.ppl\t3"


@pytest.mark.skipif(not LEXNAMES_MAN.is_file(), reason="Debian's lexnames.5WN man page is not installed")
def test_lexnames_are_parsed_from_the_debian_man_page():
    rows = wordnet_install.parse_lexnames_man(wordnet_install.read_lexnames_man(LEXNAMES_MAN))
    assert len(rows) == 45
    assert rows[18] == (18, "noun.person", 1)  # the man page pads this row with spaces
    assert rows[29] == (29, "verb.body", 2) and rows[2] == (2, "adv.all", 4)


def test_a_truncated_lexnames_table_is_refused():
    text = "".join(f"{i:02d}\tnoun.x{i}\tnouns\n" for i in range(10))
    with pytest.raises(KcsError, match="expected 45"):
        wordnet_install.parse_lexnames_man(text)


@pytest.mark.skipif(not (DEBIAN_WORDNET / "data.noun").is_file(), reason="Debian wordnet-base is not installed")
def test_install_from_debian_folder_is_idempotent_and_loadable(tmp_path):
    target = run_cli("install-wordnet", "--from", DEBIAN_WORDNET, "--lexnames-man", LEXNAMES_MAN, "--to", tmp_path)
    assert target == 0
    corpus = tmp_path / "corpora" / "wordnet"
    stamp = (corpus / "lexnames").stat().st_mtime_ns
    assert wordnet_install.install_from_directory(DEBIAN_WORDNET, tmp_path) == corpus
    assert (corpus / "lexnames").stat().st_mtime_ns == stamp  # second run kept the install
    assert wordnet_install.load_wordnet(tmp_path).synset("building.n.01").lemmas()[0].name() == "building"


def test_install_from_a_folder_that_is_not_wordnet_leaves_nothing(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "data.noun").write_text("x")
    with pytest.raises(KcsError, match="not a WordNet database folder.*install_wordnet.sh"):
        wordnet_install.install_from_directory(source, tmp_path / "nltk_data")
    assert leftovers(tmp_path / "nltk_data") == []


def test_missing_wordnet_names_both_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KCS_RESOURCES", str(tmp_path))
    monkeypatch.delenv("NLTK_DATA", raising=False)
    with pytest.raises(KcsError) as err:
        wordnet_install.find_wordnet()
    assert "scripts/install_wordnet.sh" in str(err.value) and "nltk.download('wordnet')" in str(err.value)
    with pytest.raises(KcsError, match="no WordNet here"):
        wordnet_install.find_wordnet(tmp_path)


def test_nltk_data_env_is_honoured(wordnet_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KCS_RESOURCES", str(tmp_path))  # the default location is empty
    monkeypatch.setenv("NLTK_DATA", str(wordnet_dir))
    assert wordnet_install.find_wordnet() == wordnet_dir


def test_unknown_synset_lists_near_matches(wn):
    with pytest.raises(KcsError, match=r"unknown synset 'building\.n\.09'.*building\.n\.01"):
        wordnet_mod.get_synset(wn, "building.n.09")
    with pytest.raises(KcsError, match=r"unknown synset 'buildng\.n\.01'.*near matches: building\.n\.01"):
        wordnet_mod.get_synset(wn, "buildng.n.01")
    with pytest.raises(KcsError, match="not a WordNet synset id"):
        wordnet_mod.get_synset(wn, "building")


@pytest.mark.parametrize("root", ["building.n.01", "magnitude.n.01"])
def test_sampling_is_deterministic_and_stays_in_the_neighbourhood(wn, root):
    first = wordnet_mod.sample_neighbourhood(wn, root, size=15, hops=2, up=2, seed=3)
    again = wordnet_mod.sample_neighbourhood(wn, root, size=15, hops=2, up=2, seed=3)
    other = wordnet_mod.sample_neighbourhood(wn, root, size=15, hops=2, up=2, seed=4)
    assert first == again and first != other
    assert len(first) == len(set(first)) == 15
    synset = wn.synset(root)
    parent = synset.hypernyms()[0]
    assert (root, parent.name()) in first  # the root's own hypernym edge is always there
    for head, tail in first:
        h, t = wn.synset(head), wn.synset(tail)
        assert t in h.hypernyms()  # a real hypernym edge
        above = head == root or any(head == s.name() for s in synset.hypernyms())
        # below: the head descends from the root within 2 levels
        below = any(synset in path[-3:-1] for path in h.hypernym_paths())
        assert above or below, (head, tail)


def test_the_paper_targetkgs_lie_in_the_sampled_neighbourhood(wn):
    """The sampler's candidate edges (hops=2, up=2) contain every edge of the authors' 7 TargetKGs."""
    if not PAPER_DATA.is_dir():
        pytest.skip(f"{PAPER_DATA} (the authors' files) is not beside the checkout")
    for root in WORDNET_ROOTS:
        rows = json.loads((PAPER_DATA / "wordnet" / "targetkg" / f"{root}_best_format.json").read_text())
        synset = wn.synset(root)
        candidates = set(wordnet_mod.upward_edges(synset, 2)) | set(wordnet_mod.downward_edges(synset, 2))
        assert {(r["head"], r["tail"]) for r in rows} <= candidates, root


def test_too_large_a_sample_is_an_error(wn):
    with pytest.raises(KcsError, match="lower --size"):
        wordnet_mod.sample_neighbourhood(wn, "magnitude.n.01", size=5000, hops=1)


def test_controlkg_avoids_every_targetkg_synset(wn):
    targets = [wordnet_mod.sample_neighbourhood(wn, root, size=12, seed=0) for root in WORDNET_ROOTS]
    exclude = set().union(*(wordnet_mod.synsets_of(t) for t in targets))
    train, val, test = wordnet_mod.sample_controlkg(wn, exclude, train_size=300, val_size=50, seed=1)
    assert len(train) == 300 and len(val) == 50 and test == []
    assert not wordnet_mod.synsets_of(train + val) & exclude
    heads = [h for h, _ in train + val]
    assert len(set(heads)) == len(heads)  # distinct heads, so train and val are disjoint
    for head, tail in train[:40] + val:
        assert wn.synset(tail) in wn.synset(head).hypernyms() and head.split(".")[-2] == "n"
    again_train, again_val, _ = wordnet_mod.sample_controlkg(wn, exclude, train_size=100, val_size=50, seed=1)
    assert again_val == val  # the validation rows do not depend on the train size


def test_controlkg_test_split_is_held_out_and_changes_nothing_else(wn):
    targets = [wordnet_mod.sample_neighbourhood(wn, root, size=12, seed=0) for root in WORDNET_ROOTS]
    exclude = set().union(*(wordnet_mod.synsets_of(t) for t in targets))
    train, val, _ = wordnet_mod.sample_controlkg(wn, exclude, train_size=200, val_size=50, seed=3)
    with_test = wordnet_mod.sample_controlkg(wn, exclude, train_size=200, val_size=50, test_size=120, seed=3)
    assert with_test[:2] == (train, val)  # adding a test split leaves the training and validation data alone
    test = with_test[2]
    assert len(test) == 120 and len(set(test)) == 120
    test_heads = {h for h, _ in test}
    assert len(test_heads) == 120 and not test_heads & {h for h, _ in train + val}  # no shared head, so no shared edge
    assert not wordnet_mod.synsets_of(test) & exclude  # nothing of the TargetKGs either
    for head, tail in test[:30]:
        assert wn.synset(tail) in wn.synset(head).hypernyms() and head.split(".")[-2] == "n"
    other_seed = wordnet_mod.sample_controlkg(wn, exclude, train_size=200, val_size=50, test_size=120, seed=4)[2]
    assert other_seed != test


@pytest.mark.parametrize("sizes, message", [
    (dict(test_size=-1), "--test-size must be >= 0"),
    (dict(test_size=10 ** 6), r"lower --train-size/--val-size/--test-size \(asked 10 \+ 5 \+ 1000000"),
])
def test_bad_controlkg_sizes_name_the_option(wn, sizes, message):
    with pytest.raises(KcsError, match=message):
        wordnet_mod.sample_controlkg(wn, set(), **{"train_size": 10, "val_size": 5, **sizes})


def test_sample_and_controlkg_commands(tmp_path, wordnet_dir):
    target = tmp_path / "T.jsonl"
    assert run_cli("sample-wordnet", "--root", "building.n.01", "--size", "11", "--seed", "0", "--out", target,
                   "--wordnet-dir", wordnet_dir) == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 11 and rows[0] == {"head": "building.n.01", "relation": "IsA", "tail": "structure.n.01",
                                           "source": "wordnet:building.n.01"}
    assert json.loads((tmp_path / "T.jsonl.provenance.json").read_text())["seed"] == 0
    train, val, test = tmp_path / "C.train.jsonl", tmp_path / "C.val.jsonl", tmp_path / "C.test.jsonl"
    assert run_cli("wordnet-controlkg", "--exclude", target, "--train-size", "60", "--val-size", "20", "--seed", "0",
                   "--out-train", train, "--out-val", val, "--wordnet-dir", wordnet_dir) == 0
    target_synsets = {r["head"] for r in rows} | {r["tail"] for r in rows}
    control = [json.loads(line) for path in (train, val) for line in path.read_text().splitlines()]
    assert len(control) == 80
    assert not target_synsets & ({r["head"] for r in control} | {r["tail"] for r in control})
    # the test split alone (as the pipeline writes it): the same draw, continued
    assert run_cli("wordnet-controlkg", "--exclude", target, "--train-size", "60", "--val-size", "20", "--seed", "0",
                   "--test-size", "15", "--out-test", test, "--wordnet-dir", wordnet_dir) == 0
    held_out = [json.loads(line) for line in test.read_text().splitlines()]
    assert len(held_out) == 15 and {r["source"] for r in held_out} == {"wordnet:controlkg-test"}
    assert not {r["head"] for r in held_out} & {r["head"] for r in control}
    assert not target_synsets & ({r["head"] for r in held_out} | {r["tail"] for r in held_out})
    provenance = json.loads((tmp_path / "C.test.jsonl.provenance.json").read_text())
    assert (provenance["split"], provenance["size"], provenance["test_size"]) == ("test", 15, 15)


@pytest.mark.parametrize("args, message", [
    (["--test-size", "-2", "--out-test", "te.jsonl"], "--test-size must be >= 0"),
    (["--test-size", "5"], "--test-size N .* and --out-test FILE go together"),
    (["--out-test", "te.jsonl"], "--test-size N .* and --out-test FILE go together"),
    (["--test-size", "900000", "--out-test", "te.jsonl"], "lower --train-size/--val-size/--test-size"),
])
def test_controlkg_test_options_are_checked(tmp_path, wordnet_dir, capsys, args, message):
    target = tmp_path / "T.tsv"
    target.write_text("building.n.01\tIsA\tstructure.n.01\n")
    code = run_cli("wordnet-controlkg", "--exclude", target, "--train-size", "5", "--val-size", "5",
                   "--out-train", tmp_path / "tr.jsonl", "--out-val", tmp_path / "va.jsonl",
                   *[tmp_path / a if a.endswith(".jsonl") else a for a in args], "--wordnet-dir", wordnet_dir)
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert leftovers(tmp_path) == ["T.tsv"]  # no split written


def test_controlkg_with_a_bad_exclude_file_writes_nothing(tmp_path, wordnet_dir, capsys):
    bad = tmp_path / "T.tsv"
    bad.write_text("building.n.01\tIsA\tstructure.n.01\nbuildng.n.01\tIsA\tstructure.n.01\n")
    code = run_cli("wordnet-controlkg", "--exclude", bad, "--train-size", "5", "--val-size", "5",
                   "--out-train", tmp_path / "tr.jsonl", "--out-val", tmp_path / "va.jsonl", "--wordnet-dir", wordnet_dir)
    assert code == 2
    assert f"{bad}:2" in capsys.readouterr().err
    assert leftovers(tmp_path) == ["T.tsv"]


def test_sampling_does_not_depend_on_python_hash_order(tmp_path, wordnet_dir):
    """nltk returns hypernyms in set order, which changes between processes: outputs must not."""
    import os
    import subprocess
    import sys

    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"T{hash_seed}.jsonl"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-m", "kcs", "data", "sample-wordnet", "--root", "communication.n.02",
                        "--size", "16", "--seed", "5", "--out", str(out), "--wordnet-dir", str(wordnet_dir)],
                       check=True, env=env, capture_output=True)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") == 16


def test_controlkg_avoids_the_paper_targetkgs_whichever_targetkgs_a_run_has(tmp_path, wordnet_dir):
    """Without --exclude the ControlKG still shares no synset with the paper's seven WordNet TargetKGs
    (a fixed set, as the authors' ControlKG); a new TargetKG changes nothing in it, and a run removes
    the facts touching its own TargetKG with `remove-overlap --by entities` (the count recorded)."""
    from kcs.data.paper import paper_wordnet_synsets
    from kcs.data.triplets import read_triplets
    from kcs.kg import overlap_record

    paper_synsets = paper_wordnet_synsets()
    assert {"building.n.01", "structure.n.01", "communication.n.02"} <= paper_synsets
    train, val = tmp_path / "C.train.jsonl", tmp_path / "C.val.jsonl"
    assert run_cli("wordnet-controlkg", "--train-size", "300", "--val-size", "50", "--seed", "0",
                   "--out-train", train, "--out-val", val, "--wordnet-dir", wordnet_dir) == 0
    control = read_triplets(train) + read_triplets(val)
    assert len(control) == 350 and not paper_synsets & {n for t in control for n in (t.head, t.tail)}
    # a TargetKG around a ControlKG fact's head: its run drops exactly the facts touching its synsets
    target = tmp_path / "T.jsonl"
    root = control[0].head
    assert run_cli("sample-wordnet", "--root", root, "--size", "1", "--hops", "1", "--up", "1", "--out", target,
                   "--wordnet-dir", wordnet_dir) == 0
    entities = {n for t in read_triplets(target) for n in (t.head, t.tail)}
    shared = tmp_path / "C.train.kg.jsonl"  # as verbalised (the sentences do not matter here)
    shared.write_text("".join(json.dumps({**t.to_json(), "prompt": f"{t.head} is a", "target": f" {t.tail}"}) + "\n"
                              for t in read_triplets(train)))
    own = tmp_path / "C.train.T.jsonl"
    assert run_cli("remove-overlap", "--by", "entities", "--targetkg", target, "--controlkg", shared, "--out", own) == 0
    kept = read_triplets(own)
    expected = [t for t in read_triplets(train) if not {t.head, t.tail} & entities]
    assert [t.key for t in kept] == [t.key for t in expected] and len(kept) < 300
    assert overlap_record(own) == {"by": "entities", "removed": 300 - len(kept), "kept": len(kept),
                                   "targetkg": [str(target)]}
    # the record describes this file only: a replaced file is an error, not a wrong count
    own.write_text(own.read_text().splitlines()[0] + "\n")
    with pytest.raises(KcsError, match="another version"):
        overlap_record(own)
