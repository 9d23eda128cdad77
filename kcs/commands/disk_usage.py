"""`kcs disk-usage`: the disk a pipeline configuration will use, projected from the model shapes and
the run list before anything runs (the same runs the Snakefile schedules)."""

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("disk-usage", help="project the disk use of a pipeline configuration",
                              description=__doc__)
    p.add_argument("--config", nargs="+", default=["config.yaml"], metavar="YAML",
                   help="config.yaml, then any --configfile given to snakemake, merged as Snakemake merges them "
                        "(default: config.yaml)")
    p.add_argument("--parallel-jobs", type=int, default=8,
                   help="training jobs running at once, each holding a resume checkpoint (default 8)")
    p.add_argument("--markdown", help="also write the table as Markdown to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kcs.atomic import write_text
    from kcs.disk_usage import project, to_markdown
    from kcs.errors import KcsError
    from kcs.grid import load_pipeline_config

    if args.parallel_jobs < 1:
        raise KcsError(f"--parallel-jobs must be at least 1, got {args.parallel_jobs}")
    text = to_markdown(project(load_pipeline_config(args.config)), args.parallel_jobs)
    if args.markdown:
        write_text(args.markdown, text)
    print(text, end="")
    return 0
