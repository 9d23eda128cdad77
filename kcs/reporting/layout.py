"""File-name patterns with named fields: which run, model or rule a result file belongs to.

A pattern is a path with `{field}` placeholders, e.g. `results/demo/metrics/{model}/{kg}/seed{seed}.json`
(the Snakemake wildcard syntax, without regular expressions). Each field matches one path component part
(no `/`). Parsing a path that does not fit the pattern is an error naming both.
"""

from __future__ import annotations

import re
from pathlib import Path

from kcs.errors import KcsError

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def pattern_regex(pattern: str) -> re.Pattern:
    parts, fields, last = [], [], 0
    for match in _FIELD.finditer(pattern):
        parts.append(re.escape(pattern[last:match.start()]))
        name = match.group(1)
        # A field repeated in the pattern must match the same text each time.
        parts.append(f"(?P={name})" if name in fields else f"(?P<{name}>[^/]+?)")
        fields.append(name)
        last = match.end()
    parts.append(re.escape(pattern[last:]))
    if not fields:
        raise KcsError(f"layout pattern '{pattern}' has no {{field}}: it cannot tell files apart")
    return re.compile("^" + "".join(parts) + "$")


def fields_of(pattern: str) -> list[str]:
    return list(dict.fromkeys(_FIELD.findall(pattern)))


def parse_path(pattern: str, path: str | Path, regex: re.Pattern | None = None) -> dict[str, str]:
    """The field values of `path` under `pattern` (paths are compared as written, without resolving)."""
    text = Path(path).as_posix()
    match = (regex or pattern_regex(pattern)).match(text)
    if match is None:
        raise KcsError(f"{text}: does not fit the layout pattern '{pattern}'")
    return match.groupdict()


def parse_paths(pattern: str, paths: list[str | Path]) -> list[dict[str, str]]:
    regex = pattern_regex(pattern)
    return [parse_path(pattern, path, regex) for path in paths]
