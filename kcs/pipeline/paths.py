"""Where every file of the pipeline lives: one pattern per kind of file, defined once.

Fields in braces are Snakemake wildcards: model, kg (TargetKG), controlkg, variant ('default' or an
ablation), seed, method ('learned', 'random' or 'random-N'), combination, split, experiment, start,
step and name (settings files), paper_model and paper_kg (the authors' KG files). `{results}` is the
configuration's `results` folder, filled in by `Paths`.
"""

from __future__ import annotations

RESULT_PATTERNS = {
    "model_dir": "resources/models/{model}",
    "train_config": "{results}/config/train/{model}/{variant}.yaml",
    "eval_config": "{results}/config/evaluation.yaml",
    # what the last complete run was made of (kcs.pipeline.changes), written when the whole DAG is done
    "completed_plan": "{results}/config/completed.yaml",
    # settings of the data, model and selection steps (kcs.pipeline.settings)
    "settings": "{results}/config/{step}/{name}.yaml",
    "paper_kg": "{results}/data/paper/{paper_model}/{paper_kg}.jsonl",
    "targetkg_triplets": "{results}/data/triplets/targetkg/{kg}.jsonl",
    "controlkg_triplets": "{results}/data/triplets/controlkg/{controlkg}/{split}.jsonl",
    "targetkg": "{results}/data/{model}/targetkg/{kg}.jsonl",
    "controlkg": "{results}/data/{model}/controlkg/{controlkg}/{split}.jsonl",
    # the ControlKG split of one TargetKG's runs: the shared one less the facts that overlap it
    "run_controlkg": "{results}/data/{model}/controlkg_of/{kg}/{split}.jsonl",
    "controllm": "{results}/data/controllm/{split}.txt",
    "run_dir": "{results}/runs/{model}/{kg}/{variant}/seed{seed}",
    "mask": "{results}/runs/{model}/{kg}/{variant}/seed{seed}/mask.safetensors",
    # the step masks of a run evaluated on validation data, and the one a selection rule picks
    "steps": "{results}/steps/{model}/{kg}/{variant}/seed{seed}.json",
    "selected_mask": "{results}/runs/{model}/{kg}/{variant}/seed{seed}/selected.safetensors",
    "selection_record": "{results}/runs/{model}/{kg}/{variant}/seed{seed}/selection.json",
    "curves": "{results}/curves/{model}/{kg}/{variant}/seed{seed}.csv",
    "random_mask": "{results}/random_masks/{model}/{kg}/{variant}/seed{seed}/{method}.safetensors",
    "combined_mask": "{results}/combined/{model}/{kg}/{combination}.safetensors",
    "combined_random_mask": "{results}/combined/{model}/{kg}/{combination}.random.safetensors",
    "combined_metrics": "{results}/combined_metrics/{model}/{kg}/{combination}/{method}.json",
    "full_metrics": "{results}/full_model/{model}/{kg}.json",
    "metrics": "{results}/metrics/{model}/{kg}/{variant}/seed{seed}/{method}.json",
    "overlap_seeds": "{results}/overlap/{model}/seeds/{kg}.json",
    "overlap_kgs": "{results}/overlap/{model}/kgs/seed{seed}.json",
    "prefix_store": "{results}/cache/prefix",
    "finetune_config": "{results}/downstream/{experiment}/finetune.yaml",
    "built_task": "{results}/downstream/{experiment}/task",
    "finetune_result": "{results}/downstream/{experiment}/{model}/seed{seed}/{start}.json",
    "tables": "{results}/tables",
    "figures": "{results}/figures",
    "logs": "{results}/logs",
    "benchmarks": "{results}/benchmarks",
}

# The benchmark file of each heavy rule: {results}/benchmarks/<step>/<model>/<job>.tsv, the layout
# `kcs report compute-cost` reads (benchmark files are Snakemake's, so their labels are in the path).
# rule -> (step, job)
BENCHMARK_JOBS = {
    "prepare_model": ("prepare_model", "model"),
    "verbalise_targetkg": ("verbalise_targetkg", "{kg}"),
    "verbalise_controlkg": ("verbalise_controlkg", "{controlkg}.{split}"),
    "train_mask": ("train_mask", "{kg}.{variant}.seed{seed}"),
    "random_mask": ("random_mask", "{kg}.{variant}.seed{seed}.{method}"),
    "evaluate_full": ("evaluate_full", "{kg}"),
    "evaluate_mask": ("evaluate_mask", "{kg}.{variant}.seed{seed}.{method}"),
    "evaluate_steps": ("evaluate_steps", "{kg}.{variant}.seed{seed}"),
    "combine_seed_masks": ("combine", "{kg}.{combination}"),
    "evaluate_combined_mask": ("evaluate_combined", "{kg}.{combination}.{method}"),
    "overlap_seeds": ("overlap", "seeds.{kg}"),
    "overlap_kgs": ("overlap", "kgs.seed{seed}"),
    "finetune": ("finetune", "{experiment}.seed{seed}.{start}"),
}
BENCHMARK_LAYOUT = "{results}/benchmarks/{rule}/{model}/{job}.tsv"


def fill(pattern: str, **values) -> str:
    """The pattern with the given fields filled in; fields not given stay wildcards."""
    return pattern.format_map(_KeepMissing(values))


class _KeepMissing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Paths:
    """The patterns of one configuration (its results folder filled in), as attributes."""

    def __init__(self, results: str):
        self.results = results.rstrip("/")
        for name, pattern in RESULT_PATTERNS.items():
            setattr(self, name, fill(pattern, results=self.results))
        self.benchmark_layout = fill(BENCHMARK_LAYOUT, results=self.results)

    def benchmark(self, rule: str, **values) -> str:
        """The benchmark file of a heavy rule: a pattern, or one job's file given its wildcard values."""
        step, job = BENCHMARK_JOBS[rule]
        return fill(fill(self.benchmark_layout, rule=step, job=job), **values)
