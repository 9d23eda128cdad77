"""`kcs knowledge`: how well a model knows each fact and each KG (choose TargetKGs by it).

Prints one Markdown table row per KG (named by its file stem): facts, the paper's KG perplexity,
the uniform perplexity (vocabulary size), their ratio, the median rank of the gold last tail token,
hits@1, hits@10 and the mean probability of the gold token. A ratio near 1 means the model does
not know the KG, so there is nothing for a mask to remove. Writes the summaries, the per-fact rows
and provenance to --out (JSON), and the per-fact rows to --per-fact-csv.
"""

from __future__ import annotations

import csv
from pathlib import Path

from kcs.knowledge import DEFAULT_BATCH_SIZE, RANK_KEYS

CSV_FIELDS = ("kg", "head", "relation", "tail", "sentence", "gold_token_id", "gold_token", "rank", "prob",
              "logprob", "nll")
TABLE_HEADER = ("KG", "facts", "ppl", "uniform", "ppl/uniform", "median rank", "hits@1", "hits@10", "mean p")


def register(subparsers) -> None:
    p = subparsers.add_parser("knowledge", help="how well a model knows each fact and each KG",
                              description=__doc__)
    p.add_argument("--model", required=True, help="hub id or local model folder")
    p.add_argument("--kg", required=True, action="append", metavar="KG.jsonl",
                   help="a KG file; repeat for several (reported in the order given unless --rank-by)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help="facts per batch of the paper's KG perplexity (default %(default)s, the evaluation's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="JSON report to write")
    p.add_argument("--per-fact-csv", help="also write one CSV row per fact")
    p.add_argument("--rank-by", choices=sorted(RANK_KEYS),
                   help="print the KGs best known first by this metric (ppl_over_uniform: lowest first)")
    p.set_defaults(func=run)


def kg_names(paths: list[Path]) -> list[str]:
    """File stems; where two files share a stem, their paths as given."""
    stems = [p.stem for p in paths]
    return [stem if stems.count(stem) == 1 else str(p) for stem, p in zip(stems, paths)]


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def table_rows(entries: list[dict]) -> list[str]:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "| " + " | ".join("---" for _ in TABLE_HEADER) + " |"]
    for e in entries:
        s = e["summary"]
        cells = (e["name"], f"{s['n_facts']:,}", f"{s['ppl']:,.1f}", f"{s['uniform_ppl']:,}",
                 f"{s['ppl_over_uniform']:.4f}", f"{s['median_rank']:g}", _percent(s["hits_at_1"]),
                 _percent(s["hits_at_10"]), f"{s['mean_p']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _write_csv(path, entries: list[dict]) -> None:
    from kcs.atomic import atomic_path

    with atomic_path(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
            writer.writeheader()
            for e in entries:
                for row in e["facts"]:
                    writer.writerow({"kg": e["name"], **row})


def run(args) -> int:
    from kcs.atomic import write_json
    from kcs.errors import KcsError
    from kcs.kg import read_kg
    from kcs.knowledge import kg_knowledge, rank_order
    from kcs.models import load_model
    from kcs.provenance import file_sha256, provenance

    if args.batch_size < 1:
        raise KcsError(f"--batch-size must be at least 1, got {args.batch_size}")
    paths = [Path(p) for p in args.kg]
    kgs = [read_kg(p) for p in paths]  # every KG is checked before the model is loaded
    model, tokenizer = load_model(args.model, device=args.device)
    entries = []
    for name, path, facts in zip(kg_names(paths), paths, kgs):
        report = kg_knowledge(model, tokenizer, facts, args.batch_size, where=str(path), with_facts=True)
        per_fact = report.pop("facts")
        entries.append({"name": name, "path": str(path), "summary": report, "facts": per_fact})
    order = rank_order([e["summary"] for e in entries], args.rank_by)
    ranked = [entries[i] for i in order]
    result = {
        "kind": "knowledge",
        "model": str(args.model),
        "batch_size": args.batch_size,
        "rank_by": args.rank_by,
        "ranking": [e["name"] for e in ranked],
        "kgs": entries,
        "provenance": provenance(
            model=str(args.model),
            inputs={"kgs": {str(p): file_sha256(p) for p in paths}, "batch_size": args.batch_size},
        ),
    }
    if args.per_fact_csv:
        _write_csv(args.per_fact_csv, entries)
    write_json(args.out, result)
    print("\n".join(table_rows(ranked)))
    return 0
