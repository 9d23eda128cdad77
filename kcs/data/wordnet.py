"""WordNet 3.0 through nltk: installing it, finding it, and sampling hypernym graphs from it.

Getting the data (the paper used nltk's WordNet 3.0):
- offline: Debian `wordnet-base` installs the WordNet 3.0 database in `/usr/share/wordnet` but
  not the `lexnames` file nltk's reader needs; `install_from_directory` copies the database into
  `<nltk_data>/corpora/wordnet/` and writes `lexnames` from the table in the same package's
  man page `lexnames.5WN` (`scripts/install_wordnet.sh` does all of it);
- online: `download_wordnet` fetches the package `nltk.download('wordnet')` installs, from the
  nltk data server (its index URL is overridable).
nltk only reads corpora inside its data path, so the folder handed to kcs is the nltk data folder
(holding `corpora/wordnet/`): `--wordnet-dir DIR`, else `NLTK_DATA`, else `resources/nltk_data`.

Graphs (all edges are `hyponym IsA hypernym`, heads and tails are synset ids like `cabin.n.02`;
`hypernyms()` only, instance hypernyms are left out, as in the authors' files):
- `sample_neighbourhood`: a TargetKG around a root synset, built as the authors' files suggest
  (docs/method.md 3.1): the root's hypernym edges and those `up` levels above it, plus a seeded
  uniform sample of the hyponym edges within `hops` levels below the root; `size` edges in all.
- `sample_controlkg`: the WordNet ControlKG as the paper rebuilt it: random noun hypernym edges
  with distinct heads whose synsets appear in none of the experiment's TargetKGs; validation rows
  are drawn first so their heads do not change with the train size; optional test rows (held out
  from training and tuning alike) are drawn last, from the heads left, so they change nothing else.
Both are deterministic for a given seed and WordNet version.
"""

from __future__ import annotations

import difflib
import gzip
import logging
import os
import random
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

_SYNSET_ID = re.compile(r"^(?P<lemma>.+)\.(?P<pos>[nvasr])\.(?P<sense>\d+)$")
_POS_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


# --- installing ---------------------------------------------------------------------------------

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


NLTK_INDEX_URL = "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/index.xml"


def _index_entry(index_file: Path, index_url: str) -> dict[str, str]:
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.parse(index_file).getroot()
    except ElementTree.ParseError as err:
        raise KcsError(f"{index_url}: not an nltk data index ({err})") from None
    for package in root.iter("package"):
        if package.get("id") == "wordnet":
            if not package.get("url"):
                break
            return dict(package.attrib)
    raise KcsError(f"{index_url}: the nltk data index lists no 'wordnet' package with a url")


def download_wordnet(nltk_data: str | os.PathLike, *, index_url: str | None = None, force: bool = False) -> Path:
    """WordNet from the nltk data server (online), the package `nltk.download('wordnet')` installs.

    Reads the server index (`index_url`, env `KCS_NLTK_INDEX_URL`, default nltk's), downloads the
    `wordnet` package with kcs's downloader (checked against the index's sha256 when given, else
    its md5 and size), unpacks it in a staging folder and moves `corpora/wordnet/` into place:
    a failure leaves nothing. (nltk's own downloader refuses local servers, which tests use.)
    """
    import hashlib
    import zipfile

    from kcs.data.download import download

    nltk_data = Path(nltk_data)
    target = nltk_data / "corpora" / "wordnet"
    if target.is_dir() and _is_complete(target) and not force:
        log.info("WordNet already installed in %s", target)
        return target
    index_url = index_url or os.environ.get("KCS_NLTK_INDEX_URL") or NLTK_INDEX_URL
    nltk_data.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-download.", dir=nltk_data))
    try:
        download(index_url, staging / "index.xml")
        entry = _index_entry(staging / "index.xml", index_url)
        archive = staging / "wordnet.zip"
        download(entry["url"], archive, entry.get("sha256_checksum"))
        if entry.get("size") and archive.stat().st_size != int(entry["size"]):
            raise KcsError(f"{entry['url']}: {archive.stat().st_size} bytes, the index says {entry['size']}")
        if not entry.get("sha256_checksum") and entry.get("checksum"):
            if hashlib.md5(archive.read_bytes()).hexdigest() != entry["checksum"]:
                raise KcsError(f"checksum mismatch for {entry['url']}: md5 differs from the nltk index")
        try:
            with zipfile.ZipFile(archive) as zipped:
                names = [n for n in zipped.namelist() if n.startswith("wordnet/") and not n.endswith("/")]
                unsafe = [n for n in names if ".." in Path(n).parts]
                if unsafe or not names:
                    raise KcsError(f"{entry['url']}: not an nltk wordnet package (entries {unsafe or 'missing'})")
                zipped.extractall(staging / "unpacked", members=names)
        except zipfile.BadZipFile:
            raise KcsError(f"{entry['url']}: not a zip archive") from None
        unpacked = staging / "unpacked" / "wordnet"
        if not _is_complete(unpacked):
            raise KcsError(f"the downloaded WordNet package lacks database files. {HOW_TO_INSTALL}")
        with atomic_dir(target) as tmp:
            os.chmod(tmp, 0o755)
            for path in unpacked.iterdir():
                shutil.move(str(path), tmp / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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


def surface(synset) -> str:
    """The words a sentence uses for a synset: its first lemma, underscores as spaces (as the authors)."""
    return synset.lemmas()[0].name().replace("_", " ")


def get_synset(wn, name: str, where: str = ""):
    """The synset with id `name` (e.g. 'building.n.01'); KcsError with near matches otherwise."""
    prefix = f"{where}: " if where else ""
    match = _SYNSET_ID.match(name)
    if not match:
        raise KcsError(f"{prefix}'{name}' is not a WordNet synset id; expected lemma.pos.nn, e.g. building.n.01")
    try:
        return wn.synset(name)
    except Exception:  # nltk raises WordNetError or ValueError for unknown ids
        pass
    lemma, pos = match.group("lemma"), match.group("pos")
    lookup_pos = "a" if pos == "s" else pos
    near = [s.name() for s in wn.synsets(lemma, pos=lookup_pos)]
    if not near:
        words = difflib.get_close_matches(lemma.lower(), list(wn.all_lemma_names(pos=lookup_pos)), n=4, cutoff=0.75)
        near = [s.name() for word in words for s in wn.synsets(word, pos=lookup_pos)][:8]
    hint = f"; near matches: {', '.join(near[:8])}" if near else ""
    raise KcsError(f"{prefix}unknown synset '{name}' in WordNet{hint}")


def is_synset_id(text: str) -> bool:
    return bool(_SYNSET_ID.match(text))


# --- sampling -----------------------------------------------------------------------------------

Edge = tuple[str, str]  # (hyponym synset id, hypernym synset id)


def upward_edges(root, levels: int) -> list[Edge]:
    """The root's hypernym edges and those of its hypernyms, `levels` levels up (sorted)."""
    edges: set[Edge] = set()
    frontier = [root]
    for _ in range(levels):
        above = []
        for synset in frontier:
            for hypernym in synset.hypernyms():
                edges.add((synset.name(), hypernym.name()))
                above.append(hypernym)
        frontier = above
    return sorted(edges)


def downward_edges(root, hops: int) -> list[Edge]:
    """Every hyponym edge (child IsA parent) whose parent lies fewer than `hops` levels below the root."""
    edges: set[Edge] = set()
    frontier, seen = [root], {root.name()}
    for _ in range(hops):
        below = []
        for parent in frontier:
            for child in parent.hyponyms():
                edges.add((child.name(), parent.name()))
                if child.name() not in seen:
                    seen.add(child.name())
                    below.append(child)
        frontier = below
    return sorted(edges)


def sample_neighbourhood(wn, root_name: str, *, size: int, hops: int = 3, up: int = 2, seed: int = 0) -> list[Edge]:
    """A TargetKG of `size` hypernym edges around `root_name` (see the module docstring)."""
    root = get_synset(wn, root_name)
    if size < 1 or hops < 0 or up < 0:
        raise KcsError(f"need size >= 1, hops >= 0 and up >= 0 (got size={size}, hops={hops}, up={up})")
    above = upward_edges(root, up)
    below = downward_edges(root, hops)
    if size <= len(above):
        return above[:size]
    wanted = size - len(above)
    if wanted > len(below):
        raise KcsError(
            f"{root_name} has only {len(below)} hyponym edges within {hops} levels (+{len(above)} above); "
            f"lower --size ({size}) or raise --hops"
        )
    return above + random.Random(seed).sample(below, wanted)


def synsets_of(edges) -> set[str]:
    return {name for edge in edges for name in edge}


def _noun_hypernyms(wn) -> list[tuple[str, list[str]]]:
    """(noun synset, its sorted hypernyms) for all of WordNet, computed once per reader (seconds)."""
    table = getattr(wn, "_kcs_noun_hypernyms", None)
    if table is None:
        table = [(s.name(), sorted(h.name() for h in s.hypernyms())) for s in wn.all_synsets("n")]
        wn._kcs_noun_hypernyms = table
    return table


def sample_controlkg(wn, exclude: set[str], *, train_size: int, val_size: int, test_size: int = 0,
                     seed: int = 0) -> tuple[list[Edge], list[Edge], list[Edge]]:
    """Random noun hypernym edges with distinct heads, none touching a synset in `exclude`.

    Returns (train, validation, test); no two share a head or an edge. The test rows are drawn
    after the others from the same generator, so train and validation are the same for any
    `test_size` (and test_size 0 gives an empty test split).
    """
    for option, size in (("--train-size", train_size), ("--val-size", val_size), ("--test-size", test_size)):
        if size < 0:
            raise KcsError(f"{option} must be >= 0 (got {size})")
    by_head: dict[str, list[str]] = {}
    for head, all_tails in _noun_hypernyms(wn):
        if head in exclude:
            continue
        tails = [t for t in all_tails if t not in exclude]
        if tails:
            by_head[head] = tails
    heads = sorted(by_head)
    needed = train_size + val_size + test_size
    if needed > len(heads):
        raise KcsError(f"only {len(heads)} usable noun synsets; lower --train-size/--val-size/--test-size "
                       f"(asked {train_size} + {val_size} + {test_size} = {needed})")
    rng = random.Random(seed)
    chosen = rng.sample(heads, train_size + val_size)
    edges = [(head, rng.choice(by_head[head])) for head in chosen]
    taken = set(chosen)
    rest = [head for head in heads if head not in taken]
    test = [(head, rng.choice(by_head[head])) for head in rng.sample(rest, test_size)]
    return edges[val_size:], edges[:val_size], test
