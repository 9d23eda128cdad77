# The kcs pipeline: knowledge data -> mask training -> random baselines -> evaluation ->
# downstream finetuning -> the paper's tables, figures and the Snakemake report.
#
#   snakemake --cores all                                   # paper configuration (config.yaml, a GPU cluster)
#   snakemake --cores all --configfile configs/demo.yaml    # offline demo on a laptop (SmolLM2-135M)
#   snakemake --cores all --configfile configs/smoke.yaml   # tiny models, a few minutes (tests)
#   snakemake --cores all --profile slurm                   # on a SLURM cluster (slurm/config.yaml)
#   snakemake --report report.html [--configfile ...]       # HTML report of the tables and figures
#   snakemake --cores all all_masks | all_metrics | all_tables | all_figures   # parts of the DAG
#
# Orchestration only: the configuration is validated and turned into targets in rules/common.smk;
# each rule calls the `kcs` command line. See docs/pipeline.md.

import sys

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/settings.smk"
include: "rules/resources.smk"
include: "rules/models.smk"
include: "rules/data.smk"
include: "rules/training.smk"
include: "rules/checkpoints.smk"
include: "rules/evaluation.smk"
include: "rules/combination.smk"
include: "rules/downstream.smk"
include: "rules/reporting.smk"


# What the merged configuration resolved to, before anything runs (dry runs included); once per
# invocation, not again in each job's own process.
# And what it reruns compared with the last complete run (docs/pipeline.md, "What a change reruns").
if workflow.is_main_process:
    print(resolved_summary(), file=sys.stderr)
    print(PLAN.changes_summary(), file=sys.stderr)


rule all:
    default_target: True
    input:
        get_final_outputs(),
        PATHS.completed_plan,


# Named sub-targets, e.g. `snakemake --cores all --configfile configs/demo.yaml all_masks`.


rule all_masks:
    input:
        get_all_masks(),


rule all_metrics:
    input:
        get_metrics_files(),


rule all_tables:
    input:
        get_table_outputs(),


rule all_figures:
    input:
        get_figure_outputs(),
