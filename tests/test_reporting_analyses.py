"""Tables of the paper's further analyses from metrics files: seed-combined subnetworks,
paraphrase robustness, several random draws per run; and what a metrics file says of its mask."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcs.cli import main
from kcs.errors import KcsError
from kcs.evaluation import mask_selection
from kcs.reporting.collect import collect_metrics
from kcs.reporting.tables import combined_table, paraphrase_table

COMBINED = "res/combined_metrics/{model}/{kg}/{combination}/{method}.json"
METRICS = "res/metrics/{model}/{kg}/{variant}/seed{seed}/{method}.json"


def metrics(target: float, paraphrase: tuple[float, float] | None = None, removed: int = 10) -> dict:
    def block(full: float, remaining: float) -> dict:
        return {"ppl_full": full, "ppl_remaining": remaining, "delta_ppl": remaining - full,
                "relative_delta_ppl": remaining / full - 1, "n": 4}
    targetkg = block(10.0, target)
    if paraphrase:
        targetkg.update(paraphrase_ppl_full=paraphrase[0], paraphrase_ppl_remaining=paraphrase[1])
    return {"sparsity": 1 - removed / 1000, "removed_weights": removed, "masked_weights": 1000, "targetkg": targetkg,
            "controlkg": block(5.0, 5.5), "controllm": block(20.0, 20.2), "per_fact": {"targetkg": []}}


def write(root: Path, layout: str, data: dict, **labels) -> Path:
    path = root / layout.format(**labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"labels": labels, **data}))  # as kcs evaluate writes them
    return path


def test_combined_table_per_model_combination_and_method(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = []
    for kg, target in (("a", 40.0), ("b", 60.0)):
        for combination in ("intersection", "union"):
            scale = 2 if combination == "union" else 1
            files.append(write(Path("."), COMBINED, metrics(target * scale), model="m", kg=kg,
                               combination=combination, method="learned"))
            files.append(write(Path("."), COMBINED, metrics(10.5), model="m", kg=kg, combination=combination,
                               method="random"))
    table = combined_table(collect_metrics([str(f) for f in files])).frame
    # the paper's order (union, intersection, majority), whatever order the files came in
    assert list(zip(table["combination"], table["method"])) == [("union", "learned"), ("union", "random"),
                                                                ("intersection", "learned"), ("intersection", "random")]
    union = table[(table["combination"] == "union") & (table["method"] == "learned")].iloc[0]
    assert union["targetkg_relative_delta_ppl_mean"] == pytest.approx(((80 / 10 - 1) + (120 / 10 - 1)) / 2)
    assert union["n"] == 2


def test_random_draws_are_one_method_with_a_draw_column(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = [write(Path("."), METRICS, metrics(11.0 + i), model="m", kg="a", variant="default", seed=1, method=method)
             for i, method in enumerate(("random", "random-2", "random-3"))]
    files.append(write(Path("."), METRICS, metrics(50.0), model="m", kg="a", variant="default", seed=1, method="learned"))
    runs = collect_metrics([str(f) for f in files])
    assert sorted(runs["method"].unique()) == ["learned", "random"]
    assert sorted(runs.loc[runs["method"] == "random", "draw"]) == [1, 2, 3]
    assert runs.loc[runs["method"] == "learned", "draw"].isna().all()


def test_paraphrase_table_compares_the_training_sentence_with_its_paraphrases(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = [write(Path("."), METRICS, metrics(50.0, (12.0, 36.0)), model="m", kg="para", variant="default", seed=1,
                   method="learned"),
             write(Path("."), METRICS, metrics(10.2, (12.0, 12.6)), model="m", kg="para", variant="default", seed=1,
                   method="random"),
             # a KG of the authors' sentences: no paraphrases, left out of the table
             write(Path("."), METRICS, metrics(50.0), model="m", kg="plain", variant="default", seed=1, method="learned")]
    table = paraphrase_table(collect_metrics([str(f) for f in files])).frame
    assert list(table["kg"]) == ["para", "para"]
    learned = table[table["method"] == "learned"].iloc[0]
    assert learned["targetkg_relative_delta_ppl_mean"] == pytest.approx(4.0)
    assert learned["targetkg_paraphrase_relative_delta_ppl_mean"] == pytest.approx(2.0)
    only_plain = collect_metrics([str(files[2])])
    with pytest.raises(KcsError, match="paraphrases"):
        paraphrase_table(only_plain)


def test_report_commands_write_the_tables_and_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = [write(Path("."), COMBINED, metrics(30.0), model="m", kg="a", combination="majority", method=method)
             for method in ("learned", "random")]
    assert main(["report", "collect", "--out", "combined_runs.csv", *map(str, files)]) == 0
    assert main(["report", "combined-table", "--runs", "combined_runs.csv", "--markdown", "c.md"]) == 0
    assert "Majority" in Path("c.md").read_text()
    assert main(["report", "combined-figure", "--runs", "combined_runs.csv", "--out", "c.png"]) == 0
    assert Path("c.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", "paraphrase-table", "--runs", "combined_runs.csv", "--csv", "p.csv"]) == 2  # none
    assert not Path("p.csv").exists()


@pytest.mark.parametrize("metadata, expected", [
    ({"kind": "learned"}, {"rule": "final"}),  # a run's final mask
    ({"kind": "learned", "step": "40", "selection": json.dumps({"rule": "best", "chosen_step": 40})},
     {"rule": "best", "chosen_step": 40}),
    ({"kind": "learned", "step": "40"}, None),  # a step mask picked by hand
    ({"kind": "random"}, None),
])
def test_a_metrics_file_records_which_checkpoint_its_mask_is(metadata, expected):
    assert mask_selection(metadata) == expected

