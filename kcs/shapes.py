"""Model shapes without weights: the architectures kcs knows by name, the configuration of a pipeline
model entry, and counts (parameters, masked logits) from a model built on PyTorch's `meta` device,
so GPT-2 XL is measured exactly in well under a second and without its 6 GB of weights.

One table for the benchmarks, the pipeline's resource requests and its disk projection.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from kcs.errors import KcsError

# transformers configuration values of the architectures kcs knows by name (vocabulary included:
# the output layer is a large share of a small model).
KNOWN_SHAPES = {
    "gpt2": dict(family="gpt2", n_layer=12, n_embd=768, n_head=12),
    "gpt2-medium": dict(family="gpt2", n_layer=24, n_embd=1024, n_head=16),
    "gpt2-large": dict(family="gpt2", n_layer=36, n_embd=1280, n_head=20),
    "gpt2-xl": dict(family="gpt2", n_layer=48, n_embd=1600, n_head=25),
    # SmolLM2-135M (offline-resources.md): 30 layers, hidden 576, MLP 1536, 9 heads, 3 KV heads
    "smollm2-135m": dict(family="llama", num_hidden_layers=30, hidden_size=576, intermediate_size=1536,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         tie_word_embeddings=True),
    # tiny shapes: the benchmark's own test (tests/test_benchmarks.py)
    "tiny-gpt2": dict(family="gpt2", n_layer=4, n_embd=32, n_head=4, vocab_size=300),
    "tiny-llama": dict(family="llama", num_hidden_layers=4, hidden_size=32, intermediate_size=64,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=300, tie_word_embeddings=True),
}


def transformers_config(family: str, **values):
    """A GPT2Config or LlamaConfig with these values."""
    from transformers import GPT2Config, LlamaConfig

    if family == "gpt2":
        return GPT2Config(**values)
    if family == "llama":
        return LlamaConfig(**values)
    raise KcsError(f"unknown model family '{family}'; expected gpt2 or llama")


def known_config(name: str):
    if name not in KNOWN_SHAPES:
        raise KcsError(f"unknown model shape '{name}'; known: {', '.join(KNOWN_SHAPES)}")
    values = dict(KNOWN_SHAPES[name])
    return transformers_config(values.pop("family"), **values)


def tiny_config(family: str, vocab_size: int, layers: int, width: int, heads: int, positions: int = 512,
                eos_token_id: int = 0):
    """The configuration of `kcs tiny-model`: Llama's MLP is 8/3 of the width, half the heads for K and V."""
    if width % heads:
        raise KcsError(f"--width {width} must be a multiple of --heads {heads}")
    if family == "gpt2":
        return transformers_config("gpt2", vocab_size=vocab_size, n_positions=positions, n_embd=width,
                                   n_layer=layers, n_head=heads, bos_token_id=eos_token_id,
                                   eos_token_id=eos_token_id)
    return transformers_config("llama", vocab_size=vocab_size, hidden_size=width, intermediate_size=width * 8 // 3,
                               num_hidden_layers=layers, num_attention_heads=heads,
                               num_key_value_heads=max(1, heads // 2), max_position_embeddings=positions,
                               bos_token_id=eos_token_id, eos_token_id=eos_token_id, tie_word_embeddings=True)


def entry_config(entry: dict, where: str = "model"):
    """The configuration of a pipeline `models:` entry (config.yaml): a hub id kcs knows, SmolLM2,
    a tiny model, or a local folder's config.json. A hub id kcs does not know is looked up in the
    transformers cache only (no network: this runs for every job's resource request)."""
    if "tiny" in entry:
        tiny = entry["tiny"]
        return tiny_config(tiny["family"], tiny.get("vocab_size", 2000), tiny["layers"], tiny["width"], tiny["heads"])
    if "smollm2" in entry:
        return known_config("smollm2-135m")
    if "path" in entry:
        config_file = Path(entry["path"]) / "config.json"
        try:
            values = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise KcsError(f"{where}: cannot read {config_file} ({err}); the model folder needs its config.json") from None
        from transformers import AutoConfig

        return AutoConfig.for_model(**values)
    if "hub" in entry:
        name = entry["hub"].rsplit("/", 1)[-1]
        if name in KNOWN_SHAPES:
            return known_config(name)
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(entry["hub"], local_files_only=True)
        except OSError:
            raise KcsError(f"{where}: the shape of hub model '{entry['hub']}' is not known to kcs nor in the "
                           "transformers cache; download the model (or give it as `path:`)") from None
    raise KcsError(f"{where}: no model source (hub, path, smollm2, gguf or tiny) whose shape kcs can read")


def _meta_model(config):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


@functools.lru_cache(maxsize=64)
def _counts(config_json: str, top_k_blocks: int | None, block_range: tuple | None, granularity: str) -> tuple[int, int, int]:
    from transformers import AutoConfig

    from kcs.masking import logit_shape
    from kcs.models import layout_for, maskable_parameters, num_blocks, select_blocks

    model = _meta_model(AutoConfig.for_model(**json.loads(config_json)))
    parameters = sum(p.numel() for p in model.parameters())
    blocks = select_blocks(num_blocks(model), top_k_blocks, list(block_range) if block_range else None)
    weight_in_out = layout_for(model).weight_in_out
    weights = logits = 0
    for weight in maskable_parameters(model, blocks).values():
        rows, cols = logit_shape(tuple(weight.shape), granularity, weight_in_out)
        weights += weight.numel()
        logits += rows * cols
    return parameters, weights, logits


def model_counts(config, top_k_blocks: int | None = None, block_range=None, granularity: str = "weight") -> dict[str, int]:
    """parameters (the whole model), masked_weights (in the masked matrices), logits (one per weight,
    or per input feature for neuron masks)."""
    parameters, weights, logits = _counts(config.to_json_string(use_diff=False), top_k_blocks,
                                          tuple(block_range) if block_range else None, granularity)
    return {"parameters": parameters, "masked_weights": weights, "logits": logits}


def approximate_parameters(entry: dict) -> int | None:
    """Parameters of a pipeline `models:` entry from its shape values alone (no transformers import,
    no model built): for the Snakefile's memory and time requests, evaluated for every job.
    None when the shape is not known without the model (a GGUF file, an unknown hub id)."""
    if "tiny" in entry:
        tiny = entry["tiny"]
        width, layers = tiny["width"], tiny["layers"]
        values = {"family": tiny["family"], "layers": layers, "width": width, "vocab": tiny.get("vocab_size", 2000),
                  "mlp": 4 * width if tiny["family"] == "gpt2" else width * 8 // 3, "kv_share": 0.5}
    elif "smollm2" in entry or entry.get("hub", "").rsplit("/", 1)[-1] in KNOWN_SHAPES:
        known = KNOWN_SHAPES["smollm2-135m" if "smollm2" in entry else entry["hub"].rsplit("/", 1)[-1]]
        values = _shape_values(known)
    elif "path" in entry:
        try:
            raw = json.loads((Path(entry["path"]) / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        family = "gpt2" if raw.get("model_type") == "gpt2" else "llama"
        values = _shape_values({"family": family, **raw})
    else:
        return None
    width, layers, vocab, mlp = values["width"], values["layers"], values["vocab"], values["mlp"]
    if values["family"] == "gpt2":
        per_block = 4 * width * width + 2 * width * mlp
    else:  # q and o full, k and v at the key/value heads' share; gate, up and down projections
        per_block = (2 + 2 * values["kv_share"]) * width * width + 3 * width * mlp
    return int(layers * per_block + vocab * width)


def _shape_values(values: dict) -> dict:
    if values["family"] == "gpt2":
        width = values.get("n_embd", 768)
        return {"family": "gpt2", "layers": values.get("n_layer", 12), "width": width,
                "vocab": values.get("vocab_size", 50257), "mlp": values.get("n_inner") or 4 * width}
    heads = values.get("num_attention_heads", 1)
    return {"family": "llama", "layers": values.get("num_hidden_layers", 1), "width": values.get("hidden_size", 1),
            "vocab": values.get("vocab_size", 32000), "mlp": values.get("intermediate_size", 1),
            "kv_share": values.get("num_key_value_heads", heads) / heads}
