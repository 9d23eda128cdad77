"""Where local resources live.

`resources/` at the root of the kcs checkout (gitignored) holds what the setup scripts install:
`nltk_data/corpora/wordnet/`, `gpt2-tokenizer/`, `corpora/<name>/`, `lama/`, `csqa/` and the
checksum lock file `downloads.lock.json`. `KCS_RESOURCES` moves the whole tree elsewhere (e.g. a
shared cluster folder); when kcs is not run from a checkout, `./resources` is used.
"""

from __future__ import annotations

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def resources_dir() -> Path:
    env = os.environ.get("KCS_RESOURCES")
    if env:
        return Path(env)
    if (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT / "resources"
    return Path.cwd() / "resources"


def default_wordnet_dir() -> Path:
    """The nltk data folder (holding `corpora/wordnet/`) that the setup scripts fill."""
    return resources_dir() / "nltk_data"


def default_tokenizer_dir() -> Path:
    return resources_dir() / "gpt2-tokenizer"


def corpus_dir(name: str) -> Path:
    return resources_dir() / "corpora" / name


def lock_file() -> Path:
    return resources_dir() / "downloads.lock.json"


def package_resource(*parts: str) -> Path:
    """A file shipped inside the kcs package (`kcs/resources/...`)."""
    return Path(__file__).resolve().parents[1] / "resources" / Path(*parts)
