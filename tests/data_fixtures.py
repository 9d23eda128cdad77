"""Fixtures for the data tests: the real WordNet and GPT-2 tokenizer, tiny models, a local HTTP server.

WordNet 3.0 and the GPT-2 tokenizer are the real ones installed under resources/ by
scripts/fetch_offline_resources.sh (which .ci/run calls); a test that needs them fails with the
command to run when they are missing, rather than skipping silently.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "data"
PAPER_DATA = REPO.parent / "shared" / "paper-data"
WORDNET_ROOTS = ("building.n.01", "change.n.01", "communication.n.02", "location.n.01", "magnitude.n.01",
                 "representation.n.02", "statement.n.01")
SETUP_HINT = "run scripts/fetch_offline_resources.sh (as .ci/run does)"


def _wordnet_dir() -> Path:
    from kcs.data.paths import default_wordnet_dir

    folder = default_wordnet_dir()
    if not (folder / "corpora" / "wordnet" / "lexnames").is_file():
        pytest.fail(f"WordNet 3.0 is not installed in {folder}; {SETUP_HINT}")
    return folder


def _tokenizer_dir() -> Path:
    from kcs.data.paths import default_tokenizer_dir

    folder = default_tokenizer_dir()
    if not (folder / "vocab.json").is_file():
        pytest.fail(f"the GPT-2 tokenizer is not installed in {folder}; {SETUP_HINT}")
    return folder


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(_tokenizer_dir()))
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tiny_gpt2(seed: int = 0):
    """A randomly initialised 2-layer GPT-2 with the real 50,257-token vocabulary."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=128)).eval()


# Fixtures (import the ones a test module uses by name; none depends on another).

@pytest.fixture(scope="session")
def wordnet_dir() -> Path:
    return _wordnet_dir()


@pytest.fixture(scope="session")
def wn():
    from kcs.data.wordnet_install import load_wordnet

    return load_wordnet(_wordnet_dir())


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    return _tokenizer()


@pytest.fixture(scope="session")
def tiny_model():
    """(model, tokenizer): the tiny GPT-2 and the real GPT-2 tokenizer."""
    return tiny_gpt2(), _tokenizer()


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory):
    """The tiny GPT-2 saved as a model folder, for the CLI (`--model DIR`)."""
    folder = tmp_path_factory.mktemp("tiny_gpt2")
    tiny_gpt2().save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    return folder


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    truncated: set[str] = set()
    headers_sent: dict[str, str] = {}
    requests: list[str] = []

    def _send_head(self) -> bytes | None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "not found")
            return None
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')  # as the hub does for its large files
        for name, value in self.headers_sent.items():
            self.send_header(name, value)
        self.end_headers()
        return body

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name); huggingface_hub asks for the metadata first
        self._send_head()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        body = self._send_head()
        if body is None:
            return
        if self.path in self.truncated:
            # Announce the whole body, send half of it, hang up: an interrupted download.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class FixtureServer:
    """An HTTP server on 127.0.0.1 serving `files` (path -> bytes); paths in `truncated` break off.

    Every answer carries an ETag (the body's SHA-256) and the extra `headers`."""

    def __init__(self, files: dict[str, bytes], truncated: set[str] = frozenset(), headers: dict[str, str] | None = None):
        handler = type("Handler", (_Handler,), {"files": dict(files), "truncated": set(truncated),
                                                "headers_sent": dict(headers or {}), "requests": []})
        self.handler = handler
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def set(self, path: str, body: bytes) -> None:
        self.handler.files[path] = body

    def __enter__(self) -> "FixtureServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def serve(files: dict[str, bytes], truncated: set[str] = frozenset(),
          headers: dict[str, str] | None = None) -> Iterator[FixtureServer]:
    with FixtureServer(files, truncated, headers) as server:
        yield server


# A Hugging Face hub stand-in: huggingface_hub fetches a dataset file from
# /datasets/{repo}/resolve/{revision}/{filename}, first with HEAD, and requires the commit the
# revision resolved to (X-Repo-Commit) and an ETag; the fixture server sends both.
HUB_HEADERS = {"X-Repo-Commit": "5e1f" * 10}


def hub_path(repo_id: str, filename: str, revision: str = "main") -> str:
    return f"/datasets/{repo_id}/resolve/{revision}/{filename}"


def run_cli(*argv: str) -> int:
    from kcs.cli import main

    return main(["data", *map(str, argv)])


def leftovers(folder: Path) -> list[str]:
    """Every file or folder under `folder` (to prove that a failure left nothing behind)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []
