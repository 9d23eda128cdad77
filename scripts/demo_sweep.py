"""The demo's schedule sweep: train one mask per recipe and score it on validation data only.

Each recipe is configs/demo.yaml's `training:` section with a few keys changed. Every run trains
on the demo's own files (TargetKG, ControlKG train split, ControlLM train text) and is scored on
the ControlKG *validation* split and on held-out ControlLM text (the corpus's validation split,
never trained on); the ControlKG test split and the ControlLM test text are not read, so the
demo's reported numbers stay untouched by this tuning. Writes a Markdown table (docs/demo-sweep.md).

    python scripts/demo_sweep.py --recipes scripts/demo_sweep.yaml --kg building --seed 1 \\
        --out-dir results/demo-sweep --table docs/demo-sweep.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from kcs.config import EvalConfig, TrainConfig
from kcs.evaluation import evaluate_full_model, evaluate_mask
from kcs.grid import DEFAULT_VARIANT, train_config_values
from kcs.training import train_mask

DEMO = Path("results/demo")


def demo_training(config_file: Path) -> dict:
    """Every training key of the demo's model (kcs's defaults filled in), its reasons for deviating included."""
    config = yaml.safe_load(config_file.read_text())
    return train_config_values(config, config["models"][0]["name"], DEFAULT_VARIANT)


def recipe_config(base: dict, recipe: dict) -> TrainConfig:
    """The demo's training with the recipe's keys on top; the demo's reasons for the keys it changes go."""
    changed = recipe["training"]
    deviations = {key: why for key, why in base["deviations"].items() if key not in changed}
    return TrainConfig.from_dict({**base, **changed, "deviations": deviations}, f"recipe {recipe['name']}")


def held_out_text(out_dir: Path, words: int) -> Path:
    """ControlLM validation text: the first `words` words of the corpus's validation split."""
    source = Path("resources/corpora/sotu/validation.txt")
    kept, count = [], 0
    for line in source.read_text(encoding="utf-8").splitlines():
        if count >= words:
            break
        kept.append(line)
        count += len(line.split())
    path = out_dir / "controllm_val.txt"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=Path, required=True, help="YAML: a list of {name, training: {overrides}}")
    parser.add_argument("--only", nargs="*", help="run only these recipe names")
    parser.add_argument("--demo-config", type=Path, default=Path("configs/demo.yaml"))
    parser.add_argument("--kg", default="building")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", default="resources/models/SmolLM2-135M")
    parser.add_argument("--out-dir", type=Path, default=Path("results/demo-sweep"))
    parser.add_argument("--table", type=Path, help="Markdown table to (re)write from every finished run")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    data = DEMO / "data" / Path(args.model).name
    files = {
        "targetkg": data / "targetkg" / f"{args.kg}.jsonl",
        "controlkg": data / "controlkg/wordnet/train.jsonl",
        "controlkg_val": data / "controlkg/wordnet/val.jsonl",
        "controllm": DEMO / "data/controllm/train.txt",
    }
    val_text = held_out_text(args.out_dir, 3000)
    base = demo_training(args.demo_config)
    eval_config = EvalConfig.from_dict({k: base[k] for k in EvalConfig.field_names()})
    full_path = args.out_dir / f"full-{args.kg}.json"
    if not full_path.exists():
        full_path.write_text(json.dumps(evaluate_full_model(args.model, files["targetkg"], files["controlkg_val"],
                                                            [val_text], eval_config)))
    full = json.loads(full_path.read_text())
    for recipe in yaml.safe_load(args.recipes.read_text()):
        if args.only and recipe["name"] not in args.only:
            continue
        run_dir = args.out_dir / f"{recipe['name']}-{args.kg}-seed{args.seed}"
        metrics_path = run_dir / "val_metrics.json"
        if metrics_path.exists():
            continue
        config = recipe_config(base, recipe)
        start = time.perf_counter()
        mask = train_mask(args.model, files["targetkg"], files["controlkg"], [files["controllm"]], run_dir, config,
                          seed=args.seed, controlkg_val=files["controlkg_val"], progress=False)
        train_s = time.perf_counter() - start
        metrics = evaluate_mask(args.model, mask, files["targetkg"], files["controlkg_val"], [val_text], eval_config, full)
        # train_s is recorded, not tabled: sweeps may share the machine, so their timings are noise
        metrics["sweep"] = {"recipe": recipe, "kg": args.kg, "seed": args.seed, "train_s": train_s}
        metrics_path.write_text(json.dumps(metrics, indent=1))
        print(row(metrics), flush=True)
    if args.table:
        write_table(args.out_dir, args.table, argv if argv is not None else sys.argv[1:])
    return 0


SWEPT = ("steps", "init_p", "noise_scale_final", "top_k_blocks", "lambda_controlkg")  # the columns: the run's own values


def row(m: dict) -> str:
    s = m["sweep"]
    t, c, lm = m["targetkg"], m["controlkg"], m["controllm"]
    used = json.loads(m["provenance"]["mask_provenance"])["config"]  # mask metadata holds it as JSON text
    values = " | ".join(str(used[key]) for key in SWEPT)
    return (f"| {s['recipe']['name']} | {values} | {s['kg']} | {s['seed']} | {100 * m['sparsity']:.2f}% | "
            f"{t['ppl_remaining'] / t['ppl_full']:.2f}x | {100 * c['relative_delta_ppl']:+.1f}% | "
            f"{100 * lm['relative_delta_ppl']:+.1f}% |")


def write_table(out_dir: Path, table: Path, argv) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*/val_metrics.json"))]
    rows.sort(key=lambda m: (m["sweep"]["kg"], m["sweep"]["seed"], m["sweep"]["recipe"]["name"]))
    lines = [
        "| recipe | steps | init_p | noise_scale_final | top_k_blocks | lambda_controlkg | TargetKG | seed | sparsity | "
        "TargetKG ppl (x full) | ControlKG val | ControlLM held-out |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *(row(m) for m in rows),
    ]
    table.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
