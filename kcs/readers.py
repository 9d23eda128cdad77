"""Reading the small structured files kcs writes and takes (JSON, YAML, JSON Lines): one place that
turns a missing file, bad encoding or a syntax error into an error naming the file (and line) and
saying what the file should be. Writers are in kcs.atomic (never a partial file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import yaml

from kcs.errors import KcsError


def _text(path: Path, what: str, made_by: str | None) -> str:
    hint = f" (make it with `{made_by}`)" if made_by else ""
    if not path.is_file():
        raise KcsError(f"{path}: {what} not found{hint}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise KcsError(f"{path}: not UTF-8 text ({err.reason}); give a {what}{hint}") from None


def read_json(path: str | os.PathLike, what: str = "JSON file", made_by: str | None = None) -> dict[str, Any]:
    """A JSON file holding an object."""
    path = Path(path)
    try:
        data = json.loads(_text(path, what, made_by))
    except json.JSONDecodeError as err:
        raise KcsError(f"{path}: not valid JSON (line {err.lineno}: {err.msg}); give a {what}") from None
    if not isinstance(data, dict):
        raise KcsError(f"{path}: expected a JSON object; give a {what}")
    return data


def read_yaml_mapping(path: str | os.PathLike, what: str = "settings") -> dict[str, Any]:
    """A YAML file holding a mapping (e.g. of hyper-parameters); empty means no keys."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(_text(path, f"{what} file", None)) or {}
    except yaml.YAMLError as err:
        raise KcsError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(loaded, dict):
        raise KcsError(f"{path}: expected a mapping of {what} keys")
    return loaded


def parse_json_line(line: str, where: str) -> Any:
    """One JSON Lines row; a decoding error names FILE:LINE."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise KcsError(f"{where}: not valid JSON ({err.msg}); each line must be one JSON object") from None


def iter_json_lines(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """('FILE:LINE', decoded row) for every non-blank line of a JSON Lines file."""
    path = Path(path)
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise KcsError(f"{where}: not UTF-8 ({err.reason} at byte {err.start} of the line); "
                               "convert the file, e.g. with iconv -t UTF-8") from None
            if line.strip():
                yield where, parse_json_line(line, where)
