"""The settings of each step, each defined once: keys, types, ranges, defaults (the paper's) and one
comment per key (docs/method.md 2.3).

`TrainConfig` (mask training), `EvalConfig` (the final evaluation) and `FinetuneConfig` (the
downstream experiment) are pydantic models: pydantic checks types and ranges,
and the JSON schema that Snakemake validates a pipeline configuration with takes their sections
from them (`config_schema_sections`; `python scripts/update_config_schema.py` rewrites them and a
test keeps them equal). Configuration files list only what differs from these defaults.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kcs.errors import KcsError
from kcs.readers import read_yaml_mapping

_FINITE = {"allow_inf_nan": False}


class ConfigModel(BaseModel):
    """A step's settings: unknown keys and wrong types are errors that name the file and the key."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "ConfigModel":
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise KcsError(f"{source}: {_explain(err.errors()[0], cls)}") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> "ConfigModel":
        values = read_yaml_mapping(path, "config") if path is not None else {}
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(values, str(path) if path is not None else "config")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def field_names(cls) -> list[str]:
        return list(cls.model_fields)


# the final evaluation's keys, which mask training uses too (validation during training)
EvalBatchSize = Annotated[int, Field(250, ge=1, description="KG facts per batch (perplexity is a mean of batch "
                                                            "perplexities: 250 as in the paper)")]
EvalLMBatchSize = Annotated[int, Field(8, ge=1, description="ControlLM blocks per batch")]
ControlLMBlockSize = Annotated[int, Field(512, ge=2, description="tokens per ControlLM block (a block predicts its "
                                                                 "tokens from the ones before)")]


class EvalConfig(ConfigModel):
    """The final evaluation of a mask (kcs evaluate, evaluate-full): the same for every mask."""

    eval_batch_size: EvalBatchSize
    eval_lm_batch_size: EvalLMBatchSize
    controllm_block_size: ControlLMBlockSize


# TrainConfig keys of kcs's own, not the paper's: validation, checkpoints, exact caches and kept outputs.
# They change no learned mask, so a value other than the default is no deviation from the paper.
RUN_SETTINGS = frozenset({"controlkg_val_size", "eval_controllm_blocks", "validate_every", "checkpoint_every",
                          "eval_batch_size", "eval_lm_batch_size", "prefix_cache_mb", "reference_cache_mb",
                          "keep_step_masks", "step_mask_every"})


class TrainConfig(ConfigModel):
    """Mask training: the paper's hyper-parameters (docs/method.md 2.3) and kcs's own settings."""

    steps: int = Field(40_000, ge=1, description="optimiser steps (one TargetKG batch each)")
    lr: float = Field(0.2, gt=0, **_FINITE, description="Adam learning rate of the mask logits")
    warmup_frac: float = Field(0.1, ge=0, le=1, description="linear learning-rate warm-up share of the steps")
    init_p: float = Field(0.45, gt=0, lt=1, description="initial P(weight in subnetwork): logits start at logit(init_p)")
    temperature: float = Field(1.0, gt=0, **_FINITE, description="Gumbel-sigmoid temperature (fixed; scales only "
                                                                 "the straight-through gradient)")
    noise_scale_init: float = Field(1.0, ge=0, **_FINITE, description="scale of the logistic sampling noise at "
                                                                      "step 0 (the paper: 1)")
    noise_scale_final: float = Field(1.0, ge=0, **_FINITE, description="... linear to this at the last step (the "
                                                                       "paper: 1, no annealing)")
    granularity: Literal["weight", "neuron"] = Field("weight", description="one logit per weight, or per input "
                                                                           "feature (neuron)")
    top_k_blocks: int | None = Field(None, ge=1, description="mask the top k blocks (null: the top half)")
    block_range: list[int] | None = Field(None, description="or an inclusive [first, last] range of blocks")
    lambda_targetkg: float = Field(1.5, ge=0, **_FINITE, description="weight of the TargetKG suppression KL")
    lambda_controlkg: float = Field(1.0, ge=0, **_FINITE, description="weight of the ControlKG maintenance KL")
    lambda_controllm: float = Field(1.0, ge=0, **_FINITE, description="weight of the ControlLM maintenance KL")
    lambda_expression: float = Field(1.0, ge=0, **_FINITE, description="weight of the expression loss (ablation)")
    lambda_reg_init: float = Field(2.0, ge=0, **_FINITE, description="sparsity weight until half-way ...")
    lambda_reg_final: float = Field(3.0, ge=0, **_FINITE, description="... then linear to this at the last step")
    use_targetkg: bool = Field(True, description="the loss terms are switches: the paper's ablations are "
                                                 "configurations")
    use_controlkg: bool = Field(True, description="ControlKG maintenance term")
    use_controllm: bool = Field(True, description="ControlLM maintenance term")
    use_expression: bool = Field(False, description="expression term (subnetwork alone predicts the tail)")
    use_sparsity: bool = Field(True, description="sparsity regulariser")
    kg_kl_position: Literal["tail", "after_tail"] = Field(
        "tail", description="where the KG terms read the distribution: tail (the paper's intent) or after_tail "
                            "(the authors' released code)")
    targetkg_batch_size: int = Field(250, ge=1, description="TargetKG facts per step")
    controlkg_batch_size: int = Field(250, ge=1, description="ControlKG facts per step")
    controllm_batch_size: int = Field(10, ge=1, description="ControlLM blocks per step")
    controllm_block_size: ControlLMBlockSize
    controllm_max_blocks: int | None = Field(4656, ge=1, description="training blocks read from the ControlLM text")
    eval_controllm_blocks: int = Field(10, ge=1, description="ControlLM validation blocks during training")
    controlkg_val_size: int = Field(50, ge=1, description="validation facts (from --controlkg-val, else the "
                                                          "ControlKG's first ones)")
    validate_every: int = Field(100, ge=1, description="steps between validations")
    checkpoint_every: int = Field(200, ge=1, description="steps between resumable checkpoints")
    eval_batch_size: EvalBatchSize
    eval_lm_batch_size: EvalLMBatchSize
    prefix_cache_mb: int = Field(2048, ge=0, description="cache the hidden states entering the first masked "
                                                         "block up to this size (exact)")
    reference_cache_mb: int = Field(2048, ge=0, description="cache the full model's output statistics "
                                                            "(kcs.reference) up to this size (exact)")
    keep_step_masks: bool = Field(True, description="keep a bit-packed mask every step_mask_every steps "
                                                    "(checkpoint selection, the steps figure)")
    step_mask_every: int | None = Field(None, ge=1, description="null: at every checkpoint; always at the last step")
    deviations: dict[str, str] = Field({}, description="why a hyper-parameter set here differs from the paper's "
                                                       "value, {key: reason}; kept with every mask and metrics file")

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.block_range is not None:
            if len(self.block_range) != 2 or self.block_range[0] < 0:
                raise ValueError(f"key 'block_range' must be [first, last] with first >= 0, got {self.block_range}")
            if self.block_range[0] > self.block_range[1]:
                raise ValueError(f"key 'block_range' {self.block_range} is reversed: write [first, last] with "
                                 "first <= last")
        if not any((self.use_targetkg, self.use_controlkg, self.use_controllm, self.use_expression, self.use_sparsity)):
            raise ValueError("every loss term is switched off (use_targetkg, use_controlkg, use_controllm, "
                             "use_expression, use_sparsity); switch at least one on")
        fields = type(self).model_fields
        for key in self.deviations:
            if key not in fields or key == "deviations":
                raise ValueError(f"key 'deviations.{key}' names no training key; known keys: "
                                 f"{', '.join(k for k in fields if k != 'deviations')}")
            if getattr(self, key) == fields[key].default:
                raise ValueError(f"key 'deviations.{key}' gives a reason, but {key} is the paper's value "
                                 f"{fields[key].default!r}; set {key} or remove the reason")
        return self

    def deviations_from_paper(self) -> dict[str, dict[str, Any]]:
        """Each hyper-parameter whose value is not the paper's, {key: {paper, used, why}} (`why`: the reason
        given in `deviations`, else None). kcs's own settings (RUN_SETTINGS) change no mask and are left out."""
        return {key: {"paper": field.default, "used": getattr(self, key), "why": self.deviations.get(key)}
                for key, field in type(self).model_fields.items()
                if key not in RUN_SETTINGS and key != "deviations" and getattr(self, key) != field.default}


class FinetuneConfig(ConfigModel):
    """Finetuning on a multiple-choice task (docs/downstream.md)."""

    style: Literal["head", "lora", "full"] = Field("head", description="which weights train (head: the output "
                                                                        "layer only, cheap enough for CPUs)")
    epochs: int = Field(3, ge=0, description="passes over the training questions")
    max_steps: int | None = Field(None, ge=0, description="stop earlier (smoke runs); null: epochs decide")
    batch_size: int = Field(16, ge=1, description="questions per optimiser step (each question = all its choices)")
    lr: float = Field(3e-4, gt=0, allow_inf_nan=False, description="suits head-only on the WordNet task; full "
                                                                   "finetuning wants ~2e-5")
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False, description="AdamW weight decay")
    warmup_frac: float = Field(0.1, ge=0, lt=1, description="linear warm-up over this share of the steps")
    schedule: Literal["constant", "linear"] = Field("linear", description="constant, or linear decay to 0 after "
                                                                          "warm-up")
    grad_clip: float = Field(1.0, ge=0, allow_inf_nan=False, description="max gradient norm; 0 = no clipping")
    lora_rank: int = Field(8, ge=1, description="rank of the LoRA updates")
    lora_alpha: float = Field(16.0, allow_inf_nan=False, description="LoRA update scale = lora_alpha / lora_rank")
    prompt_template: str | None = Field(None, description="with `{question}`; null: the task's (task.json), else "
                                                          "the default template")
    choice_prefix: str = Field(" ", description="put before each choice")
    choice_score: Literal["sum", "mean"] = Field("mean", description="sum or mean log-probability of the "
                                                                     "choice's tokens")
    max_length: int = Field(256, ge=2, description="tokens per row (prompt + choice(s)); the prompt is cut on the "
                                                   "left")
    pack_choices: bool = Field(True, description="one row per question: the prompt once, then every choice (tree "
                                                 "attention)")
    eval_batch_size: int = Field(32, ge=1, description="questions per forward pass when scoring without gradients")
    max_train_questions: int | None = Field(None, ge=1, description="use a seeded random subset of the train split")
    linked_in_train: Literal["holdout", "drop", "keep"] = Field(
        "holdout", description="what to do with linked questions found in the train split")


_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}
_TYPES = {"int_type": "an integer", "int_from_float": "an integer", "float_type": "a number", "bool_type": "true or false",
          "string_type": "a string", "list_type": "a list", "finite_number": "a finite number"}


def _explain(error: dict, model: type[ConfigModel]) -> str:
    """One pydantic error in the words of a configuration file: the key, what it must be, what it got."""
    key = ".".join(str(part) for part in error["loc"])
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return f"unknown key '{key}'; known keys: {', '.join(model.field_names())}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if not key:
        return error["msg"]
    if kind in _BOUNDS:
        name, sign = _BOUNDS[kind]
        wanted = f"{sign} {error['ctx'][name]:g}"
    elif kind == "literal_error":
        wanted = "one of " + error["ctx"]["expected"]
    else:
        wanted = _TYPES.get(kind, error["msg"].removeprefix("Input should be ").lower())
    return f"key '{key}' must be {wanted}, got {value!r}"


def json_schema_of(model: type[ConfigModel], description: str) -> dict[str, Any]:
    """The JSON schema of a config model as the pipeline's schema holds it: every key optional (kcs fills
    in the defaults, so a configuration lists only what differs), each key's default in its description
    (a schema default would be written into every override block by Snakemake's validation)."""
    properties = {}
    for name, prop in model.model_json_schema()["properties"].items():
        prop = {k: v for k, v in prop.items() if k not in ("title", "default")}
        default = model.model_fields[name].default
        prop["description"] = f"{prop.pop('description')} (default: {yaml.safe_dump(default).splitlines()[0]})"
        properties[name] = {"description": prop.pop("description"), **prop}
    if "deviations" in properties:  # its keys are the model's other keys: closed, like every object of the schema
        properties["deviations"].update(additionalProperties=False, properties={
            name: {"type": "string"} for name in properties if name != "deviations"})
    return {"description": description, "type": "object", "additionalProperties": False, "properties": properties}


# the sections of a pipeline configuration that the config models define
SECTIONS: dict[str, type[ConfigModel]] = {"training": TrainConfig, "evaluation": EvalConfig, "finetune": FinetuneConfig}


def defaults_yaml(section: str) -> str:
    """One section's keys with their defaults and comments, as YAML a configuration can copy from."""
    model = SECTIONS[section]
    lines = [f"{key}: {yaml.safe_dump(field.default, default_flow_style=True).splitlines()[0]}"
             for key, field in model.model_fields.items()]
    width = max(map(len, lines)) + 2
    body = "\n".join(f"  {line:<{width}}# {field.description}" for line, field in zip(lines, model.model_fields.values()))
    return f"# {model.__doc__.splitlines()[0].rstrip('.')} (kcs.config.{model.__name__})\n{section}:\n{body}\n"


def config_schema_sections() -> dict[str, dict[str, Any]]:
    """The `$defs` of kcs/schemas/config.schema.json that the config models define."""
    return {
        "trainConfig": json_schema_of(TrainConfig, "Mask training (kcs.config.TrainConfig, docs/method.md 2); only "
                                                   "keys that differ from the paper's defaults need listing."),
        "evalConfig": json_schema_of(EvalConfig, "The final evaluation (kcs.config.EvalConfig), the same for every "
                                                 "mask."),
        "finetuneConfig": json_schema_of(FinetuneConfig, "Finetuning on a multiple-choice task (kcs.config.FinetuneConfig, "
                                                         "docs/downstream.md)."),
    }


__all__ = ["ConfigModel", "EvalConfig", "FinetuneConfig", "RUN_SETTINGS", "SECTIONS", "TrainConfig", "config_schema_sections",
           "defaults_yaml"]
