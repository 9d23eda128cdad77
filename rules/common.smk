# The configuration, checked and turned into file names, targets and per-rule resources.
# Every input function of the rules lives here (named get_*); the rules hold no Python logic.

import functools
import os
import re
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from kcs import grid, shapes
from kcs.errors import KcsError

try:
    validate(config, "../kcs/schemas/config.schema.json")
except WorkflowError as err:
    raise WorkflowError(f"config: {grid.schema_error(err)}") from None


def _index(kind, entries):
    """name -> entry, refusing a name used twice (the schema cannot check that)."""
    out = {}
    for i, entry in enumerate(entries):
        if entry["name"] in out:
            raise WorkflowError(
                f"config: {kind}[{i}].name '{entry['name']}' is used twice; names must be unique"
            )
        out[entry["name"]] = entry
    return out


def _check_names(where, names, known, what):
    for name in names:
        if name not in known:
            raise WorkflowError(
                f"config: {where} names {what} '{name}', which is not defined; "
                f"defined: {', '.join(known) or 'none'}"
            )


RESULTS = config["results"].rstrip("/")
MODELS = _index("models", config["models"])
TARGETKGS = _index("targetkgs", config["targetkgs"])
CONTROLKGS = _index("controlkgs", config["controlkgs"])
ABLATIONS = _index("ablations", config["ablations"])
DOWNSTREAM = _index("downstream", config["downstream"])
SEEDS = list(config["seeds"])
DEFAULT = grid.DEFAULT_VARIANT
VARIANTS = [DEFAULT] + list(ABLATIONS)
TABLE_KGS = grid.table_kgs(config)

for _name, _kg in TARGETKGS.items():
    _check_names(
        f"targetkgs '{_name}'.controlkg", [_kg["controlkg"]], CONTROLKGS, "ControlKG"
    )
for _name, _ablation in ABLATIONS.items():
    _check_names(
        f"ablations '{_name}'.models", _ablation.get("models", []), MODELS, "model"
    )
    _check_names(
        f"ablations '{_name}'.targetkgs",
        _ablation.get("targetkgs", []),
        TARGETKGS,
        "TargetKG",
    )
for _name, _exp in DOWNSTREAM.items():
    _check_names(
        f"downstream '{_name}'.removed", [_exp["removed"]], TARGETKGS, "TargetKG"
    )
    _check_names(
        f"downstream '{_name}'.control",
        [_exp["control"]] if "control" in _exp else [],
        TARGETKGS,
        "TargetKG",
    )
    _check_names(f"downstream '{_name}'.models", _exp["models"], MODELS, "model")
if not TABLE_KGS:
    raise WorkflowError(
        "config: every TargetKG has tables: false; at least one must be in the tables"
    )
try:  # what the schema cannot check (e.g. a reversed block_range), for every run's settings
    grid.evaluation_config_values(config)
    for _run in grid.training_runs(config):
        grid.train_config_values(config, _run.model, _run.variant)
except KcsError as err:
    raise WorkflowError(str(err)) from None


# ---- file names ---------------------------------------------------------------------------------
# Wildcards: model, kg (TargetKG), controlkg, variant ('default' or an ablation), seed, method
# ('learned' or 'random'), split. The same patterns label files for `kcs report` (--layout).

MODEL_DIR = "resources/models/{model}"
CONFIG_DIR = f"{RESULTS}/config"
TRAIN_CONFIG = f"{CONFIG_DIR}/train/{{model}}/{{variant}}.yaml"
EVAL_CONFIG = f"{CONFIG_DIR}/evaluation.yaml"
DATA = f"{RESULTS}/data"
TARGETKG_TRIPLETS = f"{DATA}/triplets/targetkg/{{kg}}.jsonl"
CONTROLKG_TRIPLETS = f"{DATA}/triplets/controlkg/{{controlkg}}/{{split}}.jsonl"
TARGETKG = f"{DATA}/{{model}}/targetkg/{{kg}}.jsonl"
CONTROLKG = f"{DATA}/{{model}}/controlkg/{{controlkg}}/{{split}}.jsonl"
CONTROLLM = f"{DATA}/controllm/{{split}}.txt"
RUN_DIR = f"{RESULTS}/runs/{{model}}/{{kg}}/{{variant}}/seed{{seed}}"
PREFIX_STORE = f"{RESULTS}/cache/prefix"
MASK = f"{RUN_DIR}/mask.safetensors"
# Checkpoints over training (training keep_step_masks): each run's step masks evaluated on
# validation data, and the mask a selection rule picks (config checkpoint_selection)
STEPS = f"{RESULTS}/steps/{{model}}/{{kg}}/{{variant}}/seed{{seed}}.json"
SELECTED_MASK = f"{RUN_DIR}/selected.safetensors"
SELECTION_RECORD = f"{RUN_DIR}/selection.json"
SELECTION = config["checkpoint_selection"]
# The mask every evaluation, baseline, combination and downstream start reads: the final one, or
# the checkpoint chosen by the rule "best".
LEARNED_MASK = SELECTED_MASK if SELECTION["rule"] == "best" else MASK
CURVES = f"{RESULTS}/curves/{{model}}/{{kg}}/{{variant}}/seed{{seed}}.csv"
# method: learned, random (the first random draw) or random-N (draw N, config random_draws)
RANDOM_MASK = f"{RESULTS}/random_masks/{{model}}/{{kg}}/{{variant}}/seed{{seed}}/{{method}}.safetensors"
# the seed masks of a (model, TargetKG) combined (union, intersection, majority), and a random
# subnetwork of the same size per matrix for each
COMBINED_MASK = f"{RESULTS}/combined/{{model}}/{{kg}}/{{combination}}.safetensors"
COMBINED_RANDOM_MASK = (
    f"{RESULTS}/combined/{{model}}/{{kg}}/{{combination}}.random.safetensors"
)
COMBINED_METRICS = (
    f"{RESULTS}/combined_metrics/{{model}}/{{kg}}/{{combination}}/{{method}}.json"
)
FULL_METRICS = f"{RESULTS}/full_model/{{model}}/{{kg}}.json"
METRICS = f"{RESULTS}/metrics/{{model}}/{{kg}}/{{variant}}/seed{{seed}}/{{method}}.json"
OVERLAP_SEEDS = f"{RESULTS}/overlap/{{model}}/seeds/{{kg}}.json"
OVERLAP_KGS = f"{RESULTS}/overlap/{{model}}/kgs/seed{{seed}}.json"
DOWNSTREAM_DIR = f"{RESULTS}/downstream/{{experiment}}"
TABLES = f"{RESULTS}/tables"
FIGURES = f"{RESULTS}/figures"
LOGS = f"{RESULTS}/logs"
# Heavy rules write their benchmark file as <step>/<model>/<job>.tsv here (the compute-cost table).
BENCHMARKS = f"{RESULTS}/benchmarks"
BENCHMARK_LAYOUT = f"{BENCHMARKS}/{{rule}}/{{model}}/{{job}}.tsv"


def _alternatives(names):
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


wildcard_constraints:
    model=_alternatives(MODELS),
    kg=_alternatives(TARGETKGS),
    controlkg=_alternatives(CONTROLKGS),
    variant=_alternatives(VARIANTS),
    experiment=_alternatives(DOWNSTREAM),
    seed=r"\d+",
    split="train|val|test",
    paper_kg="[A-Za-z0-9.-]+",
    paper_model="gpt2(-medium|-large|-xl)?",
    method=r"learned|random(-[0-9]+)?",
    combination="|".join(grid.COMBINATIONS),
    start="full|remaining|random",


# ---- which runs -----------------------------------------------------------------------------------


def training_runs():
    """(model, kg, variant, seed) of every mask to train (kcs.grid: the same runs `kcs disk-usage` counts)."""
    return grid.training_runs(config)


def evaluations():
    """(model, kg, variant, seed, method) of every metrics file in the tables."""
    return grid.evaluations(config)


def _fill(pattern, **values):
    return pattern.format(**values)


def get_metrics_files():
    return [
        _fill(METRICS, model=m, kg=k, variant=v, seed=s, method=method)
        for m, k, v, s, method in evaluations()
    ]


def get_combined_metrics_files():
    return [
        _fill(COMBINED_METRICS, model=m, kg=k, combination=c, method=method)
        for m, k, c in grid.seed_combinations(config)
        for method in ("learned", "random")
    ]


def get_default_masks():
    return [
        _fill(LEARNED_MASK, model=m, kg=k, variant=v, seed=s)
        for m, k, v, s in training_runs()
        if v == DEFAULT and k in TABLE_KGS
    ]


def get_first_random_masks():
    """The first random draw of every default-variant table run (the structure figure's baseline)."""
    if not config["random_baseline"]:
        return []
    return [
        _fill(RANDOM_MASK, model=m, kg=k, variant=v, seed=s, method="random")
        for m, k, v, s in training_runs()
        if v == DEFAULT and k in TABLE_KGS
    ]


def get_structure_model_dirs():
    return [get_model_dir(SimpleNamespace(model=model)) for model in MODELS]


def get_structure_model_args(wildcards, input):
    """--model NAME=DIR per model: the structure figure reads the head counts from config.json."""
    return " ".join(
        f"--model {model}={folder}" for model, folder in zip(MODELS, input.models)
    )


def paraphrase_kgs():
    """Table KGs whose facts carry paraphrases: verbalised by kcs for the model (kcs's other templates)
    rather than the authors' sentences, which come without paraphrases."""
    return [
        kg
        for kg in TABLE_KGS
        if any(targetkg_file(m, kg) == _fill(TARGETKG, model=m, kg=kg) for m in MODELS)
    ]


def get_paraphrase_kg_order():
    return ",".join(paraphrase_kgs())


def get_default_curves():
    return [
        _fill(CURVES, model=m, kg=k, variant=v, seed=s)
        for m, k, v, s in training_runs()
        if v == DEFAULT and k in TABLE_KGS
    ]


def get_overlap_files():
    """Seed overlap per (model, TargetKG) with >= 2 seeds; TargetKG overlap per (model, seed) with >= 2 KGs."""
    files = []
    for model in MODELS:
        if len(SEEDS) > 1:
            files += [_fill(OVERLAP_SEEDS, model=model, kg=kg) for kg in TABLE_KGS]
        if len(TABLE_KGS) > 1:
            files += [_fill(OVERLAP_KGS, model=model, seed=seed) for seed in SEEDS]
    return files


def get_downstream_results():
    files = []
    for name, exp in DOWNSTREAM.items():
        for model in exp["models"]:
            for seed in exp["seeds"]:
                for start in exp["starts"]:
                    files.append(
                        f"{RESULTS}/downstream/{name}/{model}/seed{seed}/{start}.json"
                    )
    return files


def get_table_outputs():
    names = ["main", "kgs", "compute_cost"] + (["ablations"] if ABLATIONS else [])
    names += ["combined"] if grid.seed_combinations(config) else []
    names += ["paraphrases"] if paraphrase_kgs() else []
    names += ["structure"] if config["random_baseline"] else []
    return [f"{TABLES}/{name}.{ext}" for name in names for ext in ("csv", "md", "tex")]


def get_figure_outputs():
    names = ["density", "curves"] + (["delta_ppl"] if config["random_baseline"] else [])
    names += ["overlap"] if get_overlap_files() else []
    names += ["combined"] if grid.seed_combinations(config) else []
    names += ["paraphrases"] if paraphrase_kgs() and config["random_baseline"] else []
    names += ["structure"] if config["random_baseline"] else []
    names += ["steps"] if get_steps_files() else []
    return [f"{FIGURES}/{name}.png" for name in names]


def get_final_outputs():
    outputs = [f"{TABLES}/runs.csv"] + get_table_outputs() + get_figure_outputs()
    if DOWNSTREAM:
        outputs += [
            f"{TABLES}/downstream.csv",
            f"{TABLES}/downstream.md",
            f"{FIGURES}/downstream.png",
        ]
    return outputs


# ---- input functions of the rules -----------------------------------------------------------------


def get_model_dir(wildcards):
    """The model folder: given as `path:`, else prepared by a rule of rules/models.smk."""
    entry = MODELS[wildcards.model]
    return entry["path"] if "path" in entry else _fill(MODEL_DIR, model=wildcards.model)


def train_config_values(model, variant):
    return grid.train_config_values(config, model, variant)


def get_train_config_values(wildcards):
    return train_config_values(wildcards.model, wildcards.variant)


def get_controlkg_name(wildcards):
    return TARGETKGS[wildcards.kg]["controlkg"]


def get_training_data(wildcards):
    controlkg = get_controlkg_name(wildcards)
    return {
        "targetkg": targetkg_file(wildcards.model, wildcards.kg),
        "controlkg": controlkg_file(wildcards.model, controlkg, "train"),
        "controlkg_val": controlkg_file(wildcards.model, controlkg, "val"),
        "controllm": _fill(CONTROLLM, split="train"),
    }


def get_evaluation_data(wildcards):
    """Evaluation data: the TargetKG itself, the ControlKG's validation split (and its held-out test
    split where it has one), the ControlLM test text."""
    controlkg = get_controlkg_name(wildcards)
    data = {
        "targetkg": targetkg_file(wildcards.model, wildcards.kg),
        "controlkg": controlkg_file(wildcards.model, controlkg, "val"),
        "controllm": _fill(CONTROLLM, split="test"),
    }
    if controlkg_has_test(controlkg):
        data["controlkg_test"] = controlkg_file(wildcards.model, controlkg, "test")
    return data


def get_steps_data(wildcards):
    """Validation data only: checkpoint selection must not see a test split."""
    return {
        "targetkg": targetkg_file(wildcards.model, wildcards.kg),
        "controlkg": controlkg_file(
            wildcards.model, get_controlkg_name(wildcards), "val"
        ),
        "controllm": _fill(CONTROLLM, split="val"),
    }


def get_controlkg_test_arg(wildcards, input):
    """' --controlkg-test FILE', or '' (the command is then exactly as without a test split)."""
    return (
        f" --controlkg-test {input.controlkg_test}"
        if "controlkg_test" in input.keys()
        else ""
    )


def get_mask_to_evaluate(wildcards):
    pattern = LEARNED_MASK if wildcards.method == "learned" else RANDOM_MASK
    return _fill(
        pattern,
        model=wildcards.model,
        kg=wildcards.kg,
        variant=wildcards.variant,
        seed=wildcards.seed,
        method=wildcards.method,
    )


def get_combined_mask_to_evaluate(wildcards):
    pattern = COMBINED_MASK if wildcards.method == "learned" else COMBINED_RANDOM_MASK
    return _fill(
        pattern,
        model=wildcards.model,
        kg=wildcards.kg,
        combination=wildcards.combination,
    )


def get_random_draw(wildcards):
    return grid.random_draw(wildcards.method)


def get_first_seed(wildcards):
    return SEEDS[0]


def random_or_temp(path):
    """Random and combined masks: deleted once every job reading them is done when
    keep_random_masks is false (remade in seconds from their seed)."""
    return path if config["keep_random_masks"] else temp(path)


def get_prefix_store_arg(wildcards):
    """kcs --prefix-store: the jobs of a model share the frozen prefix's hidden states."""
    return f" --prefix-store {PREFIX_STORE}" if config["share_prefix_cache"] else ""


def learned_mask_output(path):
    """Learned masks: read-only once written when protect_learned_masks is true."""
    return protected(path) if config["protect_learned_masks"] else path


def get_seed_masks(wildcards):
    return [
        _fill(
            LEARNED_MASK,
            model=wildcards.model,
            kg=wildcards.kg,
            variant=DEFAULT,
            seed=s,
        )
        for s in SEEDS
    ]


def get_kg_masks(wildcards):
    return [
        _fill(
            LEARNED_MASK,
            model=wildcards.model,
            kg=kg,
            variant=DEFAULT,
            seed=wildcards.seed,
        )
        for kg in TABLE_KGS
    ]


def get_benchmark_files():
    """The benchmark file of every heavy job of the DAG (see the benchmark: lines of the rules)."""
    files = []
    models_used = dict.fromkeys(m for m, _ in kg_file_uses())
    for model in models_used:
        if "path" not in MODELS[model]:
            files.append(f"{BENCHMARKS}/prepare_model/{model}/model.tsv")
    for model, kg, variant, seed in training_runs():
        files.append(f"{BENCHMARKS}/train_mask/{model}/{kg}.{variant}.seed{seed}.tsv")
    for model, kg, variant, seed, method in evaluations():
        files.append(
            f"{BENCHMARKS}/evaluate_mask/{model}/{kg}.{variant}.seed{seed}.{method}.tsv"
        )
        if method != "learned":
            files.append(
                f"{BENCHMARKS}/random_mask/{model}/{kg}.{variant}.seed{seed}.{method}.tsv"
            )
    files += [
        f"{BENCHMARKS}/evaluate_steps/{m}/{k}.{v}.seed{s}.tsv"
        for m, k, v, s in training_runs()
        if k in TABLE_KGS and keeps_step_masks(m, v)
    ]
    for model, kg, combination in grid.seed_combinations(config):
        files.append(f"{BENCHMARKS}/combine/{model}/{kg}.{combination}.tsv")
        files += [
            f"{BENCHMARKS}/evaluate_combined/{model}/{kg}.{combination}.{method}.tsv"
            for method in ("learned", "random")
        ]
    for model in MODELS:  # as get_overlap_files
        if len(SEEDS) > 1:
            files += [
                f"{BENCHMARKS}/overlap/{model}/seeds.{kg}.tsv" for kg in TABLE_KGS
            ]
        if len(TABLE_KGS) > 1:
            files += [f"{BENCHMARKS}/overlap/{model}/kgs.seed{s}.tsv" for s in SEEDS]
    for model, kg in dict.fromkeys((m, k) for m, k, _, _, _ in evaluations()):
        files.append(f"{BENCHMARKS}/evaluate_full/{model}/{kg}.tsv")
    files += get_data_benchmark_files()
    for name, exp in DOWNSTREAM.items():
        for model in exp["models"]:
            for seed in exp["seeds"]:
                for start in exp["starts"]:
                    files.append(
                        f"{BENCHMARKS}/finetune/{model}/{name}.seed{seed}.{start}.tsv"
                    )
    return files


def get_model_order():
    return ",".join(MODELS)


def get_kg_order():
    return ",".join(TABLE_KGS)


def get_variant_order():
    return ",".join(ABLATIONS)


# ---- resources: scaled by model size, growing with each retry (attempt) -------------------------
# Defaults for a GPU cluster; adapt per rule in the profile (slurm/config.yaml, set-resources).


@functools.lru_cache(maxsize=None)
def model_size_m(model):
    """Parameters (millions) of a configured model, for memory and time requests, from its shape
    values (kcs.shapes); 1,000 where the shape is not known without the model (GGUF, unknown hub id).
    """
    parameters = shapes.approximate_parameters(MODELS[model])
    return 1000 if parameters is None else parameters / 1e6


def get_train_mem_mb(wildcards, attempt):
    # model + frozen reference outputs + mask logits, gradients and two Adam moments (16 B/weight)
    return int((3000 + 24 * model_size_m(wildcards.model)) * attempt)


def get_train_runtime(wildcards, attempt):
    """Minutes: ~1 h for GPT-2 small's 40,000 steps on one GPU (docs/method.md 8.1), scaled by size."""
    minutes = (
        15
        + train_config_values(wildcards.model, wildcards.variant)["steps"]
        * model_size_m(wildcards.model)
        * 1.2e-5
    )
    return int(minutes * attempt)


def get_model_mem_mb(wildcards, attempt):
    """Steps that load the model once (evaluation, verbalisation, conversion)."""
    size = model_size_m(wildcards.model) if hasattr(wildcards, "model") else 0
    return int((2000 + 12 * size) * attempt)


def get_model_runtime(wildcards, attempt):
    size = model_size_m(wildcards.model) if hasattr(wildcards, "model") else 0
    return int((20 + size / 10) * attempt)


# ---- models -------------------------------------------------------------------------------------


def models_of_kind(kind):
    return [name for name, entry in MODELS.items() if kind in entry]


def get_hub_id(wildcards):
    return MODELS[wildcards.model]["hub"]


def get_gguf_file(wildcards):
    return MODELS[wildcards.model]["gguf"]


def get_tiny_model_inputs(wildcards):
    """The tokenizer folder to copy, or the ControlLM training text to train a tokenizer on."""
    tiny = MODELS[wildcards.model]["tiny"]
    return [
        tiny["tokenizer"] if "tokenizer" in tiny else _fill(CONTROLLM, split="train")
    ]


def get_tiny_model_args(wildcards, input):
    tiny = MODELS[wildcards.model]["tiny"]
    args = (
        f"--family {tiny['family']} --layers {tiny['layers']} --width {tiny['width']} "
        f"--heads {tiny['heads']} --seed {tiny.get('seed', 0)}"
    )
    if "tokenizer" in tiny:
        return f"{args} --tokenizer {input[0]}"
    return f"{args} --tokenizer-texts {input[0]} --vocab-size {tiny.get('vocab_size', 2000)}"


def get_evaluation_config_values(wildcards):
    return grid.evaluation_config_values(config)


def layout(pattern):
    """A params value passed on as written (Snakemake would fill its {fields} as wildcards):
    the file-name pattern that tells `kcs report` which run each input file belongs to.
    """

    def get_layout(wildcards):
        return pattern

    return get_layout


# ---- knowledge data -----------------------------------------------------------------------------
# A TargetKG is first a triplet file (model-independent), then a KG file per model (verbalised with
# the model's lowest-perplexity template). The authors' own sentences are used where they made them
# (docs/method.md 3.1-3.3): per GPT-2 size for the WordNet TargetKGs, GPT-2 small's for every model for
# the ConceptNet and CommonsenseQA KGs (as their loader does).

WORDNET_DIR = "resources/nltk_data"
LAMA_DIR = "resources/lama"
CSQA_DIR = "resources/csqa"
CORPUS_DIRS = {
    "wikitext": "resources/corpora/wikitext-2-raw-v1",
    "sotu": "resources/corpora/sotu",
}
PAPER_KG = f"{DATA}/paper/{{paper_model}}/{{paper_kg}}.jsonl"
PAPER_WORDNET_KGS = [
    "building.n.01",
    "change.n.01",
    "communication.n.02",
    "location.n.01",
    "magnitude.n.01",
    "representation.n.02",
    "statement.n.01",
]
GPT2_SIZES = ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"]


def kgs_of_kind(kind):
    return [name for name, entry in TARGETKGS.items() if kind in entry]


def controlkgs_of_kind(kind):
    return [name for name, entry in CONTROLKGS.items() if kind in entry]


def gpt2_size(model):
    """The GPT-2 size a model is (for the authors' per-size sentences), or None."""
    hub = MODELS[model].get("hub", "")
    size = hub.rsplit("/", 1)[-1]
    return size if size in GPT2_SIZES else None


def _paper_kg_file(name, model=None):
    """The shipped paper KG: WordNet ones per GPT-2 size, the others GPT-2 small's for any model."""
    size = gpt2_size(model) if model and name in PAPER_WORDNET_KGS else "gpt2"
    return _fill(PAPER_KG, paper_kg=name, paper_model=size)


def targetkg_triplets(kg):
    entry = TARGETKGS[kg]
    if "paper" in entry:
        return _paper_kg_file(entry["paper"])  # a KG file is also a triplet file
    if "triplets" in entry:
        return entry["triplets"]
    return _fill(TARGETKG_TRIPLETS, kg=kg)


def get_targetkg_triplets(wildcards):
    return targetkg_triplets(wildcards.kg)


def targetkg_file(model, kg):
    """The TargetKG KG file for a model: the authors' sentences where they exist, else verbalised."""
    entry = TARGETKGS[kg]
    if (
        "paper" in entry
        and entry.get("sentences", "authors") == "authors"
        and (entry["paper"] not in PAPER_WORDNET_KGS or gpt2_size(model))
    ):
        return _paper_kg_file(entry["paper"], model)
    return _fill(TARGETKG, model=model, kg=kg)


def controlkg_has_test(controlkg):
    """A held-out test split (evaluation only): sampled (wordnet test_size > 0) or given (triplets test)."""
    entry = CONTROLKGS[controlkg]
    if "wordnet" in entry:
        return entry["wordnet"].get("test_size", 0) > 0
    return "test" in entry.get("triplets", {})


def wordnet_controlkgs_with_test():
    return [n for n in controlkgs_of_kind("wordnet") if controlkg_has_test(n)]


def controlkg_triplets(controlkg, split):
    entry = CONTROLKGS[controlkg]
    if "triplets" in entry:
        return entry["triplets"][split]
    return _fill(CONTROLKG_TRIPLETS, controlkg=controlkg, split=split)


def get_controlkg_triplets(wildcards):
    return controlkg_triplets(wildcards.controlkg, wildcards.split)


def controlkg_file(model, controlkg, split):
    entry = CONTROLKGS[controlkg]
    if "paper" in entry:
        return _fill(
            PAPER_KG, paper_kg=f"{entry['paper']}-controlkg-{split}", paper_model="gpt2"
        )
    return _fill(CONTROLKG, model=model, controlkg=controlkg, split=split)


def get_wordnet_controlkg_inputs(wildcards):
    """Every TargetKG trained with this ControlKG: their synsets are kept out of it."""
    kgs = [
        kg
        for kg, entry in TARGETKGS.items()
        if entry["controlkg"] == wildcards.controlkg
    ]
    return {"wordnet": WORDNET_DIR, "exclude": [targetkg_triplets(kg) for kg in kgs]}


def get_controlkg_sizes(wildcards):
    wordnet = CONTROLKGS[wildcards.controlkg]["wordnet"]
    return f"--train-size {wordnet['train_size']} --val-size {wordnet['val_size']} --seed {wordnet.get('seed', 0)}"


def get_controlkg_test_size(wildcards):
    return CONTROLKGS[wildcards.controlkg]["wordnet"]["test_size"]


def get_wordnet_sample_args(wildcards):
    sample = TARGETKGS[wildcards.kg]["wordnet"]
    args = f"--root {sample['root']}"
    for key in ("size", "hops", "up", "seed"):
        if key in sample:
            args += f" --{key} {sample[key]}"
    return args


def get_conceptnet_sample_args(wildcards):
    sample = TARGETKGS[wildcards.kg]["conceptnet"]
    args = f"--concept '{sample['concept']}'"
    for key in ("size", "hops", "seed"):
        if key in sample:
            args += f" --{key} {sample[key]}"
    return args


def get_verbalise_inputs(wildcards):
    """Triplets + model (+ WordNet when the triplets are synset ids: always passed for WordNet KGs)."""
    if hasattr(wildcards, "kg"):
        triplets = targetkg_triplets(wildcards.kg)
        uses_wordnet = (
            "wordnet" in TARGETKGS[wildcards.kg]
            or TARGETKGS[wildcards.kg].get("paper") in PAPER_WORDNET_KGS
        )
    else:
        triplets = controlkg_triplets(wildcards.controlkg, wildcards.split)
        uses_wordnet = "wordnet" in CONTROLKGS[wildcards.controlkg]
    inputs = {"triplets": triplets, "model": get_model_dir(wildcards)}
    if uses_wordnet:
        inputs["wordnet"] = WORDNET_DIR
    return inputs


def get_wordnet_arg(wildcards, input):
    return f"--wordnet-dir {input.wordnet}" if "wordnet" in input.keys() else ""


def get_controllm_inputs(wildcards):
    part = config["controllm"][wildcards.split]
    source = config["controllm"]["source"]
    return part["files"] if source == "files" else [CORPUS_DIRS[source]]


def get_controllm_args(wildcards, input):
    part = config["controllm"][wildcards.split]
    source = config["controllm"]["source"]
    args = f"--source {source} --split {part['split']}"
    args += f" --files {' '.join(input)}" if source == "files" else f" --dir {input[0]}"
    if part["fraction"] is not None:
        args += f" --fraction {part['fraction']}"
    if part["max_words"] is not None:
        args += f" --max-words {part['max_words']}"
    return args


def kg_file_uses():
    """(model, TargetKG) pairs whose KG file the DAG needs: training runs and downstream groups."""
    pairs = [(m, k) for m, k, _, _ in training_runs()]
    for exp in DOWNSTREAM.values():
        for model in exp["models"]:
            pairs += [(model, exp[key]) for key in ("removed", "control") if key in exp]
    return list(dict.fromkeys(pairs))


def get_data_benchmark_files():
    files = []
    trained = list(
        dict.fromkeys((m, TARGETKGS[k]["controlkg"]) for m, k, _, _ in training_runs())
    )
    for model, kg in kg_file_uses():
        if targetkg_file(model, kg) == _fill(TARGETKG, model=model, kg=kg):
            files.append(f"{BENCHMARKS}/verbalise_targetkg/{model}/{kg}.tsv")
    evaluated = {(m, TARGETKGS[k]["controlkg"]) for m, k, _, _, _ in evaluations()}
    for model, controlkg in trained:
        if "paper" in CONTROLKGS[controlkg]:
            continue
        splits = ["train", "val"]
        if controlkg_has_test(controlkg) and (model, controlkg) in evaluated:
            splits.append("test")  # only the evaluation reads it
        files += [
            f"{BENCHMARKS}/verbalise_controlkg/{model}/{controlkg}.{split}.tsv"
            for split in splits
        ]
    return files


# ---- downstream finetuning ----------------------------------------------------------------------

FINETUNE_RESULT = f"{DOWNSTREAM_DIR}/{{model}}/seed{{seed}}/{{start}}.json"
FINETUNE_CONFIG = f"{DOWNSTREAM_DIR}/finetune.yaml"
BUILT_TASK = f"{DOWNSTREAM_DIR}/task"


def get_finetune_config_values(wildcards):
    return dict(DOWNSTREAM[wildcards.experiment]["finetune"])


def get_task_dir(wildcards):
    task = DOWNSTREAM[wildcards.experiment]["task"]
    return (
        task["folder"]
        if "folder" in task
        else _fill(BUILT_TASK, experiment=wildcards.experiment)
    )


def get_task_build_inputs(wildcards):
    """The removed TargetKG's facts become the linked questions of the WordNet stand-in task."""
    exp = DOWNSTREAM[wildcards.experiment]
    return {
        "wordnet": WORDNET_DIR,
        "linked": targetkg_file(exp["models"][0], exp["removed"]),
    }


def get_task_build_args(wildcards):
    settings = DOWNSTREAM[wildcards.experiment]["task"]["wordnet"]
    return " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in settings.items()
    )


def get_finetune_inputs(wildcards):
    exp = DOWNSTREAM[wildcards.experiment]
    inputs = {
        "model": get_model_dir(wildcards),
        "task": get_task_dir(wildcards),
        "linked": targetkg_file(wildcards.model, exp["removed"]),
        "config": _fill(FINETUNE_CONFIG, experiment=wildcards.experiment),
    }
    if "control" in exp:
        inputs["control"] = targetkg_file(wildcards.model, exp["control"])
    # the learned subnetwork, or the random one the random_mask rule drew for that run (made once)
    if wildcards.start != "full":
        inputs["mask"] = _fill(
            LEARNED_MASK if wildcards.start == "remaining" else RANDOM_MASK,
            model=wildcards.model,
            kg=exp["removed"],
            variant=DEFAULT,
            seed=wildcards.seed,
            method=grid.RANDOM,
        )
    return inputs


def get_finetune_args(wildcards, input):
    """The starting point: full model, learned subnetwork removed, or a random one of its size."""
    args = f"--control-kg {input.control}" if "control" in input.keys() else ""
    if wildcards.start != "full":
        args += f" --removal-mask {input.mask} --start {wildcards.start}"
    return args


def get_model_threads(wildcards):
    """CPU threads of steps that run the model: 1 for tiny models (more threads only add overhead
    there, and two one-thread jobs share a 2-core machine better), else 4."""
    return 1 if "tiny" in MODELS[wildcards.model] else 4


def get_all_masks():
    return [
        _fill(LEARNED_MASK, model=m, kg=k, variant=v, seed=s)
        for m, k, v, s in training_runs()
    ]


def keeps_step_masks(model, variant):
    return train_config_values(model, variant)["keep_step_masks"]


def get_steps_files():
    """The step evaluation of every table run that keeps step masks."""
    return [
        _fill(STEPS, model=m, kg=k, variant=v, seed=s)
        for m, k, v, s in training_runs()
        if k in TABLE_KGS and keeps_step_masks(m, v)
    ]


def get_step_masks_glob(wildcards, input):
    """The run's step masks, beside its final mask (a shell glob: their steps come from the config)."""
    return os.path.join(
        os.path.dirname(input.mask), "checkpoints", "step-*.safetensors"
    )


def get_steps_labels(wildcards):
    return " ".join(
        f"--label {key}={getattr(wildcards, key)}"
        for key in ("model", "kg", "variant", "seed")
    )


def get_selection_args(wildcards):
    return (
        f"--rule best --max-controlkg-increase {SELECTION['max_controlkg_increase']}"
        f" --max-controllm-increase {SELECTION['max_controllm_increase']}"
        f" --min-sparsity {SELECTION['min_sparsity']}"
    )


if get_steps_files() and "val" not in config["controllm"]:
    raise WorkflowError(
        "config: training keep_step_masks evaluates every step mask on ControlLM validation text, "
        "but controllm has no 'val' split; add controllm.val (e.g. {split: validation, files: [], "
        "fraction: null, max_words: 20000}) as in config.yaml"
    )
if SELECTION["rule"] == "best":
    _no_steps = [
        f"{m}/{v}" for m, _, v, _ in training_runs() if not keeps_step_masks(m, v)
    ]
    if _no_steps:
        raise WorkflowError(
            "config: checkpoint_selection.rule 'best' chooses among step masks, but training of "
            f"{', '.join(dict.fromkeys(_no_steps))} has keep_step_masks false; set training.keep_step_masks: true"
        )


# ---- what this invocation resolved ---------------------------------------------------------------


def resolved_summary():
    """What the merged configuration (config.yaml <- --configfile) asks for, in a few lines:
    a partial --configfile inherits the paper's grid and 40,000 steps, so say it before starting.
    """
    runs = training_runs()
    steps = sorted({train_config_values(m, v)["steps"] for m, _, v, _ in runs})
    lines = [
        f"kcs pipeline: results in {RESULTS}/",
        f"  models: {', '.join(MODELS)}",
        f"  TargetKGs: {', '.join(TARGETKGS)}; ControlKGs: {', '.join(CONTROLKGS)}",
        f"  seeds: {', '.join(map(str, SEEDS))}; variants: {', '.join(VARIANTS)}",
        f"  mask trainings: {len(runs)} ({', '.join(map(str, steps))} steps); evaluations: {len(evaluations())}; "
        f"downstream experiments: {len(DOWNSTREAM)}",
    ]
    return "\n".join(lines)
