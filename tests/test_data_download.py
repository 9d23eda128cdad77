"""The downloads (pooch, huggingface_hub, nltk's downloader), for real, against an HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from kcs.data import conceptnet, corpora, csqa, download, wordnet_install
from kcs.errors import KcsError

from data_fixtures import FIXTURES, HUB_HEADERS, hub_path, leftovers, run_cli, serve

BODY = b"kcs fixture body\n" * 4096  # 69,632 bytes: several reads


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- pooch and the lock file --------------------------------------------------------------------

def test_fetch_writes_the_whole_file_and_nothing_else(tmp_path):
    with serve({"/f.bin": BODY}) as server:
        path = download.fetch(server.url("/f.bin"), tmp_path / "sub" / "f.bin")
    assert path == tmp_path / "sub" / "f.bin" and path.read_bytes() == BODY
    assert leftovers(tmp_path) == ["sub", "sub/f.bin"]


def test_an_interrupted_download_leaves_nothing(tmp_path):
    with serve({"/f.bin": BODY}, truncated={"/f.bin"}) as server:
        with pytest.raises(KcsError, match="interrupted.*run the command again"):
            download.fetch(server.url("/f.bin"), tmp_path / "f.bin")
    assert leftovers(tmp_path) == []


def test_http_error_and_refused_connection_name_the_url(tmp_path):
    with serve({}) as server:
        with pytest.raises(KcsError, match=f"{server.url('/missing')} failed: HTTP 404.*check the URL"):
            download.fetch(server.url("/missing"), tmp_path / "f")
        dead = server.url("/x")
    with pytest.raises(KcsError, match=f"{dead} failed.*ConnectionError"):
        download.fetch(dead, tmp_path / "f")
    assert leftovers(tmp_path) == []


def test_first_download_pins_the_checksum_and_later_ones_must_match(tmp_path):
    lock = tmp_path / "lock.json"
    with serve({"/a.zip": BODY}) as server:
        assert download.download_pinned("thing/a.zip", server.url("/a.zip"), tmp_path / "a.zip", lock=lock) == sha(BODY)
        assert json.loads(lock.read_text())["thing/a.zip"]["sha256"] == sha(BODY)
        server.set("/a.zip", BODY + b"changed upstream")
        with pytest.raises(KcsError, match="checksum mismatch.*not kept.*delete 'thing/a.zip'"):
            download.download_pinned("thing/a.zip", server.url("/a.zip"), tmp_path / "b.zip", lock=lock)
        assert not (tmp_path / "b.zip").exists()
        # An explicit --sha256 wins over the lock (and is recorded).
        new = sha(BODY + b"changed upstream")
        download.download_pinned("thing/a.zip", server.url("/a.zip"), tmp_path / "b.zip", sha256=new.upper(), lock=lock)
        assert json.loads(lock.read_text())["thing/a.zip"]["sha256"] == new


@pytest.mark.parametrize("failure", ["interrupted", "checksum", "invalid"])
def test_a_failed_first_download_pins_nothing_and_keeps_nothing(tmp_path, failure):
    lock = tmp_path / "lock.json"

    def refuse(path):
        raise KcsError(f"{path}: not what we want")

    with serve({"/a.zip": BODY}, truncated={"/a.zip"} if failure == "interrupted" else set()) as server:
        with pytest.raises(KcsError) as err:
            download.download_pinned("thing/a.zip", server.url("/a.zip"), tmp_path / "a.zip", lock=lock,
                                     sha256=sha(b"other") if failure == "checksum" else None,
                                     validate=refuse if failure == "invalid" else None)
    if failure == "invalid":  # the content check's message names the URL, not the file it checked
        assert str(err.value) == f"{server.url('/a.zip')}: not what we want"
    assert leftovers(tmp_path) == []


# --- LAMA and CommonsenseQA (pooch) --------------------------------------------------------------

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
        with pytest.raises(KcsError, match={"checksum": "checksum mismatch", "interrupted": "interrupted",
                                            "not-a-zip": "data.zip: not a zip archive"}[failure]):
            conceptnet.download_lama(tmp_path / "lama", url=server.url("/data.zip"), sha256=expected,
                                     lock=tmp_path / "lock.json")
    assert leftovers(tmp_path) == []


def test_a_failed_forced_download_keeps_the_installed_copy(tmp_path, capsys):
    with serve({"/data.zip": lama_zip()}) as server:
        conceptnet.download_lama(tmp_path / "lama", url=server.url("/data.zip"), lock=tmp_path / "lock.json")
    before = leftovers(tmp_path)
    with serve({}) as server:
        assert run_cli("download-lama", "--to", tmp_path / "lama", "--url", server.url("/data.zip"),
                       "--lock", tmp_path / "lock.json", "--force") == 2
    assert f"{server.url('/data.zip')} failed: HTTP 404" in capsys.readouterr().err
    assert leftovers(tmp_path) == before and len(conceptnet.read_lama(tmp_path / "lama")) == 113


def test_download_csqa_fetches_and_validates_the_original_files(tmp_path, monkeypatch):
    files = {f"/csqa/{name}": (FIXTURES / "csqa" / name).read_bytes() for name in csqa.ORIGINAL_FILES.values()}
    with serve(files) as server:
        monkeypatch.setenv("KCS_CSQA_BASE_URL", server.url("/csqa/"))  # the environment override
        assert run_cli("download-csqa", "--to", tmp_path / "csqa", "--lock", tmp_path / "lock.json") == 0
    rows = csqa.read_csqa(tmp_path / "csqa", "validation")
    assert [r["id"] for r in rows] == ["kcs-fixture-dev-1", "kcs-fixture-dev-2"] and rows[0]["answer_index"] == 2
    assert len(json.loads((tmp_path / "lock.json").read_text())) == 3


def test_a_broken_csqa_file_is_neither_installed_nor_pinned(tmp_path):
    files = {f"/{name}": (FIXTURES / "csqa" / name).read_bytes() for name in csqa.ORIGINAL_FILES.values()}
    files["/dev_rand_split.jsonl"] = b'{"id": "x", "question": {"stem": "?"}}\n'
    with serve(files) as server:
        with pytest.raises(KcsError, match=f"{server.url('/dev_rand_split.jsonl')}:1"):
            csqa.download_csqa(tmp_path / "csqa", base_url=server.base_url, lock=tmp_path / "lock.json")
    assert not (tmp_path / "csqa").exists()
    assert list(json.loads((tmp_path / "lock.json").read_text())) == ["commonsenseqa/train_rand_split.jsonl"]


# --- WikiText-2 (huggingface_hub) ---------------------------------------------------------------

def wikitext_parquet(lines: list[str]) -> bytes:
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"text": lines}).to_parquet(buffer)
    return buffer.getvalue()


def wikitext_hub(splits: dict[str, list[str]], revision: str = "main") -> dict[str, bytes]:
    """The parquet files at the paths huggingface_hub fetches them from."""
    return {hub_path(corpora.WIKITEXT_HUB_ID, f"{corpora.WIKITEXT_NAME}/{corpora.wikitext_parquet_name(split)}",
                     revision): wikitext_parquet(lines) for split, lines in splits.items()}


def test_download_wikitext_writes_one_text_file_per_split(tmp_path):
    splits = {
        "train": ["", " = Valkyria Chronicles III = \n", "", " Senjō no Valkyria 3 is a game . \n"],
        "validation": [" = Homarus gammarus = \n", " It is a lobster . \n"],
        "test": [" = Robert Boulter = \n", " He is an actor . \n", " He was born in 1980 . \n"],
    }
    with serve(wikitext_hub(splits, revision="v1"), headers=HUB_HEADERS) as server:
        assert run_cli("download-wikitext", "--to", tmp_path / "wt", "--endpoint", server.base_url, "--revision", "v1",
                       "--lock", tmp_path / "lock.json") == 0
    assert sorted(p.name for p in (tmp_path / "wt").iterdir()) == [".kcs_output", "SOURCE.json", "test.txt",
                                                                  "train.txt", "validation.txt"]
    source = json.loads((tmp_path / "wt" / "SOURCE.json").read_text())
    assert (source["dataset"], source["revision"], source["endpoint"]) == ("Salesforce/wikitext", "v1", server.base_url)
    lock = json.loads((tmp_path / "lock.json").read_text())
    assert lock["wikitext-2-raw-v1/test-00000-of-00001.parquet"]["url"] == server.url(
        "/datasets/Salesforce/wikitext/resolve/v1/wikitext-2-raw-v1/test-00000-of-00001.parquet")
    assert corpora.wikitext_lines("train", tmp_path / "wt") == ["", " = Valkyria Chronicles III = ", "",
                                                               " Senjō no Valkyria 3 is a game . "]
    out = tmp_path / "L.txt"
    assert run_cli("controllm", "--source", "wikitext", "--split", "test", "--dir", tmp_path / "wt",
                   "--fraction", "0.34", "--out", out) == 0
    assert out.read_text() == " = Robert Boulter = \n"


@pytest.mark.parametrize("failure, message", [
    ("interrupted", "test-00000-of-00001.parquet was interrupted"),  # after huggingface_hub's retries (5 s)
    ("missing", "test-00000-of-00001.parquet failed .*--endpoint"),
    ("not-parquet", "test-00000-of-00001.parquet is not a WikiText parquet file"),
    ("checksum", "checksum mismatch for .*test-00000-of-00001.parquet"),
])
def test_a_failed_wikitext_download_leaves_nothing(tmp_path, failure, message):
    files = wikitext_hub({split: ["a line"] for split in corpora.SPLITS})
    test_file = hub_path(corpora.WIKITEXT_HUB_ID, f"{corpora.WIKITEXT_NAME}/{corpora.wikitext_parquet_name('test')}")
    lock = tmp_path / "lock.json"
    if failure == "missing":
        del files[test_file]
    elif failure == "not-parquet":
        files[test_file] = b"<html>rate limited</html>"
    elif failure == "checksum":
        lock.write_text(json.dumps({"wikitext-2-raw-v1/test-00000-of-00001.parquet": {"sha256": sha(b"old")}}))
    truncated = {test_file} if failure == "interrupted" else set()
    with serve(files, truncated=truncated, headers=HUB_HEADERS) as server:
        with pytest.raises(KcsError, match=message):
            corpora.download_wikitext(tmp_path / "wt", endpoint=server.base_url, lock=lock)
    assert leftovers(tmp_path) == (["lock.json"] if lock.exists() else [])


# --- WordNet (nltk's downloader) ----------------------------------------------------------------

def nltk_index(package_url: str, archive: bytes, *, sha256: str | None = None) -> bytes:
    checksum = f' sha256_checksum="{sha256}"' if sha256 else ""
    unzipped = sum(member.file_size for member in zipfile.ZipFile(io.BytesIO(archive)).infolist())  # nltk checks it
    return (f'<?xml version="1.0"?>\n<nltk_data><packages>\n<package id="wordnet" name="WordNet" subdir="corpora" '
            f'url="{package_url}" size="{len(archive)}" unzipped_size="{unzipped}" '
            f'checksum="{hashlib.md5(archive).hexdigest()}"{checksum} unzip="0" />\n'
            f'</packages><collections></collections></nltk_data>\n').encode()


@pytest.fixture(scope="module")
def wordnet_package(wordnet_dir) -> bytes:
    """The real WordNet 3.0 files as an nltk data package (wordnet.zip, stored)."""
    buffer = io.BytesIO()
    corpus = wordnet_dir / "corpora" / "wordnet"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
        for name in [*wordnet_install.DATABASE_FILES, "lexnames"]:
            zipped.write(corpus / name, f"wordnet/{name}")
    return buffer.getvalue()


@pytest.fixture
def nltk_allows_loopback(monkeypatch):
    """nltk's downloader refuses loopback and private addresses (its SSRF guard, `nltk.pathsec.ENFORCE`);
    lifted here so that it can reach the fixture server."""
    import nltk.pathsec

    monkeypatch.setattr(nltk.pathsec, "ENFORCE", False)


@pytest.mark.filterwarnings("ignore:.*SSRF")
def test_download_wordnet_from_an_nltk_data_server(tmp_path, wordnet_package, monkeypatch, nltk_allows_loopback):
    import nltk

    with serve({"/packages/corpora/wordnet.zip": wordnet_package}) as server:
        server.set("/index.xml", nltk_index(server.url("/packages/corpora/wordnet.zip"), wordnet_package,
                                            sha256=sha(wordnet_package)))
        monkeypatch.setenv("KCS_NLTK_INDEX_URL", server.url("/index.xml"))
        assert run_cli("download-wordnet", "--to", tmp_path / "nltk_data") == 0
    assert leftovers(tmp_path / "nltk_data") == ["corpora", "corpora/wordnet"] + [
        f"corpora/wordnet/{n}" for n in sorted([".kcs_output", *wordnet_install.DATABASE_FILES, "lexnames"])]
    assert not [p for p in nltk.data.path if ".wordnet-download." in str(p)]  # the staging folder is forgotten
    wn = wordnet_install.load_wordnet(tmp_path / "nltk_data")
    assert [s.name() for s in wn.synset("cabin.n.02").hypernyms()] == ["house.n.01"]


@pytest.mark.filterwarnings("ignore:.*SSRF")
@pytest.mark.parametrize("failure, message", [("md5", "md5 mismatch"), ("interrupted", "size mismatch"),
                                              ("no-index", "HTTP Error 404")])
def test_a_failed_wordnet_download_leaves_nothing(tmp_path, wordnet_package, nltk_allows_loopback, failure, message):
    truncated = {"/wordnet.zip"} if failure == "interrupted" else set()
    with serve({"/wordnet.zip": wordnet_package}, truncated=truncated) as server:
        index = nltk_index(server.url("/wordnet.zip"), wordnet_package)
        if failure == "md5":
            index = index.replace(hashlib.md5(wordnet_package).hexdigest().encode(), b"0" * 32)
        if failure != "no-index":
            server.set("/index.xml", index)
        with pytest.raises(KcsError, match=f"nltk could not download WordNet .*{message}.*Nothing was installed"):
            wordnet_install.download_wordnet(tmp_path / "nltk_data", index_url=server.url("/index.xml"))
    assert leftovers(tmp_path / "nltk_data") == []


def test_nltk_refuses_a_loopback_server_and_the_command_says_so(tmp_path, capsys):
    with serve({}) as server:
        assert run_cli("download-wordnet", "--to", tmp_path / "nltk_data", "--index-url", server.url("/index.xml")) == 2
    error = capsys.readouterr().err
    assert "SSRF" in error and server.url("/index.xml") in error and "--index-url" in error
    assert leftovers(tmp_path / "nltk_data") == []
