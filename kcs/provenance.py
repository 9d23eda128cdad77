"""What made a result: config, seed, model and package versions, recorded in every output."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import kcs
from kcs.errors import KcsError

_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "datasets", "nltk", "numpy", "numba", "pandas")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (input checksums recorded with every result)."""
    path = Path(path)
    if not path.is_file():
        raise KcsError(f"{path}: input file not found" if not path.exists() else f"{path}: is a folder, expected a file")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "kcs": kcs.__version__}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str | None:
    """The commit of the kcs checkout, when kcs runs from one (None when installed elsewhere)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(*, config: dict[str, Any] | None = None, seed: int | None = None,
               model: str | None = None, **extra: Any) -> dict[str, Any]:
    """A JSON-serialisable record to store beside (or inside) any result."""
    record: dict[str, Any] = {
        "model": model,
        "seed": seed,
        "config": config,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
        "host": socket.gethostname(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record
