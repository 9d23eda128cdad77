"""The download code, for real, against an HTTP server on 127.0.0.1 serving small fixture files."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from kcs.data import conceptnet, corpora, csqa, download, wordnet
from kcs.errors import KcsError

from data_fixtures import FIXTURES, leftovers, run_cli, serve

BODY = b"kcs fixture body\n" * 4096  # 69,632 bytes: several reads


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_streams_verifies_and_renames(tmp_path):
    with serve({"/f.bin": BODY}) as server:
        digest = download.download(server.url("/f.bin"), tmp_path / "sub" / "f.bin", sha(BODY))
    assert digest == sha(BODY) and (tmp_path / "sub" / "f.bin").read_bytes() == BODY
    assert leftovers(tmp_path) == ["sub", "sub/f.bin"]


def test_checksum_mismatch_leaves_nothing(tmp_path):
    with serve({"/f.bin": BODY}) as server:
        with pytest.raises(KcsError, match="checksum mismatch.*not kept"):
            download.download(server.url("/f.bin"), tmp_path / "f.bin", sha(b"other"))
    assert leftovers(tmp_path) == []


def test_interrupted_download_leaves_nothing_and_keeps_an_older_file(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"previous good copy")
    with serve({"/f.bin": BODY}, truncated={"/f.bin"}) as server:
        with pytest.raises(KcsError, match="interrupted"):
            download.download(server.url("/f.bin"), tmp_path / "f.bin")
    assert leftovers(tmp_path) == ["f.bin"] and (tmp_path / "f.bin").read_bytes() == b"previous good copy"


def test_http_error_and_refused_connection(tmp_path):
    with serve({}) as server:
        with pytest.raises(KcsError, match="HTTP 404"):
            download.download(server.url("/missing"), tmp_path / "f")
        dead = server.url("/x")
    with pytest.raises(KcsError, match="failed"):
        download.download(dead, tmp_path / "f", timeout=5)
    assert leftovers(tmp_path) == []


def test_first_download_pins_the_checksum_and_later_ones_must_match(tmp_path):
    lock = tmp_path / "lock.json"
    with serve({"/a.zip": BODY}) as server:
        download.download_pinned("thing/a.zip", server.url("/a.zip"), tmp_path / "a.zip", lock=lock)
        assert json.loads(lock.read_text())["thing/a.zip"]["sha256"] == sha(BODY)
        server.set("/a.zip", BODY + b"changed upstream")
        with pytest.raises(KcsError, match="checksum mismatch"):
            download.download_pinned("thing/a.zip", server.url("/a.zip"), tmp_path / "b.zip", lock=lock)
        assert not (tmp_path / "b.zip").exists()
        # An explicit --sha256 wins over the lock (and is recorded).
        new = sha(BODY + b"changed upstream")
        download.download_pinned("thing/a.zip", server.url("/a.zip"), tmp_path / "b.zip", sha256=new, lock=lock)
        assert json.loads(lock.read_text())["thing/a.zip"]["sha256"] == new


def test_a_failed_first_download_pins_nothing(tmp_path):
    lock = tmp_path / "lock.json"
    with serve({"/a.zip": BODY}, truncated={"/a.zip"}) as server:
        with pytest.raises(KcsError):
            download.download_pinned("thing/a.zip", server.url("/a.zip"), tmp_path / "a.zip", lock=lock)
    assert leftovers(tmp_path) == []


def lama_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("data/ConceptNet/test.jsonl", (FIXTURES / "lama/ConceptNet/test.jsonl").read_bytes())
        zipped.writestr("data/Google_RE/place_of_birth_test.jsonl", b"{}\n")
    return buffer.getvalue()


def test_download_lama_keeps_conceptnet_and_pins_it(tmp_path):
    archive = lama_zip()
    lock = tmp_path / "lock.json"
    with serve({"/LAMA/data.zip": archive}) as server:
        assert run_cli("download-lama", "--to", tmp_path / "lama", "--url", server.url("/LAMA/data.zip"),
                       "--lock", lock) == 0
    assert leftovers(tmp_path / "lama") == [".kcs_output", "ConceptNet", "ConceptNet/test.jsonl"]
    assert len(conceptnet.read_lama(tmp_path / "lama")) == 113
    assert json.loads(lock.read_text())[conceptnet.LAMA_LOCK_NAME]["sha256"] == sha(archive)


@pytest.mark.parametrize("failure", ["checksum", "interrupted", "not-a-zip"])
def test_a_failed_lama_download_leaves_nothing(tmp_path, failure):
    archive = lama_zip() if failure != "not-a-zip" else b"<html>not a zip</html>"
    expected = sha(b"x") if failure == "checksum" else None
    truncated = {"/data.zip"} if failure == "interrupted" else set()
    with serve({"/data.zip": archive}, truncated=truncated) as server:
        with pytest.raises(KcsError):
            conceptnet.download_lama(tmp_path / "lama", url=server.url("/data.zip"), sha256=expected,
                                     lock=tmp_path / "lock.json")
    assert leftovers(tmp_path) == []


def test_download_csqa_fetches_and_validates_the_original_files(tmp_path, monkeypatch):
    files = {f"/csqa/{name}": (FIXTURES / "csqa" / name).read_bytes() for name in csqa.ORIGINAL_FILES.values()}
    with serve(files) as server:
        monkeypatch.setenv("KCS_CSQA_BASE_URL", server.url("/csqa"))  # the environment override
        assert run_cli("download-csqa", "--to", tmp_path / "csqa", "--lock", tmp_path / "lock.json") == 0
    rows = csqa.read_csqa(tmp_path / "csqa", "validation")
    assert [r["id"] for r in rows] == ["kcs-fixture-dev-1", "kcs-fixture-dev-2"] and rows[0]["answer_index"] == 2
    assert len(json.loads((tmp_path / "lock.json").read_text())) == 3


def test_a_broken_csqa_file_is_not_installed(tmp_path):
    files = {f"/{name}": (FIXTURES / "csqa" / name).read_bytes() for name in csqa.ORIGINAL_FILES.values()}
    files["/dev_rand_split.jsonl"] = b'{"id": "x", "question": {"stem": "?"}}\n'
    with serve(files) as server:
        with pytest.raises(KcsError, match="dev_rand_split.jsonl:1"):
            csqa.download_csqa(tmp_path / "csqa", base_url=server.base_url, lock=tmp_path / "lock.json")
    assert not (tmp_path / "csqa").exists()


def wikitext_parquet(lines: list[str]) -> bytes:
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"text": lines}).to_parquet(buffer)
    return buffer.getvalue()


def test_download_wikitext_writes_one_text_file_per_split(tmp_path):
    splits = {
        "train": ["", " = Valkyria Chronicles III = \n", "", " Senjō no Valkyria 3 is a game . \n"],
        "validation": [" = Homarus gammarus = \n", " It is a lobster . \n"],
        "test": [" = Robert Boulter = \n", " He is an actor . \n", " He was born in 1980 . \n"],
    }
    files = {f"/wt/{corpora.wikitext_parquet_name(s)}": wikitext_parquet(lines) for s, lines in splits.items()}
    with serve(files) as server:
        assert run_cli("download-wikitext", "--to", tmp_path / "wt", "--base-url", server.url("/wt"),
                       "--lock", tmp_path / "lock.json") == 0
    assert sorted(p.name for p in (tmp_path / "wt").iterdir()) == [".kcs_output", "SOURCE.json", "test.txt",
                                                                  "train.txt", "validation.txt"]
    assert corpora.wikitext_lines("train", tmp_path / "wt") == ["", " = Valkyria Chronicles III = ", "",
                                                               " Senjō no Valkyria 3 is a game . "]
    out = tmp_path / "L.txt"
    assert run_cli("controllm", "--source", "wikitext", "--split", "test", "--dir", tmp_path / "wt",
                   "--fraction", "0.34", "--out", out) == 0
    assert out.read_text() == " = Robert Boulter = \n"


def test_an_interrupted_wikitext_download_leaves_nothing(tmp_path):
    files = {f"/{corpora.wikitext_parquet_name(s)}": wikitext_parquet(["a line"]) for s in corpora.SPLITS}
    with serve(files, truncated={"/" + corpora.wikitext_parquet_name("test")}) as server:
        with pytest.raises(KcsError, match="interrupted"):
            corpora.download_wikitext(tmp_path / "wt", base_url=server.base_url, lock=tmp_path / "lock.json")
    assert not (tmp_path / "wt").exists()


def nltk_index(package_url: str, archive: bytes, *, sha256: str | None = None) -> bytes:
    checksum = f' sha256_checksum="{sha256}"' if sha256 else ""
    return (f'<?xml version="1.0"?>\n<nltk_data><packages>\n<package id="wordnet" name="WordNet" subdir="corpora" '
            f'url="{package_url}" size="{len(archive)}" unzipped_size="1" '
            f'checksum="{hashlib.md5(archive).hexdigest()}"{checksum} unzip="1" />\n'
            f'</packages><collections></collections></nltk_data>\n').encode()


@pytest.fixture(scope="module")
def wordnet_package(wordnet_dir) -> bytes:
    """The real WordNet 3.0 files as an nltk data package (wordnet.zip, stored)."""
    buffer = io.BytesIO()
    corpus = wordnet_dir / "corpora" / "wordnet"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
        for name in [*wordnet.DATABASE_FILES, "lexnames"]:
            zipped.write(corpus / name, f"wordnet/{name}")
    return buffer.getvalue()


def test_download_wordnet_from_an_nltk_data_server(tmp_path, wordnet_package, monkeypatch):
    with serve({"/packages/corpora/wordnet.zip": wordnet_package}) as server:
        server.set("/index.xml", nltk_index(server.url("/packages/corpora/wordnet.zip"), wordnet_package,
                                            sha256=sha(wordnet_package)))
        monkeypatch.setenv("KCS_NLTK_INDEX_URL", server.url("/index.xml"))
        assert run_cli("download-wordnet", "--to", tmp_path / "nltk_data") == 0
    assert leftovers(tmp_path / "nltk_data" / "corpora") == ["wordnet"] + [
        f"wordnet/{n}" for n in sorted([".kcs_output", *wordnet.DATABASE_FILES, "lexnames"])]
    wn = wordnet.load_wordnet(tmp_path / "nltk_data")
    assert [s.name() for s in wn.synset("cabin.n.02").hypernyms()] == ["house.n.01"]


@pytest.mark.parametrize("failure", ["md5", "interrupted"])
def test_a_failed_wordnet_download_leaves_nothing(tmp_path, wordnet_package, failure):
    truncated = {"/wordnet.zip"} if failure == "interrupted" else set()
    with serve({"/wordnet.zip": wordnet_package}, truncated=truncated) as server:
        index = nltk_index(server.url("/wordnet.zip"), wordnet_package)
        if failure == "md5":
            index = index.replace(hashlib.md5(wordnet_package).hexdigest().encode(), b"0" * 32)
        server.set("/index.xml", index)
        with pytest.raises(KcsError, match="md5|interrupted"):
            wordnet.download_wordnet(tmp_path / "nltk_data", index_url=server.url("/index.xml"))
    assert leftovers(tmp_path / "nltk_data") == []
