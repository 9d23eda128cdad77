"""Labels: which run a result belongs to (model, kg, variant, seed, method, combination, experiment,
start, ...), written into every result file kcs makes, so that reporting reads them from the files'
content and never from their paths.

Masks carry them in their metadata (`kcs train --label`; a random or combined mask inherits them),
a metrics file takes its mask's, a training log has them as leading columns, an overlap file names
each mask's, a finetuning result has its own. Values are strings on the command line; digits become
numbers (seeds sort as numbers).
"""

from __future__ import annotations

import re
from typing import Iterable

from kcs.errors import KcsError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def typed(value):
    """'3' -> 3 (seeds and draws sort as numbers); anything else as it is."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


def parse_labels(items: Iterable[str]) -> dict[str, str | int]:
    """KEY=VALUE items (the --label option) as a mapping; a malformed item is an error naming it."""
    labels: dict[str, str | int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _KEY.fullmatch(key) or not value:
            raise KcsError(f"--label {item!r}: expected KEY=VALUE, e.g. --label model=gpt2")
        labels[key] = typed(value)
    return labels


def add_label_option(parser) -> None:
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="a label written into the output (e.g. model=gpt2, kg=fruit); repeatable")


def common_labels(all_labels: list[dict]) -> dict:
    """The entries every one of several mappings shares: the labels of a mask combined from several, or
    the deviations from the paper that all of its sources were trained with."""
    if not all_labels:
        return {}
    return {key: value for key, value in all_labels[0].items() if all(lab.get(key) == value for lab in all_labels[1:])}


def require_labels(labels: dict, where: str, keys: Iterable[str] = ("model",)) -> dict:
    """The labels, refusing a result without the ones a table or figure groups by."""
    missing = [key for key in keys if key not in labels]
    if missing:
        raise KcsError(f"{where}: no label {', '.join(repr(k) for k in missing)} (labels: {labels or 'none'}); "
                       "results of the pipeline carry them, elsewhere give the command that made it "
                       "--label KEY=VALUE (e.g. kcs train --label model=gpt2 --label kg=fruit)")
    return labels
