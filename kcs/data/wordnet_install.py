"""WordNet 3.0 for nltk: installing it, finding it and loading it (sampling is `kcs.data.wordnet`).

Getting the data (the paper used nltk's WordNet 3.0):
- offline: Debian `wordnet-base` installs the WordNet 3.0 database in `/usr/share/wordnet` but
  not the `lexnames` file nltk's reader needs; `install_from_directory` copies the database into
  `<nltk_data>/corpora/wordnet/` and writes `lexnames` from the table in the same package's
  man page `lexnames.5WN` (`scripts/install_wordnet.sh` does all of it);
- online: `download_wordnet` runs nltk's own downloader (`nltk.download('wordnet')`) against the
  nltk data server, whose index URL is overridable.
nltk only reads corpora inside its data path, so the folder handed to kcs is the nltk data folder
(holding `corpora/wordnet/`): `--wordnet-dir DIR`, else `NLTK_DATA`, else `resources/nltk_data`.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

from kcs.atomic import atomic_dir
from kcs.data.paths import default_wordnet_dir
from kcs.errors import KcsError

log = logging.getLogger(__name__)

# The database files nltk's reader opens (index.sense and cntlist.rev are optional: only
# sense-key lookups and lemma counts use them, and Debian's wordnet-base lacks index.sense).
DATABASE_FILES = (
    "data.noun", "data.verb", "data.adj", "data.adv",
    "index.noun", "index.verb", "index.adj", "index.adv",
    "noun.exc", "verb.exc", "adj.exc", "adv.exc",
)
OPTIONAL_FILES = ("cntlist.rev", "index.sense", "LICENSE")
# WordNet 3.0 has 82,115 noun synsets (3.1 has 82,192): how we tell the paper's version apart.
WORDNET30_NOUN_SYNSETS = 82115
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
DEBIAN_LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")
DEBIAN_COPYRIGHT = Path("/usr/share/doc/wordnet-base/copyright")

HOW_TO_INSTALL = (
    "Install WordNet 3.0 offline with `scripts/install_wordnet.sh` (Debian package wordnet-base, laid out "
    "in resources/nltk_data), or online with `python -c \"import nltk; nltk.download('wordnet')\"` "
    "(or `kcs data download-wordnet --to resources/nltk_data`); then point kcs at the nltk data folder "
    "with --wordnet-dir or NLTK_DATA"
)

_POS_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


# --- installing from a WordNet database folder (offline) ----------------------------------------

def parse_lexnames_man(text: str) -> list[tuple[int, str, int]]:
    """The (number, name, syntactic category) rows of the table in the lexnames(5WN) man page."""
    rows = []
    for line in text.splitlines():
        match = re.match(r"^(\d\d)\t\s*([a-z]+\.[A-Za-z]+)\s*\t", line)
        if match:
            number, name = int(match.group(1)), match.group(2)
            rows.append((number, name, _POS_CATEGORY[name.split(".")[0]]))
    if [number for number, _, _ in rows] != list(range(len(rows))) or len(rows) != 45:
        raise KcsError(
            f"the lexnames man page table has {len(rows)} usable rows, expected 45 numbered 00-44; "
            "is it the lexnames.5WN page of WordNet 3.0?"
        )
    return rows


def lexnames_text(rows: list[tuple[int, str, int]]) -> str:
    return "".join(f"{number:02d}\t{name}\t{category}\n" for number, name, category in rows)


def read_lexnames_man(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.is_file():
        raise KcsError(
            f"{path}: lexnames man page not found. It comes with the Debian package wordnet-base; on systems "
            "that drop man pages (Docker images), `apt-get download wordnet-base` and extract it with "
            "`dpkg-deb -x` (scripts/install_wordnet.sh does this)"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        return handle.read()


def count_synsets(corpus_dir: str | os.PathLike, pos: str = "noun") -> int:
    """Synset lines in `data.<pos>` (the licence header lines start with two spaces)."""
    with open(Path(corpus_dir) / f"data.{pos}", encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if line[:1].isdigit())


def install_from_directory(source: str | os.PathLike, nltk_data: str | os.PathLike, *,
                           lexnames_man: str | os.PathLike | None = DEBIAN_LEXNAMES_MAN,
                           licence: str | os.PathLike | None = DEBIAN_COPYRIGHT,
                           force: bool = False) -> Path:
    """Lay a WordNet database folder (e.g. Debian's /usr/share/wordnet) out for nltk.

    Writes `<nltk_data>/corpora/wordnet/` atomically; `lexnames` is copied when the source has
    one, else written from the man page; `licence` (WordNet's licence text, Debian's copyright
    file by default) is copied as LICENSE when the source has none. Returns the corpus folder. Idempotent: an existing,
    complete install is kept unless `force`.
    """
    source, target = Path(source), Path(nltk_data) / "corpora" / "wordnet"
    if target.is_dir() and not force and _is_complete(target):
        log.info("WordNet already installed in %s (use --force to reinstall)", target)
        return target
    missing = [name for name in DATABASE_FILES if not (source / name).is_file()]
    if missing:
        raise KcsError(
            f"{source}: not a WordNet database folder (missing {', '.join(missing)}). "
            f"On Debian: `apt-get install wordnet-base` installs it in {DEBIAN_WORDNET_DIR}. {HOW_TO_INSTALL}"
        )
    if (source / "lexnames").is_file():
        lexnames = (source / "lexnames").read_text()
    else:
        if lexnames_man is None:
            raise KcsError(f"{source} has no lexnames file; give the lexnames.5WN man page (--lexnames-man)")
        lexnames = lexnames_text(parse_lexnames_man(read_lexnames_man(lexnames_man)))
    with atomic_dir(target) as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the resources are shared
        for name in DATABASE_FILES + OPTIONAL_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, tmp / name)
        (tmp / "lexnames").write_text(lexnames)
        if not (tmp / "LICENSE").exists() and licence is not None and Path(licence).is_file():
            shutil.copyfile(licence, tmp / "LICENSE")
        nouns = count_synsets(tmp)
        if nouns != WORDNET30_NOUN_SYNSETS:
            log.warning("%s has %d noun synsets; WordNet 3.0 (the paper's) has %d", source, nouns,
                        WORDNET30_NOUN_SYNSETS)
    _READERS.pop(str(Path(nltk_data).resolve()), None)
    log.info("installed WordNet from %s into %s", source, target)
    return target


def _is_complete(corpus_dir: Path) -> bool:
    return all((corpus_dir / name).is_file() for name in DATABASE_FILES + ("lexnames",))


# --- downloading with nltk's downloader (online) ------------------------------------------------

def download_wordnet(nltk_data: str | os.PathLike, *, index_url: str | None = None, force: bool = False) -> Path:
    """`nltk.download('wordnet')` from the nltk data server into `<nltk_data>/corpora/wordnet/`.

    The index URL is `index_url`, else env `KCS_NLTK_INDEX_URL`, else nltk's. nltk checks the
    package's size and checksum against its index; it installs into a private staging folder
    (its downloader refuses shared ones) whose `corpora/wordnet/` is then moved into place, so
    a failure leaves nothing. nltk refuses servers on loopback or private addresses (SSRF guard).
    """
    import nltk
    from nltk.downloader import Downloader

    nltk_data = Path(nltk_data)
    target = nltk_data / "corpora" / "wordnet"
    if target.is_dir() and _is_complete(target) and not force:
        log.info("WordNet already installed in %s", target)
        return target
    index_url = index_url or os.environ.get("KCS_NLTK_INDEX_URL") or Downloader.DEFAULT_URL
    nltk_data.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-download.", dir=nltk_data))
    try:
        try:  # nltk prints its error too, then raises it: kcs reports it once, below
            Downloader(server_index_url=index_url).download(
                "wordnet", download_dir=str(staging), quiet=True, raise_on_error=True, extract=True,
                print_error_to=io.StringIO())
        except ValueError as err:
            raise KcsError(f"nltk could not download WordNet (index {index_url}): {err}. Nothing was installed; "
                           f"run the command again, or give another --index-url. {HOW_TO_INSTALL}") from None
        unpacked = staging / "corpora" / "wordnet"
        if not _is_complete(unpacked):
            raise KcsError(f"the WordNet package listed in {index_url} lacks database files. {HOW_TO_INSTALL}")
        with atomic_dir(target) as tmp:
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the resources are shared
            for path in unpacked.iterdir():
                shutil.move(str(path), tmp / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if os.path.realpath(staging) in nltk.data.path:  # nltk's downloader added it to its data path
            nltk.data.path.remove(os.path.realpath(staging))
    _READERS.pop(str(nltk_data.resolve()), None)
    log.info("downloaded WordNet from %s into %s", index_url, target)
    return target


# --- finding and loading ------------------------------------------------------------------------

_READERS: dict[str, object] = {}


def _holds_wordnet(nltk_data: Path) -> bool:
    return (nltk_data / "corpora" / "wordnet" / "lexnames").is_file() or (
        nltk_data / "corpora" / "wordnet.zip").is_file()


def find_wordnet(wordnet_dir: str | os.PathLike | None = None) -> Path:
    """The nltk data folder to read WordNet from: explicit, else NLTK_DATA, else resources/nltk_data."""
    if wordnet_dir is not None:
        folder = Path(wordnet_dir)
        if folder.name == "wordnet" and folder.parent.name == "corpora":
            folder = folder.parent.parent  # accept the corpus folder itself
        if not _holds_wordnet(folder):
            raise KcsError(f"{folder}: no WordNet here (expected {folder}/corpora/wordnet/). {HOW_TO_INSTALL}")
        return folder
    candidates = [Path(p) for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    candidates.append(default_wordnet_dir())
    for folder in candidates:
        if _holds_wordnet(folder):
            return folder
    raise KcsError(f"WordNet not found (looked in {', '.join(map(str, candidates))}). {HOW_TO_INSTALL}")


def load_wordnet(wordnet_dir: str | os.PathLike | None = None):
    """An nltk WordNetCorpusReader on the WordNet found by `find_wordnet` (cached per folder)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    folder = find_wordnet(wordnet_dir).resolve()
    key = str(folder)
    if key not in _READERS:
        if key not in nltk.data.path:
            nltk.data.path.insert(0, key)  # nltk refuses corpus folders outside its data path
        unzipped = (folder / "corpora" / "wordnet").is_dir()
        root = nltk.data.find("corpora/wordnet" if unzipped else "corpora/wordnet.zip/wordnet/", paths=[key])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "multilingual functions are not available": not needed
            _READERS[key] = _reader_class(WordNetCorpusReader)(root, None)
        log.debug("loaded WordNet from %s", root)
    return _READERS[key]


def _reader_class(base):
    class EnglishWordNetReader(base):
        """nltk's reader without the Open Multilingual WordNet sense mapping it builds at start-up:
        kcs never uses it, it doubles the load time, and it needs `index.sense`, which Debian
        ships in a separate package (wordnet-sense-index)."""

        def map_wn(self, version="wordnet"):
            return None

    return EnglishWordNetReader
