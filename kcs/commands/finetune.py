"""Downstream finetuning after removal: `kcs finetune`, `kcs finetune-summary`, `kcs build-mc-task`.

The protocol (docs/downstream.md): learn a mask on facts linked to multiple-choice questions,
remove it (weights zeroed and kept at zero), finetune on the task's train split, and compare the
accuracy on the evaluation questions linked to the removed facts with all other questions, for
three starting points under the same finetuning:

  kcs finetune --model M --task T --linked-kg K.jsonl --config F.yaml --seed 1 --out full-1.json
  kcs finetune --model M --removal-mask mask.safetensors ... --out remaining-1.json
  kcs finetune --model M --random-like mask.safetensors --random-seed 1 ... --out random-1.json
  kcs finetune-summary full-*.json remaining-*.json random-*.json --csv t.csv --markdown t.md --figure f.png
"""

from __future__ import annotations

import argparse
import logging
import typing
from pathlib import Path

from kcs.commands import settings_option
from kcs.config import FinetuneConfig
from kcs.errors import KcsError
from kcs.labels import add_label_option, parse_labels

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help="finetune on a multiple-choice task after removal and evaluate by question group",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model folder or hub id (the unmodified pretrained model)")
    removal = p.add_mutually_exclusive_group()
    removal.add_argument("--removal-mask", metavar="MASK",
                         help="remove this mask's subnetwork (start 'remaining'); without a removal option the "
                              "full model is finetuned (start 'full')")
    removal.add_argument("--random-like", metavar="MASK",
                         help="remove a random subnetwork with the same number of weights per matrix as MASK "
                              "(start 'random')")
    p.add_argument("--random-seed", type=int, help="seed of the random removal (default: --seed)")
    p.add_argument("--start", help="label of the starting point in results (default: full | remaining | random)")
    p.add_argument("--task", help="task folder in CommonsenseQA's layout (train_rand_split.jsonl, "
                                  "dev_rand_split.jsonl), e.g. resources/csqa or a `kcs build-mc-task` folder")
    p.add_argument("--train", help="train split file (overrides the task folder's)")
    p.add_argument("--validation", help="validation split file (overrides the task folder's)")
    p.add_argument("--linked-kg", nargs="+", required=True, metavar="KG",
                   help="the removed TargetKG file(s): questions linked to their facts form the 'linked' group")
    p.add_argument("--control-kg", nargs="*", default=[], metavar="KG",
                   help="facts of a comparable KG that was not removed (e.g. the other CSQA half): splits 'other' "
                        "into 'other_linked' and 'unlinked', and keeps its questions out of training too")
    p.add_argument("--config", help="finetuning hyper-parameters (YAML with FinetuneConfig keys, docs/downstream.md)")
    p.add_argument("--style", choices=typing.get_args(FinetuneConfig.model_fields["style"].annotation),
                   help="override the config's style")
    p.add_argument("--epochs", type=int, help="override the config's epochs")
    p.add_argument("--max-steps", type=int, help="override the config's max_steps")
    p.add_argument("--seed", type=int, default=0, help="finetuning seed: data order, adapter init (default 0)")
    p.add_argument("--experiment", help="name grouping runs in the summary (default: the --linked-kg file stems)")
    p.add_argument("--no-before", action="store_true", help="skip the zero-shot evaluation before finetuning")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--out", required=True, help="result JSON")
    add_label_option(p)
    p.set_defaults(func=run_finetune)

    p = subparsers.add_parser(
        "finetune-summary", help="table and figure (accuracy by group and starting point) from finetune results",
        description="Pool `kcs finetune` results over seeds: accuracy per group and starting point, the gap "
                    "linked - other and its change against the full model, with bootstrap intervals.")
    p.add_argument("results", nargs="+", help="result JSON files of `kcs finetune`")
    p.add_argument("--csv", help="long-format table (one row per stage, start, quantity, group)")
    p.add_argument("--markdown", help="readable tables, one per experiment and stage")
    p.add_argument("--figure", help="bar chart (.png, .pdf or .svg)")
    p.add_argument("--json", help="the full summary")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=run_summary)

    p = subparsers.add_parser(
        "build-mc-task", help="build the offline WordNet multiple-choice task (the CommonsenseQA stand-in)",
        description="Hypernymy questions ('A cabin is a kind of' + choices) from WordNet 3.0 in CommonsenseQA's "
                    "local layout, each with `linked_facts`; every fact of --linked-kg becomes a validation "
                    "question. See kcs/downstream/wordnet_task.py and docs/downstream.md.")
    p.add_argument("--linked-kg", nargs="+", required=True, metavar="KG",
                   help="WordNet KG files (synset-id heads and tails) whose facts become linked validation questions")
    p.add_argument("--out", required=True, help="task folder to write")
    p.add_argument("--train-size", type=int, default=300, help="training questions (default 300)")
    settings_option(p)
    p.add_argument("--validation-size", type=int, default=150,
                   help="validation questions besides the linked ones (default 150)")
    p.add_argument("--choices", type=int, default=5, help="choices per question (default 5)")
    p.add_argument("--min-count", type=int, default=5,
                   help="minimum SemCor count of a sampled head word (default 5: common words)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--wordnet-dir", help="nltk data folder holding corpora/wordnet (default: NLTK_DATA, "
                                         "resources/nltk_data)")
    p.set_defaults(func=run_build_task)


def _read_kgs(paths: list[str]):
    from kcs.kg import read_kg

    return [fact for path in paths for fact in read_kg(path)]


def _removal(args, model) -> tuple[dict | None, str, dict]:
    """(removed dict, start label, description) from --removal-mask / --random-like."""
    if args.removal_mask is None and args.random_like is None:
        if args.random_seed is not None:
            raise KcsError("--random-seed only makes sense with --random-like")
        return None, "full", {"kind": "none"}
    from kcs.maskfile import load_mask, read_deviations
    from kcs.provenance import file_sha256

    source = args.removal_mask or args.random_like
    mask = load_mask(source, model=model)
    info = {"mask": str(source), "mask_sha256": file_sha256(source), "sparsity": mask.sparsity(),
            "deviations": read_deviations(source)}
    if args.removal_mask:
        return mask.binary(), "remaining", {"kind": "mask", **info}
    from kcs.random_baseline import random_like

    seed = args.seed if args.random_seed is None else args.random_seed
    randomised = random_like(mask, seed)
    return randomised.binary(), "random", {"kind": "random_like", "random_seed": seed,
                                           "random_sparsity": randomised.sparsity(), **info}


def run_finetune(args: argparse.Namespace) -> int:
    from kcs.atomic import write_json
    from kcs.downstream.experiment import run_experiment
    from kcs.downstream.finetune import config_dict, load_config
    from kcs.downstream.mcqa import load_task
    from kcs.models import load_model, model_name
    from kcs.provenance import file_sha256, provenance
    from kcs.seeding import seed_everything

    config = load_config(args.config, {"style": args.style, "epochs": args.epochs, "max_steps": args.max_steps})
    if args.task is None and (args.train is None or args.validation is None):
        raise KcsError("give --task DIR, or both --train FILE and --validation FILE")
    task = load_task(args.task, train=args.train, validation=args.validation)
    removed_facts = _read_kgs(args.linked_kg)
    control_facts = _read_kgs(args.control_kg)
    seed_everything(args.seed)
    model, tokenizer = load_model(args.model, device=args.device)
    removed, start, removal_info = _removal(args, model)
    experiment = args.experiment or "+".join(Path(p).name.removesuffix(".jsonl") for p in args.linked_kg)
    result = run_experiment(model, tokenizer, task, removed_facts, config=config, control_facts=control_facts,
                            removed=removed, seed=args.seed, start=args.start or start, experiment=experiment,
                            evaluate_before=not args.no_before)
    # which run this is: the pipeline gives its names (--label), else they come from the arguments
    labels = {"experiment": experiment, "model": model_name(args.model), "seed": args.seed, "start": result["start"]}
    result["labels"] = labels | parse_labels(args.label)
    result["model"] = result["labels"]["model"]
    result["removal"].update(removal_info)
    inputs = {"train": task.sources["train"], "validation": task.sources["validation"],
              **{f"linked_kg[{i}]": p for i, p in enumerate(args.linked_kg)},
              **{f"control_kg[{i}]": p for i, p in enumerate(args.control_kg)}}
    hashes = {k: file_sha256(v) for k, v in inputs.items() if Path(v).is_file()}
    result["provenance"] = provenance(config=config_dict(config), seed=args.seed, model=str(args.model),
                                      inputs=inputs, input_sha256=hashes, removal=removal_info)
    write_json(args.out, result)
    after = result["after"]["groups"]
    print(f"{args.out}: {result['start']} seed {args.seed}: linked {after['linked']['accuracy']:.3f} "
          f"(n={after['linked']['n']}), other {after['other']['accuracy']:.3f} (n={after['other']['n']}); "
          f"{result['train']['steps']} steps, {result['train']['seconds_per_step'] or 0:.3f} s/step")
    return 0


def run_summary(args: argparse.Namespace) -> int:
    from kcs.atomic import write_json, write_text
    from kcs.downstream.summary import load_results, summarise
    from kcs.provenance import provenance
    from kcs.reporting.downstream import figure, markdown, table_rows, write_csv

    if not any((args.csv, args.markdown, args.figure, args.json)):
        raise KcsError("nothing to write: give at least one of --csv, --markdown, --figure, --json")
    if not 0 < args.confidence < 1 or args.n_boot < 100:
        raise KcsError("--confidence must be in (0, 1) and --n-boot at least 100")
    summary = summarise(load_results(args.results), n_boot=args.n_boot, confidence=args.confidence, seed=args.seed)
    if args.csv:
        write_csv(table_rows(summary), args.csv)
    if args.markdown:
        write_text(args.markdown, markdown(summary) + "\n")
    if args.figure:
        figure(summary, args.figure)
    if args.json:
        write_json(args.json, {**summary, "provenance": provenance(seed=args.seed, results=args.results)})
    print(f"summarised {len(args.results)} runs in {len(summary['experiments'])} experiment(s)")
    return 0


def run_build_task(args: argparse.Namespace) -> int:
    from kcs.data.wordnet_install import find_wordnet, load_wordnet
    from kcs.downstream.wordnet_task import PROMPT_TEMPLATE, build_task, write_task
    from kcs.provenance import file_sha256, provenance

    facts = _read_kgs(args.linked_kg)
    wn = load_wordnet(args.wordnet_dir)
    train, validation, counts = build_task(wn, facts, train_size=args.train_size,
                                           validation_size=args.validation_size, n_choices=args.choices,
                                           min_count=args.min_count, seed=args.seed)
    settings = {"train_size": args.train_size, "validation_size": args.validation_size, "choices": args.choices,
                "min_count": args.min_count, "seed": args.seed, "linked_kg": args.linked_kg}
    info = {"task": "wordnet-hypernymy", "prompt_template": PROMPT_TEMPLATE, "counts": counts, "settings": settings,
            "provenance": provenance(seed=args.seed, config=settings, wordnet=str(find_wordnet(args.wordnet_dir)),
                                     linked_kg_sha256={p: file_sha256(p) for p in args.linked_kg})}
    write_task(args.out, train, validation, info)
    print(f"{args.out}: {counts['train']} training and {counts['validation']} validation questions "
          f"({counts['validation_linked']} linked to {counts['linked_facts']} facts)")
    return 0
