"""Small randomly initialised causal LMs written as normal model folders (tests, smoke runs).

The weights are random (seeded), so results are meaningless; the code paths (GPT-2 Conv1D or
Llama nn.Linear layouts, tokenizer, masking) are the real ones. The tokenizer is either copied
from a folder (e.g. the real GPT-2 tokenizer) or a byte-level BPE trained on text files, so no
download is needed. `kcs tiny-model` (kcs.commands.tiny_model) is the command line to it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kcs.errors import KcsError

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"


def train_bpe_tokenizer(texts: list[Path], vocab_size: int):
    """A byte-level BPE (GPT-2's scheme, so leading spaces are kept) trained on `texts`."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    missing = [str(p) for p in texts if not p.is_file()]
    if missing:
        raise KcsError(f"tokenizer text file(s) not found: {', '.join(missing)}")
    bpe = ByteLevelBPETokenizer()
    bpe.train([str(p) for p in texts], vocab_size=vocab_size, min_frequency=1, special_tokens=[EOS],
              show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS,
                                   unk_token=EOS, pad_token=EOS)


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    if not folder.is_dir():
        raise KcsError(f"{folder}: tokenizer folder not found (give --tokenizer DIR or --tokenizer-texts FILE ...)")
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise KcsError(f"{folder}: not a tokenizer folder ({err})") from None


def build_model(family: str, vocab_size: int, layers: int, width: int, heads: int, positions: int,
                eos_token_id: int, seed: int):
    import torch
    from transformers import AutoModelForCausalLM

    from kcs.shapes import tiny_config

    config = tiny_config(family, vocab_size, layers, width, heads, positions, eos_token_id)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def write_tiny_model(out: Path, family: str, layers: int, width: int, heads: int, positions: int,
                     seed: int, tokenizer_dir: Path | None = None, tokenizer_texts: list[Path] | None = None,
                     vocab_size: int = 2000) -> None:
    from kcs.atomic import atomic_dir, write_json
    from kcs.provenance import provenance

    if (tokenizer_dir is None) == (not tokenizer_texts):
        raise KcsError("give exactly one of --tokenizer DIR and --tokenizer-texts FILE ...")
    tokenizer = load_tokenizer(tokenizer_dir) if tokenizer_dir else train_bpe_tokenizer(tokenizer_texts, vocab_size)
    if tokenizer.eos_token_id is None:
        raise KcsError(f"{tokenizer_dir}: the tokenizer has no end-of-text token")
    model = build_model(family, len(tokenizer), layers, width, heads, positions, tokenizer.eos_token_id, seed)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "kcs_tiny_model.json", provenance(seed=seed, model=str(out), family=family,
                                                           layers=layers, width=width, heads=heads))
    n_params = sum(p.numel() for p in model.parameters())
    log.info("wrote a random %s model (%d layers, width %d, %.2fM parameters, vocab %d) to %s",
             family, layers, width, n_params / 1e6, len(tokenizer), out)
