# Names, targets and input functions of the rules. What the configuration asks for, and where each
# file lives, is decided by kcs (kcs/pipeline: Plan, the path patterns, the step settings); this file
# only names it for the rules. The rules hold no Python logic.

import os
import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from kcs import grid
from kcs.errors import KcsError
from kcs.pipeline import resources
from kcs.pipeline.paths import fill
from kcs.pipeline.plan import Plan
from kcs.pipeline.settings import STEPS, step_settings

try:
    validate(config, "../kcs/schemas/config.schema.json")
except WorkflowError as err:
    raise WorkflowError(f"config: {grid.schema_error(err)}") from None
try:
    PLAN = Plan(config)
except KcsError as err:
    raise WorkflowError(str(err)) from None

# ---- names ----------------------------------------------------------------------------------------

PATHS = PLAN.paths
MODELS, TARGETKGS, CONTROLKGS = PLAN.models, PLAN.targetkgs, PLAN.controlkgs
ABLATIONS, DOWNSTREAM = PLAN.ablations, PLAN.downstream
LOGS = PATHS.logs
TABLES = PATHS.tables
FIGURES = PATHS.figures
BENCHMARK = PATHS.benchmark
LEARNED_MASK = PLAN.learned_mask
WORDNET_DIR, LAMA_DIR, CSQA_DIR = PLAN.wordnet_dir, PLAN.lama_dir, PLAN.csqa_dir
CORPUS_DIRS = PLAN.corpus_dirs


def settings_file(step, name):
    """The settings file of a step (kcs.pipeline.settings), written by the step_settings rule."""
    return fill(PATHS.settings, step=step, name=name)


def _alternatives(names):
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


wildcard_constraints:
    model=_alternatives(MODELS),
    kg=_alternatives(TARGETKGS),
    controlkg=_alternatives(CONTROLKGS),
    variant=_alternatives(PLAN.variants),
    experiment=_alternatives(DOWNSTREAM),
    seed=r"\d+",
    split="train|val|test",
    paper_kg="[A-Za-z0-9.-]+",
    paper_model="gpt2(-medium|-large|-xl)?",
    method=r"learned|random(-[0-9]+)?",
    combination="|".join(grid.COMBINATIONS),
    start="full|remaining|random",
    step="|".join(STEPS),
    name="[^/]+",


# ---- targets --------------------------------------------------------------------------------------


def resolved_summary():
    return PLAN.summary()


get_final_outputs = PLAN.final_outputs
get_all_masks = PLAN.all_masks
get_metrics_files = PLAN.metrics_files
get_table_outputs = PLAN.table_outputs
get_figure_outputs = PLAN.figure_outputs
get_combined_metrics_files = PLAN.combined_metrics_files

get_default_masks = PLAN.default_masks
get_default_curves = PLAN.default_curves
get_overlap_files = PLAN.overlap_files
get_steps_files = PLAN.steps_files
get_downstream_results = PLAN.downstream_results
get_benchmark_files = PLAN.benchmark_files


def get_plan_record(wildcards):
    return PLAN.record()


def get_model_order():
    return ",".join(MODELS)


def get_kg_order():
    return ",".join(PLAN.table_kgs)


def get_paraphrase_kg_order():
    return ",".join(PLAN.paraphrase_kgs())


def get_variant_order():
    return ",".join(ABLATIONS)


def get_structure_model_dirs():
    return [PLAN.model_dir(model) for model in MODELS]


# ---- input functions and params of the rules ------------------------------------------------------


def get_model_dir(wildcards):
    return PLAN.model_dir(wildcards.model)


def get_step_settings(wildcards):
    return step_settings(PLAN, wildcards.step, wildcards.name)


def get_train_config_values(wildcards):
    return PLAN.train_config_values(wildcards.model, wildcards.variant)


def get_evaluation_config_values(wildcards):
    return PLAN.evaluation_config_values()


def get_finetune_config_values(wildcards):
    return dict(DOWNSTREAM[wildcards.experiment]["finetune"])


def get_training_data(wildcards):
    return PLAN.training_data(wildcards.model, wildcards.kg)


def get_evaluation_data(wildcards):
    return PLAN.evaluation_data(wildcards.model, wildcards.kg)


def get_steps_data(wildcards):
    return PLAN.steps_data(wildcards.model, wildcards.kg)


def get_run_controlkg_inputs(wildcards):
    return PLAN.run_controlkg_inputs(wildcards.model, wildcards.kg, wildcards.split)


def get_controlkg_overlap(wildcards):
    return PLAN.controlkg_overlap(PLAN.controlkg_of(wildcards.kg))


def get_verbalise_inputs(wildcards):
    return PLAN.verbalise_inputs(
        wildcards.model,
        kg=getattr(wildcards, "kg", None),
        controlkg=getattr(wildcards, "controlkg", None),
        split=getattr(wildcards, "split", None),
    )


def get_controllm_inputs(wildcards):
    return PLAN.controllm_inputs(wildcards.split)


def get_hub_id(wildcards):
    return MODELS[wildcards.model]["hub"]


def get_gguf_file(wildcards):
    return MODELS[wildcards.model]["gguf"]


def get_tiny_model_inputs(wildcards):
    return PLAN.tiny_model_inputs(wildcards.model)


def get_mask_to_evaluate(wildcards):
    return PLAN.run_mask(
        wildcards.model,
        wildcards.kg,
        wildcards.variant,
        wildcards.seed,
        wildcards.method,
    )


def get_combined_mask_to_evaluate(wildcards):
    return PLAN.combined_mask(
        wildcards.model, wildcards.kg, wildcards.combination, wildcards.method
    )


def get_seed_masks(wildcards):
    return PLAN.seed_masks(wildcards.model, wildcards.kg)


def get_kg_masks(wildcards):
    return PLAN.kg_masks(wildcards.model, wildcards.seed)


def get_task_build_inputs(wildcards):
    return PLAN.task_build_inputs(wildcards.experiment)


def get_finetune_inputs(wildcards):
    return PLAN.finetune_inputs(
        wildcards.experiment, wildcards.model, wildcards.seed, wildcards.start
    )


def get_random_draw(wildcards):
    return grid.random_draw(wildcards.method)


def get_first_seed(wildcards):
    return PLAN.seeds[0]


def get_labels(wildcards):
    """--label KEY=VALUE for each wildcard of the job: the labels kcs writes into its output."""
    return " ".join(f"--label {key}={value}" for key, value in wildcards.items())


def get_optional_arg(option, key):
    """' OPTION FILE' when the rule has the optional input `key`, else '' (the command is then
    exactly as without it)."""

    def get_arg(wildcards, input):
        if key not in input.keys():
            return ""
        value = input[key]
        return f" {option} {value if isinstance(value, str) else ' '.join(value)}"

    return get_arg


def get_finetune_start_args(wildcards, input):
    """The starting point: full model, learned subnetwork removed, or a random one of its size."""
    if wildcards.start == "full":
        return ""
    return f" --removal-mask {input.mask} --start {wildcards.start}"


def get_prefix_store_arg(wildcards):
    """kcs --prefix-store: the jobs of a model share the frozen prefix's hidden states."""
    return (
        f" --prefix-store {PATHS.prefix_store}" if config["share_prefix_cache"] else ""
    )


def get_step_masks_glob(wildcards, input):
    """The run's step masks, beside its final mask (a shell glob: their steps come from the config)."""
    return os.path.join(
        os.path.dirname(input.mask), "checkpoints", "step-*.safetensors"
    )


def get_benchmark_layout(wildcards):
    """The benchmark files' path pattern, as written (a plain string would be filled as wildcards)."""
    return PATHS.benchmark_layout


def get_structure_model_args(wildcards, input):
    """--model NAME=DIR per model: the structure figure reads the head counts from config.json."""
    return " ".join(
        f"--model {model}={folder}" for model, folder in zip(MODELS, input.models)
    )


def random_or_temp(path):
    """Random and combined masks: deleted once every job reading them is done when
    keep_random_masks is false (remade in seconds from their seed)."""
    return path if config["keep_random_masks"] else temp(path)


def learned_mask_output(path):
    """Learned masks: read-only once written when protect_learned_masks is true."""
    return protected(path) if config["protect_learned_masks"] else path


# ---- resources (kcs.pipeline.resources): scaled by model size, growing with each retry -------------


def get_train_mem_mb(wildcards, attempt):
    return resources.train_mem_mb(PLAN.model_size_m(wildcards.model), attempt)


def get_train_runtime(wildcards, attempt):
    steps = PLAN.train_config_values(wildcards.model, wildcards.variant)["steps"]
    return resources.train_runtime(steps, PLAN.model_size_m(wildcards.model), attempt)


def get_model_mem_mb(wildcards, attempt):
    size = PLAN.model_size_m(wildcards.model) if hasattr(wildcards, "model") else 0
    return resources.model_mem_mb(size, attempt)


def get_model_runtime(wildcards, attempt):
    size = PLAN.model_size_m(wildcards.model) if hasattr(wildcards, "model") else 0
    return resources.model_runtime(size, attempt)


def get_model_threads(wildcards):
    return resources.model_threads(PLAN.is_tiny(wildcards.model))
