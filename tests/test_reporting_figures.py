"""Figures and mask-based numbers: density per layer/module, overlap matrices, the `kcs report` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from kcs.cli import main as kcs_main
from kcs.errors import KcsError
from kcs.maskfile import save_mask
from kcs.masking import WeightMask
from kcs.models import select_blocks
from kcs.reporting.masks import collect_densities, mask_density
from kcs.reporting.overlap import overlap_matrices, overlap_summary, read_overlaps
from kcs.tiny_models import build_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_mask(path: Path, family: str, granularity: str, share: float, seed: int, labels: dict | None = None) -> WeightMask:
    """A real mask file of a tiny model whose subnetwork holds about `share` of each matrix."""
    model = build_model(family, vocab_size=50, layers=4, width=16, heads=2, positions=32, eos_token_id=0, seed=0)
    mask = WeightMask.for_model(model, select_blocks(4), granularity)
    generator = torch.Generator().manual_seed(seed)
    members = {name: torch.rand(logits.shape, generator=generator) < share for name, logits in zip(mask.names, mask.logits)}
    mask.load_binary(members)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_mask(path, mask, base_model="tiny", model_type=model.config.model_type, labels=labels)
    return mask


@pytest.fixture
def masks(tmp_path, monkeypatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    files = []
    for model, family in (("tiny-gpt2", "gpt2"), ("tiny-llama", "llama")):
        for kg in ("building", "change"):
            for seed in (1, 2):
                path = Path(f"runs/{model}/{kg}/default/seed{seed}/mask.safetensors")
                labels = {"model": model, "kg": kg, "variant": "default", "seed": seed, "method": "learned"}
                write_mask(path, family, "weight", 0.05 if kg == "building" else 0.2, seed + 10 * (kg == "change"), labels)
                files.append(path.as_posix())
    return files


def test_mask_density_matches_the_mask(tmp_path):
    mask = write_mask(tmp_path / "m.safetensors", "gpt2", "weight", 0.1, 0)
    density = mask_density(tmp_path / "m.safetensors")
    assert sorted(density["block"].unique()) == [2, 3]  # the top half of 4 blocks
    assert set(density["module"]) == {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}
    removed = sum(r for r, _ in mask.removed_counts().values())
    assert (density["density"] * density["weights"]).sum() == pytest.approx(removed)
    assert 1 - removed / density["weights"].sum() == pytest.approx(mask.sparsity())


def test_neuron_mask_density_is_a_share_of_the_matrix(tmp_path):
    mask = write_mask(tmp_path / "n.safetensors", "llama", "neuron", 0.5, 0)
    density = mask_density(tmp_path / "n.safetensors")
    assert set(density["module"]) >= {"self_attn.q_proj", "mlp.down_proj"}
    removed = sum(r for r, _ in mask.removed_counts().values())
    assert (density["density"] * density["weights"]).sum() == pytest.approx(removed)


def test_density_figure_and_csv_through_the_cli(masks, tmp_path):
    out, csv = tmp_path / "fig/density.png", tmp_path / "fig/density.csv"
    assert kcs_main(["report", "density", "--out", str(out), "--csv", str(csv), *masks]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    data = pd.read_csv(csv)
    assert set(data["model"]) == {"tiny-gpt2", "tiny-llama"}
    building = data[data["kg"] == "building"]["density"].mean()
    change = data[data["kg"] == "change"]["density"].mean()
    assert building == pytest.approx(0.05, abs=0.02) and change == pytest.approx(0.2, abs=0.03)


def test_overlap_matrices_from_kcs_overlap(masks, tmp_path):
    seeds = tmp_path / "overlap_seeds.json"
    kgs = tmp_path / "overlap_kgs.json"
    gpt2 = [m for m in masks if "tiny-gpt2" in m]
    assert kcs_main(["overlap", *[m for m in gpt2 if "/building/" in m], "--out", str(seeds)]) == 0
    assert kcs_main(["overlap", *[m for m in gpt2 if m.endswith("seed1/mask.safetensors")], "--out", str(kgs)]) == 0
    summary = overlap_summary(read_overlaps([seeds, kgs]))
    assert set(summary["field"]) == {"seed", "kg"}
    (seed_title, seed_matrix), (kg_title, kg_matrix) = overlap_matrices(summary)
    assert "between seeds" in seed_title and list(seed_matrix.index) == ["1", "2"]
    # two independent random 5% subnetworks overlap little: Jaccard ~ 0.05^2 / (2*0.05 - 0.05^2)
    assert 0 <= seed_matrix.loc["1", "2"] < 0.1 and seed_matrix.loc["1", "1"] == 1.0
    assert kg_matrix.loc["building", "change"] == kg_matrix.loc["change", "building"]
    out = tmp_path / "overlap.png"
    assert kcs_main(["report", "overlap", "--out", str(out), str(seeds), str(kgs)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_overlap_refuses_pairs_differing_in_two_fields(masks, tmp_path):
    both = tmp_path / "both.json"
    assert kcs_main(["overlap", masks[0], masks[3], "--out", str(both)]) == 0
    with pytest.raises(KcsError, match=r"differ in \['kg', 'seed'\]"):
        read_overlaps([both])


def test_mask_labels_follow_random_and_combined_masks_and_unlabelled_ones_are_refused(masks, tmp_path):
    from kcs.maskfile import read_labels

    random = tmp_path / "random.safetensors"
    assert kcs_main(["random-mask", "--like", masks[0], "--seed", "1", "--draw", "3", "--out", str(random)]) == 0
    assert read_labels(random) == {"model": "tiny-gpt2", "kg": "building", "variant": "default", "seed": 1,
                                   "method": "random-3"}
    union = tmp_path / "union.safetensors"
    assert kcs_main(["combine-masks", masks[0], masks[1], "--how", "union", "--out", str(union)]) == 0
    assert read_labels(union) == {"model": "tiny-gpt2", "kg": "building", "variant": "default", "method": "learned",
                                  "combination": "union"}  # the seeds differ: not a label of the union
    bare = tmp_path / "bare.safetensors"
    write_mask(bare, "gpt2", "weight", 0.1, 0)
    with pytest.raises(KcsError, match=r"bare\.safetensors: no label 'model'.*--label"):
        collect_densities([bare])


def test_curves_figure(tmp_path):
    logs = []
    for model in ("a", "b"):
        path = tmp_path / f"curves/{model}/kg/default/seed1.csv"
        path.parent.mkdir(parents=True)
        steps = range(1, 51)
        pd.DataFrame({"model": model, "kg": "kg", "seed": 1, "step": steps, "loss_targetkg": [1 / s for s in steps],
                      "loss_controlkg": [0.01] * 50,
                      "loss_controllm": [0.02] * 50, "sparsity": [1 - s / 1000 for s in steps],
                      "val_targetkg_ppl": [""] * 50}).to_csv(path, index=False)
        logs.append(str(path))
    out = tmp_path / "curves.png"
    assert kcs_main(["report", "curves", "--out", str(out), *logs]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000


def test_tables_and_delta_figure_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    files = []
    for method, remaining in (("learned", 40.0), ("random", 11.0)):
        for seed in (1, 2):
            path = Path(f"m/gpt2/k/default/seed{seed}/{method}.json")
            path.parent.mkdir(parents=True, exist_ok=True)
            block = {"ppl_full": 10.0, "ppl_remaining": remaining + seed, "delta_ppl": remaining + seed - 10,
                     "relative_delta_ppl": (remaining + seed) / 10 - 1}
            labels = {"model": "gpt2", "kg": "k", "variant": "default", "seed": seed, "method": method}
            path.write_text(json.dumps({"labels": labels, "sparsity": 0.98, "targetkg": block, "controlkg": block,
                                        "controllm": block}))
            files.append(str(path))
    assert kcs_main(["report", "collect", "--out", "runs.csv", *files]) == 0
    assert kcs_main(["report", "main-table", "--runs", "runs.csv", "--csv", "t.csv", "--markdown", "t.md",
                     "--latex", "t.tex"]) == 0
    table = pd.read_csv("t.csv")
    assert list(table["method"]) == ["learned", "random"] and table["targetkg_ppl_remaining_mean"].tolist() == [41.5, 12.5]
    assert Path("t.md").read_text().count("\n| gpt2 |") == 2 and "\\bottomrule" in Path("t.tex").read_text()
    assert kcs_main(["report", "delta-figure", "--runs", "runs.csv", "--out", "delta.png"]) == 0
    assert Path("delta.png").read_bytes()[:8] == PNG_MAGIC
    # the ControlKG test split has its own bars where the metrics have it, and only there
    from kcs.reporting import figures

    runs = pd.read_csv("runs.csv")
    shown = []
    monkeypatch.setattr(figures, "save", lambda fig, out: shown.append(
        [t.get_text() for t in fig.axes[0].get_xticklabels()]))
    figures.delta_figure(runs, "unused.png")
    figures.delta_figure(runs.assign(controlkg_test_relative_delta_ppl=0.1), "unused.png")
    assert shown == [["TargetKG", "ControlKG", "ControlLM"], ["TargetKG", "ControlKG", "ControlKG (test)", "ControlLM"]]
    # a user error is a clean exit 2 naming the problem
    assert kcs_main(["report", "main-table", "--runs", "missing.csv", "--csv", "x.csv"]) == 2
    assert "missing.csv: runs table not found" in capsys.readouterr().err
    assert kcs_main(["report", "main-table", "--runs", "runs.csv"]) == 2
