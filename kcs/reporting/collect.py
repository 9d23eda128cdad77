"""Metrics files (`kcs evaluate --out`) -> one tidy row per evaluation, labelled by the labels the file holds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from kcs.errors import KcsError
from kcs.labels import require_labels, typed
from kcs.readers import read_json

DATASETS = ("targetkg", "controlkg", "controllm")
# In a metrics file only when its ControlKG has a held-out test split (`kcs evaluate --controlkg-test`).
OPTIONAL_DATASETS = ("controlkg_test",)
# The per-dataset numbers a table can show (docs/method.md 4.2): full model, remaining model, the change.
PPL_KEYS = ("ppl_full", "ppl_remaining", "delta_ppl", "relative_delta_ppl")
EXTRA_KEYS = ("ppl_subnetwork", "delta_rank_mean", "delta_logprob_mean", "paraphrase_ppl_full",
              "paraphrase_ppl_remaining", "n", "n_blocks")
TOP_KEYS = ("sparsity", "removed_weights", "masked_weights")


def flatten_metrics(metrics: dict, where: str) -> dict[str, float]:
    """The scalar numbers of a metrics file as `sparsity`, `targetkg_ppl_full`, ... columns."""
    row: dict[str, float] = {}
    for key in TOP_KEYS:
        if key in metrics:
            row[key] = metrics[key]
    for dataset in DATASETS + OPTIONAL_DATASETS:
        block = metrics.get(dataset)
        if dataset in OPTIONAL_DATASETS and block is None:
            continue
        if not isinstance(block, dict):
            raise KcsError(f"{where}: no '{dataset}' section; is this a `kcs evaluate` metrics file?")
        for key in PPL_KEYS + EXTRA_KEYS:
            if key in block:
                row[f"{dataset}_{key}"] = block[key]
    if "sparsity" not in row:
        raise KcsError(f"{where}: no 'sparsity'; is this a `kcs evaluate` metrics file?")
    return row


def collect_metrics(files: list[str | Path]) -> pd.DataFrame:
    if not files:
        raise KcsError("no metrics files given")
    rows = []
    for path in files:
        metrics = read_json(path, "`kcs evaluate` metrics file", made_by="kcs evaluate")
        labels = metrics.get("labels")
        row = {key: typed(value) for key, value in require_labels(labels or {}, str(path), ("model", "method")).items()}
        if str(row.get("method", "")).startswith("random"):
            # random draws (random, random-2, ...) are one method whose spread the tables show
            from kcs.grid import random_draw

            row["draw"] = random_draw(row["method"])
            row["method"] = "random"
        row.update(flatten_metrics(metrics, str(path)))
        # "none": trained with the paper's hyper-parameters; empty: a file from before kcs recorded them
        row["deviations"] = deviations_text(metrics["deviations"]) if "deviations" in metrics else None
        row["file"] = Path(path).as_posix()
        rows.append(row)
    return pd.DataFrame(rows)


def deviations_text(deviations: dict) -> str:
    """`key used (paper: value)` per hyper-parameter that is not the paper's, `; `-separated; "none" for none."""
    if not deviations:
        return "none"
    return "; ".join(f"{key} {json.dumps(d['used'])} (paper: {json.dumps(d['paper'])})" for key, d in deviations.items())


def read_runs(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise KcsError(f"{path}: runs table not found (write it with `kcs report collect`)")
    return pd.read_csv(path)
