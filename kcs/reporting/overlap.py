"""Overlap between subnetworks (Jaccard, from `kcs overlap` files) as matrices per model.

`kcs overlap` writes `{"pairs": [{"a": MASK, "b": MASK, "jaccard": x}, ...], "labels": {MASK: {...}}}`,
each mask with its labels; the one label that differs within a pair (e.g. `seed` or `kg`) is what the
overlap compares. Matrices average over everything else (e.g. over TargetKGs
for the seed overlap).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kcs.errors import KcsError
from kcs.labels import require_labels
from kcs.readers import read_json
from kcs.reporting.formats import ordered


def read_overlaps(files: list[str | Path]) -> pd.DataFrame:
    """One row per pair: model, field compared, the two values, jaccard."""
    rows = []
    for path in files:
        data = read_json(path, "`kcs overlap` file", made_by="kcs overlap")
        pairs, labels = data.get("pairs"), data.get("labels")
        if not isinstance(pairs, list) or not isinstance(labels, dict):
            raise KcsError(f"{path}: no 'pairs' list with the masks' 'labels'; make it with `kcs overlap`")
        for pair in pairs:
            a, b = (require_labels(labels.get(pair[key]) or {}, f"{path}: mask {pair[key]}") for key in ("a", "b"))
            a, b = ({key: str(value) for key, value in side.items()} for side in (a, b))
            differing = [key for key in a if a[key] != b[key]]
            if len(differing) != 1:
                raise KcsError(f"{path}: masks {pair['a']} and {pair['b']} differ in {differing or 'nothing'}; "
                               "an overlap file must compare masks along one field (seed or kg)")
            field = differing[0]
            rows.append({"model": a.get("model", ""), "field": field, "a": a[field], "b": b[field],
                         "jaccard": float(pair["jaccard"]), "file": str(path)})
    if not rows:
        raise KcsError("no overlap pairs in the given files")
    return pd.DataFrame(rows)


def overlap_summary(overlaps: pd.DataFrame) -> pd.DataFrame:
    """Mean Jaccard per (model, field, a, b) over the other fields; n = pairs averaged."""
    grouped = overlaps.groupby(["model", "field", "a", "b"], sort=False)["jaccard"]
    return grouped.agg(jaccard_mean="mean", jaccard_std="std", n="size").reset_index()


def overlap_matrices(summary: pd.DataFrame, model_order: list[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(title, symmetric matrix with 1 on the diagonal) per model and compared field."""
    out = []
    for model in ordered(summary["model"], model_order):
        for field in ordered(summary[summary["model"] == model]["field"]):
            rows = summary[(summary["model"] == model) & (summary["field"] == field)]
            labels = sorted(set(rows["a"]) | set(rows["b"]), key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))
            matrix = pd.DataFrame(float("nan"), index=labels, columns=labels)
            for label in labels:
                matrix.loc[label, label] = 1.0
            for _, row in rows.iterrows():
                matrix.loc[row["a"], row["b"]] = matrix.loc[row["b"], row["a"]] = row["jaccard_mean"]
            what = {"seed": "between seeds (mean over TargetKGs)", "kg": "between TargetKGs (mean over seeds)"}
            out.append((f"{model}\n{what.get(field, 'between ' + field)}", matrix))
    return out
