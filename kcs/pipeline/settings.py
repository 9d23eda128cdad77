"""The settings file of each step that is not training, evaluation or finetuning (those have their
own configs in kcs.config): a YAML mapping of the step's command-line options, which the command
reads with `--config FILE` (kcs.cli). Written once per step and name by the pipeline's
`step_settings` rule, so a result's settings sit beside it and a changed setting reruns the step.

  step                    name        command
  sample_wordnet          TargetKG    kcs data sample-wordnet
  sample_conceptnet       TargetKG    kcs data sample-conceptnet
  wordnet_controlkg       ControlKG   kcs data wordnet-controlkg (train and validation splits)
  wordnet_controlkg_test  ControlKG   kcs data wordnet-controlkg (the held-out test split)
  controllm               split       kcs data controllm
  tiny_model              model       kcs tiny-model
  build_mc_task           experiment  kcs build-mc-task
  select_checkpoint       selection   kcs select-checkpoint
"""

from __future__ import annotations

from kcs.errors import KcsError


def _some(entry: dict, keys) -> dict:
    return {key: entry[key] for key in keys if key in entry}


def step_settings(plan, step: str, name: str) -> dict:
    """The options of one step as a mapping (keys are option names with '_' for '-')."""
    if step in ("sample_wordnet", "sample_conceptnet"):
        sample = plan.targetkgs[name][step.removeprefix("sample_")]
        keys = ("root", "size", "hops", "up", "seed") if step == "sample_wordnet" else ("concept", "size", "hops", "seed")
        return _some(sample, keys)
    if step in ("wordnet_controlkg", "wordnet_controlkg_test"):
        sample = plan.controlkgs[name]["wordnet"]
        # The test split has its own settings file: adding one leaves the training data (and every mask
        # trained on it) up to date.
        settings = {"train_size": sample["train_size"], "val_size": sample["val_size"], "seed": sample.get("seed", 0)}
        return settings | ({"test_size": sample["test_size"]} if step == "wordnet_controlkg_test" else {})
    if step == "controllm":
        part = plan.config["controllm"][name]
        settings = {"source": plan.config["controllm"]["source"], "split": part["split"]}
        return settings | {key: part[key] for key in ("fraction", "max_words") if part[key] is not None}
    if step == "tiny_model":
        tiny = plan.models[name]["tiny"]
        settings = {"family": tiny["family"], "layers": tiny["layers"], "width": tiny["width"], "heads": tiny["heads"],
                    "seed": tiny.get("seed", 0)}
        return settings if "tokenizer" in tiny else settings | {"vocab_size": tiny.get("vocab_size", 2000)}
    if step == "build_mc_task":
        return dict(plan.downstream[name]["task"]["wordnet"])
    if step == "select_checkpoint":
        return {"rule": "best", **{key: value for key, value in plan.selection.items() if key != "rule"}}
    raise KcsError(f"no settings for step '{step}'; steps: {', '.join(STEPS)}")


STEPS = ("sample_wordnet", "sample_conceptnet", "wordnet_controlkg", "wordnet_controlkg_test", "controllm",
         "tiny_model", "build_mc_task", "select_checkpoint")
