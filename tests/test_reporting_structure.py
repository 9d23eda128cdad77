"""Structure of subnetworks: per-head density (GPT-2 fused q|k|v, Llama GQA), dead neurons,
attention vs MLP shares, neuron and bit-packed masks, and `kcs report structure` end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import torch

from kcs.cli import main as kcs_main
from kcs.errors import KcsError
from kcs.maskfile import save_mask
from kcs.masking import WeightMask
from kcs.reporting.structure import head_counts, head_table, mask_summary, neuron_table, query_head_density, read_members
from kcs.tiny_models import build_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADS, HEAD_DIM, WIDTH = 4, 4, 16  # the tiny models: 4 heads of 4; Llama has 2 key/value heads
GPT2_ATTN = "transformer.h.{}.attn.c_attn.weight"  # Conv1D, stored [in, out]


def tiny(family: str):
    return build_model(family, vocab_size=50, layers=4, width=WIDTH, heads=HEADS, positions=32, eos_token_id=0, seed=0)


def mask_file(path: Path, family: str, chosen: dict[str, Callable], granularity: str = "weight",
              binary: bool = False, labels: dict | None = None) -> WeightMask:
    """A mask of blocks 2-3 whose subnetwork is empty except where `chosen[name](member)` sets it."""
    model = tiny(family)
    mask = WeightMask.for_model(model, [2, 3], granularity)
    members = {name: torch.zeros(logits.shape, dtype=torch.bool) for name, logits in zip(mask.names, mask.logits)}
    for name, choose in chosen.items():
        choose(members[name])
    mask.load_binary(members)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_mask(path, mask, base_model="tiny", model_type=model.config.model_type, binary=binary, labels=labels)
    return mask


def fill(*index):
    def choose(member):
        member[index] = True
    return choose


def density(table: pd.DataFrame, block: int, head: int, part: str) -> float:
    row = table[(table["block"] == block) & (table["head"] == head) & (table["part"] == part)]
    assert len(row) == 1
    return float(row["density"].iloc[0])


GPT2_CHOSEN = {
    GPT2_ATTN.format(3): fill(slice(None), slice(4, 8)),  # q outputs of head 1: columns 4..7 of [in, out]
    "transformer.h.2.attn.c_proj.weight": fill(slice(8, 12), slice(None)),  # inputs from head 2 (o)
    "transformer.h.2.mlp.c_fc.weight": fill(slice(None), slice(0, 3)),  # every input of hidden units 0..2
}


def test_gpt2_heads_dead_neurons_and_shares(tmp_path):
    mask_file(tmp_path / "m.safetensors", "gpt2", GPT2_CHOSEN)
    members = read_members(tmp_path / "m.safetensors")
    heads = head_table(members, HEADS)
    assert len(heads) == 2 * HEADS * 4  # blocks x heads x q/k/v/o
    assert density(heads, 3, 1, "q") == 1.0 and density(heads, 2, 2, "o") == 1.0
    assert heads["density"].sum() == 2.0  # nothing else
    assert set(heads["weights"]) == {HEAD_DIM * WIDTH}

    neurons = neuron_table(members).set_index(["block", "module"])
    assert neurons.loc[(2, "mlp.hidden"), "dead"] == 3 and neurons.loc[(2, "mlp.c_fc"), "dead"] == 3
    assert neurons.loc[(3, "attn.c_attn"), "dead"] == HEAD_DIM  # the query units of head 1
    assert neurons.loc[(2, "attn.c_proj"), "dead"] == 0  # a quarter of each unit's inputs only
    assert neurons.loc[(3, "mlp.hidden"), "units"] == 4 * WIDTH

    summary = mask_summary(members)
    attention, mlp = 2 * (WIDTH * 3 * WIDTH + WIDTH * WIDTH), 2 * 2 * WIDTH * 4 * WIDTH
    in_attention, in_mlp = 2 * HEAD_DIM * WIDTH, 3 * WIDTH
    assert summary["removed"] == in_attention + in_mlp and summary["weights"] == attention + mlp
    assert summary["attention_share"] == pytest.approx(in_attention / (in_attention + in_mlp))
    assert summary["attention_share"] + summary["mlp_share"] == pytest.approx(1.0)
    assert summary["attention_density"] == pytest.approx(in_attention / attention)
    assert summary["mlp_density"] == pytest.approx(in_mlp / mlp)
    assert summary["dead_neuron_share"] == pytest.approx(3 / (2 * 4 * WIDTH))


def test_llama_gqa_key_value_heads(tmp_path):
    layer = "model.layers.3.{}.weight"
    mask_file(tmp_path / "m.safetensors", "llama", {
        layer.format("self_attn.k_proj"): fill(slice(4, 8), slice(None)),  # key head 1 of 2: rows 4..7
        layer.format("mlp.gate_proj"): fill(slice(0, 5), slice(None)),
        layer.format("mlp.up_proj"): fill(slice(0, 3), slice(None)),
    })
    members = read_members(tmp_path / "m.safetensors")
    heads = head_table(members, HEADS)  # key/value heads read from the shapes
    assert heads[heads["block"] == 3].groupby("part")["head"].nunique().to_dict() == {"q": 4, "k": 2, "v": 2, "o": 4}
    assert density(heads, 3, 1, "k") == 1.0 and density(heads, 3, 0, "k") == 0.0 and heads["density"].sum() == 1.0
    assert head_table(members, HEADS, kv_heads=2).equals(heads)
    with pytest.raises(KcsError, match="the k projection has 8 features, not 4 heads of 4"):
        head_table(members, HEADS, kv_heads=4, source="m.safetensors")

    # key head 1 serves query heads 2 and 3: their k slice is a quarter of their q+k+v+o weights
    per_query = query_head_density(heads.assign(mask="m")).set_index(["block", "head"])["density"]
    assert per_query[(3, 2)] == per_query[(3, 3)] == 0.25 and per_query[(3, 0)] == 0.0 and per_query[(2, 3)] == 0.0

    neurons = neuron_table(members).set_index(["block", "module"])
    # a hidden neuron is dead when both its gate and up rows are removed
    assert neurons.loc[(3, "mlp.gate_proj"), "dead"] == 5 and neurons.loc[(3, "mlp.up_proj"), "dead"] == 3
    assert neurons.loc[(3, "mlp.hidden"), "dead"] == 3 and neurons.loc[(3, "mlp.hidden"), "units"] == 42
    removed_k, removed_mlp = HEAD_DIM * WIDTH, (5 + 3) * WIDTH  # k rows 4..7; gate rows 0..4 and up rows 0..2
    assert mask_summary(members)["attention_share"] == pytest.approx(removed_k / (removed_k + removed_mlp))


def test_head_counts_from_the_model_folder(tmp_path):
    for family, expected in (("gpt2", (HEADS, None)), ("llama", (HEADS, 2))):
        tiny(family).config.save_pretrained(tmp_path / family)
        assert head_counts(tmp_path / family) == expected
    with pytest.raises(KcsError, match="no config.json"):
        head_counts(tmp_path / "absent")


def test_neuron_granularity_masks(tmp_path):
    # Llama neuron masks are (1, in): one logit per input feature of each matrix
    mask = mask_file(tmp_path / "llama.safetensors", "llama", {
        "model.layers.2.self_attn.o_proj.weight": fill(0, slice(4, 8)),  # o inputs from head 1
        "model.layers.2.self_attn.q_proj.weight": fill(0, 0),  # input feature 0 of every query head
    }, granularity="neuron")
    members = read_members(tmp_path / "llama.safetensors")
    heads = head_table(members, HEADS)
    assert density(heads, 2, 1, "o") == 1.0 and density(heads, 2, 0, "o") == 0.0
    assert all(density(heads, 2, h, "q") == pytest.approx(1 / WIDTH) for h in range(HEADS))
    assert mask_summary(members)["removed"] == sum(r for r, _ in mask.removed_counts().values())

    # GPT-2 neuron masks are (in, 1): removing every input kills every q/k/v output unit
    mask_file(tmp_path / "gpt2.safetensors", "gpt2", {GPT2_ATTN.format(2): fill(slice(None), 0)}, granularity="neuron")
    members = read_members(tmp_path / "gpt2.safetensors")
    block2 = head_table(members, HEADS).query("block == 2 and part != 'o'")
    assert len(block2) == 3 * HEADS and (block2["density"] == 1.0).all()
    assert neuron_table(members).set_index(["block", "module"]).loc[(2, "attn.c_attn"), "dead"] == 3 * WIDTH


def test_bit_packed_masks_read_the_same(tmp_path):
    mask_file(tmp_path / "logits.safetensors", "gpt2", GPT2_CHOSEN)
    mask_file(tmp_path / "bits.safetensors", "gpt2", GPT2_CHOSEN, binary=True)
    logits, bits = read_members(tmp_path / "logits.safetensors"), read_members(tmp_path / "bits.safetensors")
    assert head_table(bits, HEADS).equals(head_table(logits, HEADS))
    assert density(head_table(bits, HEADS), 3, 1, "q") == 1.0
    assert neuron_table(bits).equals(neuron_table(logits)) and mask_summary(bits) == mask_summary(logits)


LEARNED = "results/runs/{model}/{kg}/{variant}/seed{seed}/mask.safetensors"
RANDOM = "results/random_masks/{model}/{kg}/{variant}/seed{seed}.safetensors"


def random_choice(seed: int, share: float = 0.1):
    def choose(member):
        member |= torch.rand(member.shape, generator=torch.Generator().manual_seed(seed)) < share
    return choose


@pytest.fixture
def pipeline_files(tmp_path, monkeypatch) -> tuple[list[str], list[str]]:
    """Learned masks holding the query slice of head 0 in every masked block; random masks ~10%; model folders."""
    monkeypatch.chdir(tmp_path)
    files, models = [], []
    for model, family in (("tiny-gpt2", "gpt2"), ("tiny-llama", "llama")):
        tiny(family).config.save_pretrained(f"models/{model}")
        models += ["--model", f"{model}=models/{model}"]
        query = GPT2_ATTN if family == "gpt2" else "model.layers.{}.self_attn.q_proj.weight"
        head0 = fill(slice(None), slice(0, 4)) if family == "gpt2" else fill(slice(0, 4), slice(None))
        for seed in (1, 2):
            fields = {"model": model, "kg": "building", "variant": "default", "seed": seed}
            learned, random = Path(LEARNED.format(**fields)), Path(RANDOM.format(**fields))
            mask_file(learned, family, {query.format(b): head0 for b in (2, 3)}, labels={**fields, "method": "learned"})
            mask = WeightMask.for_model(tiny(family), [2, 3])
            mask_file(random, family, {name: random_choice(seed + i) for i, name in enumerate(mask.names)}, binary=True,
                      labels={**fields, "method": "random"})
            files += [learned.as_posix(), random.as_posix()]
    return files, models


def test_cli_writes_figure_and_tables(pipeline_files, tmp_path):
    files, models = pipeline_files
    args = ["report", "structure", *models, "--model-order", "tiny-llama,tiny-gpt2", "--out", "fig/structure.png",
            "--csv", "fig/heads.csv",
            "--neuron-csv", "fig/neurons.csv", "--mask-csv", "fig/masks.csv", "--summary-csv", "fig/summary.csv",
            "--summary-markdown", "fig/summary.md", *files]
    assert kcs_main(args) == 0
    assert Path("fig/structure.png").read_bytes()[:8] == PNG_MAGIC

    heads = pd.read_csv("fig/heads.csv")
    assert list(heads.columns) == ["model", "kg", "variant", "seed", "method", "mask", "block", "head", "part",
                                   "weights", "density"]
    learned_q = heads[(heads["method"] == "learned") & (heads["part"] == "q")]
    assert (learned_q[learned_q["head"] == 0]["density"] == 1.0).all()
    assert (learned_q[learned_q["head"] != 0]["density"] == 0.0).all()
    random_density = heads[heads["method"] == "random"]["density"].mean()
    assert random_density == pytest.approx(0.1, abs=0.03)
    assert heads[(heads["model"] == "tiny-llama") & (heads["part"] == "k")]["head"].max() == 1  # GQA: 2 kv heads

    neurons = pd.read_csv("fig/neurons.csv")
    assert {"mlp.hidden", "attn.c_attn", "mlp.gate_proj"} <= set(neurons["module"])
    assert list(neurons.columns[-4:]) == ["module", "units", "dead", "dead_share"]
    per_mask = pd.read_csv("fig/masks.csv")
    assert (per_mask[per_mask["method"] == "learned"]["attention_share"] == 1.0).all()

    summary = pd.read_csv("fig/summary.csv")
    assert summary[["model", "method"]].values.tolist() == [["tiny-llama", "learned"], ["tiny-llama", "random"],
                                                           ["tiny-gpt2", "learned"], ["tiny-gpt2", "random"]]
    assert (summary["n"] == 2).all() and (summary[summary["method"] == "learned"]["mlp_share_mean"] == 0).all()
    assert "Dead MLP neurons" in Path("fig/summary.md").read_text()


@pytest.mark.parametrize("case", ["no labels", "no head count", "heads do not divide", "not a mask"])
def test_cli_bad_input_is_one_line_naming_the_file(pipeline_files, case, capsys):
    files, models = pipeline_files
    bad = files[0]
    if case == "no labels":
        bad = "elsewhere/mask.safetensors"
        mask_file(Path(bad), "gpt2", {})
    if case == "not a mask":
        Path(files[0]).write_bytes(b"not safetensors")
    heads = {"no head count": [], "heads do not divide": ["--heads", "3"]}.get(case, models)
    args = ["report", "structure", *heads, "--out", "s.png", bad]
    assert kcs_main(args) == 2
    err = capsys.readouterr().err
    assert bad in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not Path("s.png").exists()


def test_random_draw_is_the_random_mask_rule_s_draw(pipeline_files, tmp_path):
    """`--random-draw` gives each learned mask the random draw that `kcs random-mask --like MASK --seed
    SEED` writes (the pipeline's structure figure needs no random mask file): the same rows."""
    files, models = pipeline_files
    learned = [f for f in files if "/runs/" in f]
    drawn = []
    for path in learned:
        seed = path.split("seed")[-1].split("/")[0]
        out = Path(path.replace("/runs/", "/drawn/"))
        assert kcs_main(["random-mask", "--like", path, "--seed", seed, "--out", str(out)]) == 0
        drawn += [path, out.as_posix()]
    common = ["report", "structure", *models, "--out"]
    assert kcs_main([*common, "from_files.png", "--csv", "from_files.csv", *drawn]) == 0
    assert kcs_main([*common, "in_job.png", "--csv", "in_job.csv", "--random-draw", *learned]) == 0
    from_files, in_job = pd.read_csv("from_files.csv"), pd.read_csv("in_job.csv")
    assert (in_job["method"] == "random").sum() == (from_files["method"] == "random").sum() > 0
    pd.testing.assert_frame_equal(in_job.drop(columns="mask"), from_files.drop(columns="mask"))
    assert in_job[in_job["method"] == "random"]["mask"].str.endswith("(random draw 1)").all()
