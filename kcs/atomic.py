"""Atomic file writes: a killed process never leaves a partial or corrupt output behind."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes private files, and writers that replace the file (safetensors) keep that:
        # outputs get the permissions of any other file the user writes
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


OUTPUT_MARKER = ".kcs_output"  # written into every folder atomic_dir makes
_KCS_MADE = (OUTPUT_MARKER, "kcs_provenance.json")  # either one: the folder is kcs's to replace


def _check_replaceable(path: Path) -> None:
    """Refuse to replace what kcs did not write: a file, the working directory or one above it,
    or a non-empty folder without a kcs marker (a mistyped --out must not delete a user's data)."""
    from kcs.errors import KcsError

    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise KcsError(f"{path}: the output folder would contain the working directory; choose a new folder")
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        raise KcsError(f"{path}: exists and is not a folder; kcs writes a folder there only where nothing is, "
                       "so choose a new output path or move it away")
    if any(path.iterdir()) and not any((path / name).exists() for name in _KCS_MADE):
        raise KcsError(f"{path}: exists and was not written by kcs (it holds no {OUTPUT_MARKER} or kcs_provenance.json); "
                       "kcs replaces only folders it made: choose a new output folder or move this one away")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that replaces `path` as a whole once the block succeeds.

    `path` may be absent, empty, or a folder kcs made before; anything else is refused before
    any work is done (kcs.errors.KcsError), so nothing a user keeps there is ever deleted.
    """
    path = Path(path)
    _check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        (tmp / OUTPUT_MARKER).write_text("written by kcs; kcs may replace this folder as a whole\n")
        _check_replaceable(path)  # the same rule at the moment of replacing
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any, *, finite: bool = False) -> None:
    """Write JSON atomically. `finite`: refuse NaN and infinities (results: a wrong number must
    fail loudly, not land in a table); the error names the first such entry."""
    if finite:
        where = first_non_finite(obj)
        if where is not None:
            from kcs.errors import KcsError

            raise KcsError(f"{path}: not written: {where[0]} is {where[1]} (a diverged or broken computation); "
                           "nothing was written")
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def first_non_finite(obj: Any, where: str = "") -> tuple[str, float] | None:
    """(key path, value) of the first NaN or infinite number in nested dicts and lists, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "the value", obj)
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = first_non_finite(value, f"{where}.{key}" if where and isinstance(key, str) else
                                 f"{where}[{key}]" if where else str(key))
        if found is not None:
            return found
    return None
