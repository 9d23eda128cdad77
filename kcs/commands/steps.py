"""Checkpoints over training: `kcs evaluate-steps`, `kcs select-checkpoint`, `kcs steps-figure`.

  kcs evaluate-steps --model DIR --targetkg F --controlkg VAL --controllm VAL_TEXT... --config F \
      --out steps.json [--csv steps.csv] [--label model=gpt2 --label kg=animals ...] MASK...
  kcs select-checkpoint --steps steps.json --rule final|best [--max-controlkg-increase 0.1 \
      --max-controllm-increase 0.05 --min-sparsity 0.0] --out selected.safetensors --record selection.json
  kcs steps-figure --out fig.png [--csv all_steps.csv] STEPS_JSON...

Only validation data go in: the selection must not see a test split.
"""

from __future__ import annotations

from pathlib import Path

from kcs.commands import add_prefix_store_argument, settings_option
from kcs.labels import add_label_option, parse_labels


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate-steps", help="evaluate the masks a run kept over training (validation data)",
                              description=__doc__)
    p.add_argument("masks", nargs="+", help="step masks (<run>/checkpoints/step-*.safetensors) and/or mask.safetensors")
    p.add_argument("--model", required=True, help="hub id or local model folder")
    p.add_argument("--targetkg", required=True)
    p.add_argument("--controlkg", required=True, help="the ControlKG's validation split (never the test split)")
    p.add_argument("--controllm", required=True, nargs="+", help="ControlLM validation text file(s)")
    p.add_argument("--config", help="YAML with eval_batch_size, eval_lm_batch_size, controllm_block_size, prefix_cache_mb")
    p.add_argument("--out", required=True, help="steps JSON to write")
    p.add_argument("--csv", help="also write the rows as CSV")
    add_label_option(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    add_prefix_store_argument(p)
    p.set_defaults(func=run_evaluate_steps)

    p = subparsers.add_parser("select-checkpoint", help="pick one step mask by a stated rule", description=__doc__)
    p.add_argument("--steps", required=True, help="a `kcs evaluate-steps` file")
    p.add_argument("--rule", required=True, choices=["final", "best"])
    settings_option(p)
    p.add_argument("--max-controlkg-increase", type=float, default=0.10, help="relative: 0.1 = +10 %% (rule best)")
    p.add_argument("--max-controllm-increase", type=float, default=0.05, help="relative: 0.05 = +5 %% (rule best)")
    p.add_argument("--min-sparsity", type=float, default=0.0, help="in [0, 1] (rule best)")
    p.add_argument("--out", required=True, help="the chosen mask, copied here with metadata step and selection")
    p.add_argument("--record", required=True, help="JSON record of the rule, the rows and the choice")
    p.set_defaults(func=run_select)

    p = subparsers.add_parser("steps-figure", help="figure: step masks' perplexities and sparsity against the step",
                              description=__doc__)
    p.add_argument("steps", nargs="+", help="`kcs evaluate-steps` files")
    p.add_argument("--out", required=True, help="figure (PNG)")
    p.add_argument("--csv", help="all rows of all files as one CSV")
    p.set_defaults(func=run_figure)


def _write_csv(path, frame) -> None:
    from kcs.atomic import write_text

    write_text(path, frame.to_csv(index=False, float_format="%.8g"))


def run_evaluate_steps(args) -> int:
    import pandas as pd

    from kcs.atomic import write_json
    from kcs.config import TrainConfig
    from kcs.evaluation import _inputs_fingerprint
    from kcs.provenance import provenance
    from kcs.step_evaluation import evaluate_steps

    labels = parse_labels(args.label)
    config = TrainConfig.from_yaml(args.config)
    rows = evaluate_steps(args.model, args.masks, args.targetkg, args.controlkg, args.controllm, config, args.device,
                          progress=not args.no_progress, prefix_store=args.prefix_store)
    full = {key.removesuffix("_full"): value for key, value in rows[0].items() if key.endswith("_ppl_full")}
    inputs = _inputs_fingerprint(args.targetkg, args.controlkg, args.controllm, config)
    result = {"kind": "steps", "labels": labels, "deviations": config.deviations_from_paper(), "full": full, "rows": rows,
              "provenance": provenance(config=config.to_dict(), model=str(args.model), inputs=inputs)}
    if args.csv:  # before the JSON, so a pipeline that waits for the JSON finds both
        frame = pd.DataFrame(rows)
        for key, value in reversed(labels.items()):
            frame.insert(0, key, value)
        _write_csv(args.csv, frame)
    write_json(args.out, result, finite=True)
    for row in rows:
        print(f"step {row['step']:>6}  sparsity {row['sparsity']:.4f}  TargetKG x{row['targetkg_ratio']:.3f}  "
              f"ControlKG {row['controlkg_change']:+.2%}  ControlLM {row['controllm_change']:+.2%}")
    return 0


def run_select(args) -> int:
    from kcs.atomic import write_json
    from kcs.errors import KcsError
    from kcs.provenance import file_sha256, provenance
    from kcs.step_evaluation import SelectionRule, read_steps_file, select_checkpoint, write_selected_mask

    rule = SelectionRule(args.rule, args.max_controlkg_increase, args.max_controllm_increase, args.min_sparsity)
    path = Path(args.steps)
    steps = read_steps_file(path)
    chosen = select_checkpoint(steps["rows"], rule)
    # the numbers were measured on that file's bytes: a mask changed since is not what was chosen
    if file_sha256(chosen["mask"]) != chosen["mask_sha256"]:
        raise KcsError(f"{chosen['mask']}: changed since {path} was written (its SHA-256 differs); "
                       "run kcs evaluate-steps again")
    outcome = {**rule.to_dict(), "criterion": rule.criterion(), "chosen_step": chosen["step"],
               "chosen_mask": chosen["mask"], "fallback": chosen["fallback"], "reason": chosen["reason"]}
    record = {
        **outcome,
        "chosen": {k: v for k, v in chosen.items() if k not in ("fallback", "reason")},
        "rows": [{**row, "excluded_by": rule.violations(row) if rule.rule == "best" else []}
                 for row in sorted(steps["rows"], key=lambda row: row["step"])],
        "labels": steps.get("labels", {}),
        "deviations": steps.get("deviations", {}),
        "steps_file": str(path),
        "steps_sha256": file_sha256(path),
        "provenance": provenance(model=steps.get("provenance", {}).get("model")),
    }
    write_selected_mask(chosen["mask"], args.out, chosen["step"], outcome)
    write_json(args.record, record, finite=True)
    print(f"selected step {chosen['step']} ({chosen['mask']}) by rule {rule.rule}"
          + (f"; {chosen['reason']}" if chosen["fallback"] else ""))
    return 0


def run_figure(args) -> int:
    import pandas as pd

    from kcs.reporting.steps import plot_steps, read_steps

    frames = [read_steps(path) for path in args.steps]
    if args.csv:
        _write_csv(args.csv, pd.concat(frames, ignore_index=True))
    plot_steps(frames, args.out)
    return 0
