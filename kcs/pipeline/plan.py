"""`Plan(config)`: what a checked pipeline configuration asks for, as files.

The decisions the Snakefile needs live here, so that rules/common.smk only names them: which KG file
a model reads for a TargetKG (the authors' sentences where they made them, else verbalised by kcs),
which data each step reads, and every target of the DAG (metrics, masks, tables, figures, benchmark
files). The runs themselves (which masks, evaluations, combinations) come from `kcs.grid`.
"""

from __future__ import annotations

import functools

from kcs import grid, shapes
from kcs.data.paper import GPT2_SIZES, WORDNET_ROOTS
from kcs.pipeline import changes, checks
from kcs.pipeline.paths import Paths, fill


class Plan:
    def __init__(self, config: dict):
        self.config = config
        self.paths = Paths(config["results"])
        self.models = checks.index("models", config["models"])
        self.targetkgs = checks.index("targetkgs", config["targetkgs"])
        self.controlkgs = checks.index("controlkgs", config["controlkgs"])
        self.ablations = checks.index("ablations", config["ablations"])
        self.downstream = checks.index("downstream", config["downstream"])
        self.seeds = list(config["seeds"])
        self.variants = [grid.DEFAULT_VARIANT, *self.ablations]
        self.table_kgs = grid.table_kgs(config)
        self.selection = config["checkpoint_selection"]
        checks.check_references(self)
        self.runs = grid.training_runs(config)
        self.evaluations = grid.evaluations(config)
        self.combinations = grid.seed_combinations(config)
        # The mask every evaluation, baseline, combination and downstream start reads: the final one,
        # or the checkpoint chosen by checkpoint_selection rule 'best'.
        self.learned_mask = self.paths.selected_mask if self.selection["rule"] == "best" else self.paths.mask
        checks.check_settings(self)

    # ---- settings --------------------------------------------------------------------------------

    @functools.lru_cache(maxsize=None)
    def train_config_values(self, model: str, variant: str) -> dict:
        return grid.train_config_values(self.config, model, variant)

    def keeps_step_masks(self, model: str, variant: str) -> bool:
        return self.train_config_values(model, variant)["keep_step_masks"]

    def evaluation_config_values(self) -> dict:
        return grid.evaluation_config_values(self.config)

    def is_tiny(self, model: str) -> bool:
        return "tiny" in self.models[model]

    def model_dir(self, model: str) -> str:
        """The model folder: given as `path:`, else prepared by a rule of rules/models.smk."""
        entry = self.models[model]
        return entry["path"] if "path" in entry else fill(self.paths.model_dir, model=model)

    @functools.lru_cache(maxsize=None)
    def model_size_m(self, model: str) -> float:
        """Parameters (millions), for memory and time requests; 1,000 where the shape is not known
        without the model (GGUF, an unknown hub id)."""
        parameters = shapes.approximate_parameters(self.models[model])
        return 1000 if parameters is None else parameters / 1e6

    # ---- knowledge data ----------------------------------------------------------------------------
    # A TargetKG is first a triplet file (model-independent), then a KG file per model (verbalised with
    # the model's lowest-perplexity template). The authors' own sentences are used where they made them
    # (docs/method.md 3.1-3.3): per GPT-2 size for the WordNet TargetKGs, GPT-2 small's for every model
    # for the ConceptNet and CommonsenseQA KGs (as their loader does).

    def of_kind(self, entries: dict, kind: str) -> list[str]:
        return [name for name, entry in entries.items() if kind in entry]

    def gpt2_size(self, model: str) -> str | None:
        """The GPT-2 size a model is (for the authors' per-size sentences), or None."""
        size = self.models[model].get("hub", "").rsplit("/", 1)[-1]
        return size if size in GPT2_SIZES else None

    def paper_kg_file(self, name: str, model: str | None = None) -> str:
        """A shipped paper KG: the WordNet ones per GPT-2 size, the others GPT-2 small's for any model."""
        size = self.gpt2_size(model) if model and name in WORDNET_ROOTS else "gpt2"
        return fill(self.paths.paper_kg, paper_kg=name, paper_model=size)

    def targetkg_triplets(self, kg: str) -> str:
        entry = self.targetkgs[kg]
        if "paper" in entry:
            return self.paper_kg_file(entry["paper"])  # a KG file is also a triplet file
        return entry.get("triplets") or fill(self.paths.targetkg_triplets, kg=kg)

    def targetkg_file(self, model: str, kg: str) -> str:
        """The TargetKG's KG file for a model: the authors' sentences where they exist, else verbalised."""
        entry = self.targetkgs[kg]
        if ("paper" in entry and entry.get("sentences", "authors") == "authors"
                and (entry["paper"] not in WORDNET_ROOTS or self.gpt2_size(model))):
            return self.paper_kg_file(entry["paper"], model)
        return fill(self.paths.targetkg, model=model, kg=kg)

    def is_verbalised(self, model: str, kg: str) -> bool:
        return self.targetkg_file(model, kg) == fill(self.paths.targetkg, model=model, kg=kg)

    def targetkg_uses_wordnet(self, kg: str) -> bool:
        entry = self.targetkgs[kg]
        return "wordnet" in entry or entry.get("paper") in WORDNET_ROOTS

    def controlkg_has_test(self, controlkg: str) -> bool:
        """A held-out test split (evaluation only): sampled (wordnet test_size > 0) or given (triplets test)."""
        entry = self.controlkgs[controlkg]
        if "wordnet" in entry:
            return entry["wordnet"].get("test_size", 0) > 0
        return "test" in entry.get("triplets", {})

    def wordnet_controlkgs_with_test(self) -> list[str]:
        return [name for name in self.of_kind(self.controlkgs, "wordnet") if self.controlkg_has_test(name)]

    def controlkg_triplets(self, controlkg: str, split: str) -> str:
        entry = self.controlkgs[controlkg]
        if "triplets" in entry:
            return entry["triplets"][split]
        return fill(self.paths.controlkg_triplets, controlkg=controlkg, split=split)

    def controlkg_file(self, model: str, controlkg: str, split: str) -> str:
        entry = self.controlkgs[controlkg]
        if "paper" in entry:
            return fill(self.paths.paper_kg, paper_kg=f"{entry['paper']}-controlkg-{split}", paper_model="gpt2")
        return fill(self.paths.controlkg, model=model, controlkg=controlkg, split=split)

    def controlkg_of(self, kg: str) -> str:
        return self.targetkgs[kg]["controlkg"]

    def controlkg_overlap(self, controlkg: str) -> str:
        """What a run drops from its ControlKG (kcs.data.triplets.split_overlap): 'entities' (a head or
        tail of the run's own TargetKG; the WordNet ControlKG's default, the paper's guarantee kept per
        run), 'facts' (the same triplet) or 'none' (the authors' files' default: as released)."""
        entry = self.controlkgs[controlkg]
        return entry.get("remove_overlap", "entities" if "wordnet" in entry else "none")

    def kgs_with_own_controlkg(self) -> list[str]:
        """The TargetKGs whose runs read a ControlKG with their own overlap removed."""
        return [kg for kg in self.targetkgs if self.controlkg_overlap(self.controlkg_of(kg)) != "none"]

    def run_controlkg_file(self, model: str, kg: str, split: str) -> str:
        """The ControlKG split that the runs of (model, TargetKG) read: the shared file, or the shared
        file less the facts that overlap this TargetKG. Built per TargetKG, so that the shared ControlKG,
        and every other TargetKG's runs, do not depend on which TargetKGs a configuration lists."""
        controlkg = self.controlkg_of(kg)
        if self.controlkg_overlap(controlkg) == "none":
            return self.controlkg_file(model, controlkg, split)
        return fill(self.paths.run_controlkg, model=model, kg=kg, split=split)

    def run_controlkg_inputs(self, model: str, kg: str, split: str) -> dict[str, str]:
        return {"targetkg": self.targetkg_triplets(kg), "controlkg": self.controlkg_file(model, self.controlkg_of(kg), split)}

    def controllm_file(self, split: str) -> str:
        return fill(self.paths.controllm, split=split)

    def paraphrase_kgs(self) -> list[str]:
        """Table KGs whose facts carry paraphrases: verbalised by kcs (its other templates) rather than
        the authors' sentences, which come without paraphrases."""
        return [kg for kg in self.table_kgs if any(self.is_verbalised(m, kg) for m in self.models)]

    def kg_file_uses(self) -> list[tuple[str, str]]:
        """(model, TargetKG) pairs whose KG file the DAG needs: training runs and downstream groups."""
        pairs = [(m, k) for m, k, _, _ in self.runs]
        for exp in self.downstream.values():
            for model in exp["models"]:
                pairs += [(model, exp[key]) for key in ("removed", "control") if key in exp]
        return list(dict.fromkeys(pairs))

    # ---- the inputs of the steps -------------------------------------------------------------------

    def training_data(self, model: str, kg: str) -> dict[str, str]:
        return {
            "targetkg": self.targetkg_file(model, kg),
            "controlkg": self.run_controlkg_file(model, kg, "train"),
            "controlkg_val": self.run_controlkg_file(model, kg, "val"),
            "controllm": self.controllm_file("train"),
        }

    def evaluation_data(self, model: str, kg: str) -> dict[str, str]:
        """The TargetKG itself, the ControlKG's validation split (and its held-out test split where it
        has one), the ControlLM test text."""
        controlkg = self.controlkg_of(kg)
        data = {
            "targetkg": self.targetkg_file(model, kg),
            "controlkg": self.run_controlkg_file(model, kg, "val"),
            "controllm": self.controllm_file("test"),
        }
        if self.controlkg_has_test(controlkg):
            data["controlkg_test"] = self.run_controlkg_file(model, kg, "test")
        return data

    def steps_data(self, model: str, kg: str) -> dict[str, str]:
        """Validation data only: checkpoint selection must not see a test split."""
        return {
            "targetkg": self.targetkg_file(model, kg),
            "controlkg": self.run_controlkg_file(model, kg, "val"),
            "controllm": self.controllm_file("val"),
        }

    def verbalise_inputs(self, model: str, kg: str | None = None, controlkg: str | None = None,
                         split: str | None = None) -> dict[str, str]:
        """Triplets + model (+ WordNet when the triplets are synset ids)."""
        if kg is not None:
            triplets, uses_wordnet = self.targetkg_triplets(kg), self.targetkg_uses_wordnet(kg)
        else:
            triplets = self.controlkg_triplets(controlkg, split)
            uses_wordnet = "wordnet" in self.controlkgs[controlkg]
        inputs = {"triplets": triplets, "model": self.model_dir(model)}
        if uses_wordnet:
            inputs["wordnet"] = self.wordnet_dir
        return inputs

    def controllm_inputs(self, split: str) -> dict:
        """The text files (source 'files'), else the corpus folder."""
        source = self.config["controllm"]["source"]
        if source == "files":
            return {"files": self.config["controllm"][split]["files"]}
        return {"folder": self.corpus_dirs[source]}

    def tiny_model_inputs(self, model: str) -> dict[str, str]:
        """The tokenizer folder to copy, or the ControlLM training text to train a tokenizer on."""
        tiny = self.models[model]["tiny"]
        if "tokenizer" in tiny:
            return {"tokenizer": tiny["tokenizer"]}
        return {"tokenizer_texts": self.controllm_file("train")}

    wordnet_dir = "resources/nltk_data"
    lama_dir = "resources/lama"
    csqa_dir = "resources/csqa"
    corpus_dirs = {"wikitext": "resources/corpora/wikitext-2-raw-v1", "sotu": "resources/corpora/sotu"}

    def run_mask(self, model: str, kg: str, variant: str, seed, method: str = grid.LEARNED) -> str:
        """The learned mask of a run, or one of its random draws."""
        pattern = self.learned_mask if method == grid.LEARNED else self.paths.random_mask
        return fill(pattern, model=model, kg=kg, variant=variant, seed=seed, method=method)

    def combined_mask(self, model: str, kg: str, combination: str, method: str) -> str:
        pattern = self.paths.combined_mask if method == grid.LEARNED else self.paths.combined_random_mask
        return fill(pattern, model=model, kg=kg, combination=combination)

    def seed_masks(self, model: str, kg: str) -> list[str]:
        return [self.run_mask(model, kg, grid.DEFAULT_VARIANT, seed) for seed in self.seeds]

    def kg_masks(self, model: str, seed) -> list[str]:
        return [self.run_mask(model, kg, grid.DEFAULT_VARIANT, seed) for kg in self.table_kgs]

    def task_dir(self, experiment: str) -> str:
        task = self.downstream[experiment]["task"]
        return task.get("folder") or fill(self.paths.built_task, experiment=experiment)

    def task_build_inputs(self, experiment: str) -> dict[str, str]:
        """The removed TargetKG's facts become the linked questions of the WordNet stand-in task."""
        exp = self.downstream[experiment]
        return {"wordnet": self.wordnet_dir, "linked": self.targetkg_file(exp["models"][0], exp["removed"])}

    def finetune_inputs(self, experiment: str, model: str, seed, start: str) -> dict[str, str]:
        exp = self.downstream[experiment]
        inputs = {
            "model": self.model_dir(model),
            "task": self.task_dir(experiment),
            "linked": self.targetkg_file(model, exp["removed"]),
            "config": fill(self.paths.finetune_config, experiment=experiment),
        }
        if "control" in exp:
            inputs["control"] = self.targetkg_file(model, exp["control"])
        # the learned subnetwork, or the random one the random_mask rule drew for that run (made once)
        if start != "full":
            method = grid.LEARNED if start == "remaining" else grid.RANDOM
            inputs["mask"] = self.run_mask(model, exp["removed"], grid.DEFAULT_VARIANT, seed, method)
        return inputs

    # ---- targets -----------------------------------------------------------------------------------

    def _table_runs(self) -> list[grid.Run]:
        return [r for r in self.runs if r.variant == grid.DEFAULT_VARIANT and r.kg in self.table_kgs]

    def all_masks(self) -> list[str]:
        return [self.run_mask(*run) for run in self.runs]

    def default_masks(self) -> list[str]:
        return [self.run_mask(*run) for run in self._table_runs()]

    def default_curves(self) -> list[str]:
        return [fill(self.paths.curves, **run._asdict()) for run in self._table_runs()]

    def metrics_files(self) -> list[str]:
        return [fill(self.paths.metrics, **e._asdict()) for e in self.evaluations]

    def combined_metrics_files(self) -> list[str]:
        return [fill(self.paths.combined_metrics, model=m, kg=k, combination=c, method=method)
                for m, k, c in self.combinations for method in (grid.LEARNED, grid.RANDOM)]

    def steps_files(self) -> list[str]:
        """The step evaluation of every table run that keeps step masks."""
        return [fill(self.paths.steps, **run._asdict()) for run in self.runs
                if run.kg in self.table_kgs and self.keeps_step_masks(run.model, run.variant)]

    def overlap_files(self) -> list[str]:
        """Seed overlap per (model, TargetKG) with >= 2 seeds; TargetKG overlap per (model, seed) with >= 2 KGs."""
        files = []
        for model in self.models:
            if len(self.seeds) > 1:
                files += [fill(self.paths.overlap_seeds, model=model, kg=kg) for kg in self.table_kgs]
            if len(self.table_kgs) > 1:
                files += [fill(self.paths.overlap_kgs, model=model, seed=seed) for seed in self.seeds]
        return files

    def finetune_jobs(self) -> list[dict]:
        return [dict(experiment=name, model=model, seed=seed, start=start)
                for name, exp in self.downstream.items()
                for model in exp["models"] for seed in exp["seeds"] for start in exp["starts"]]

    def downstream_results(self) -> list[str]:
        return [fill(self.paths.finetune_result, **job) for job in self.finetune_jobs()]

    def table_outputs(self) -> list[str]:
        names = ["main", "kgs", "compute_cost"] + (["ablations"] if self.ablations else [])
        names += ["combined"] if self.combinations else []
        names += ["paraphrases"] if self.paraphrase_kgs() else []
        names += ["structure"] if self.config["random_baseline"] else []
        return [f"{self.paths.tables}/{name}.{ext}" for name in names for ext in ("csv", "md", "tex")]

    def figure_outputs(self) -> list[str]:
        random = self.config["random_baseline"]
        names = ["density", "curves"] + (["delta_ppl"] if random else [])
        names += ["overlap"] if self.overlap_files() else []
        names += ["combined"] if self.combinations else []
        names += ["paraphrases"] if self.paraphrase_kgs() and random else []
        names += ["structure"] if random else []
        names += ["steps"] if self.steps_files() else []
        return [f"{self.paths.figures}/{name}.png" for name in names]

    def final_outputs(self) -> list[str]:
        outputs = [f"{self.paths.tables}/runs.csv", *self.table_outputs(), *self.figure_outputs()]
        if self.downstream:
            outputs += [f"{self.paths.tables}/downstream.{ext}" for ext in ("csv", "md")]
            outputs.append(f"{self.paths.figures}/downstream.png")
        return outputs

    def benchmark_files(self) -> list[str]:
        """The benchmark file of every heavy job of the DAG (the compute-cost table's inputs)."""
        bench = self.paths.benchmark
        files = [bench("prepare_model", model=m) for m in dict.fromkeys(m for m, _ in self.kg_file_uses())
                 if "path" not in self.models[m]]
        files += [bench("verbalise_targetkg", model=m, kg=k) for m, k in self.kg_file_uses() if self.is_verbalised(m, k)]
        evaluated = {(e.model, self.controlkg_of(e.kg)) for e in self.evaluations}
        for model, controlkg in dict.fromkeys((r.model, self.controlkg_of(r.kg)) for r in self.runs):
            if "paper" in self.controlkgs[controlkg]:
                continue
            splits = ["train", "val"]
            if self.controlkg_has_test(controlkg) and (model, controlkg) in evaluated:
                splits.append("test")  # only the evaluation reads it
            files += [bench("verbalise_controlkg", model=model, controlkg=controlkg, split=s) for s in splits]
        files += [bench("train_mask", **run._asdict()) for run in self.runs]
        for e in self.evaluations:
            files.append(bench("evaluate_mask", **e._asdict()))
            if e.method != grid.LEARNED:
                files.append(bench("random_mask", **e._asdict()))
        files += [bench("evaluate_steps", **run._asdict()) for run in self.runs
                  if run.kg in self.table_kgs and self.keeps_step_masks(run.model, run.variant)]
        for model, kg, combination in self.combinations:
            files.append(bench("combine_seed_masks", model=model, kg=kg, combination=combination))
            files += [bench("evaluate_combined_mask", model=model, kg=kg, combination=combination, method=method)
                      for method in (grid.LEARNED, grid.RANDOM)]
        for model in self.models:  # as overlap_files
            if len(self.seeds) > 1:
                files += [bench("overlap_seeds", model=model, kg=kg) for kg in self.table_kgs]
            if len(self.table_kgs) > 1:
                files += [bench("overlap_kgs", model=model, seed=seed) for seed in self.seeds]
        files += [bench("evaluate_full", model=m, kg=k) for m, k in dict.fromkeys((e.model, e.kg) for e in self.evaluations)]
        files += [bench("finetune", **job) for job in self.finetune_jobs()]
        return files

    def record(self) -> dict:
        """What a complete run of this plan is made of (kcs.pipeline.changes.plan_record)."""
        return changes.plan_record(self)

    def changes_summary(self) -> str:
        """What this plan reruns compared with the last complete run of its results folder."""
        lines = changes.describe_changes(changes.read_record(self.paths.completed_plan), self.record())
        return "\n".join([f"kcs pipeline: since the last complete run ({self.paths.completed_plan}):",
                          *(f"  {line}" for line in lines)])

    def summary(self) -> str:
        """What the merged configuration (config.yaml <- --configfile) asks for, in a few lines: a partial
        --configfile inherits the paper's grid and 40,000 steps, so say it before starting."""
        steps = sorted({self.train_config_values(m, v)["steps"] for m, _, v, _ in self.runs})
        return "\n".join([
            f"kcs pipeline: results in {self.paths.results}/",
            f"  models: {', '.join(self.models)}",
            f"  TargetKGs: {', '.join(self.targetkgs)}; ControlKGs: {', '.join(self.controlkgs)}",
            f"  seeds: {', '.join(map(str, self.seeds))}; variants: {', '.join(self.variants)}",
            f"  mask trainings: {len(self.runs)} ({', '.join(map(str, steps))} steps); "
            f"evaluations: {len(self.evaluations)}; downstream experiments: {len(self.downstream)}",
        ])
