"""The frozen prefix: what enters the first masked block, computed once per input.

Masks live only in the top blocks, so the embeddings and every block below the first masked one
are frozen and see a fixed, finite set of inputs (the TargetKG, the ControlKG training facts, the
ControlLM blocks, the validation sets). `PrefixCache` keeps the hidden state entering the first
masked block for as many rows of one such set as its byte budget allows; rows past the budget are
recomputed when a batch needs them, never dropped. The other arguments a block receives (the
causal/padding mask, GPT-2's position ids, the Llama layout's rotary position embeddings) are
taken from the model itself for each batch, by stopping its forward pass at the first block, so
the cached path runs exactly the operations of the uncached one (docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kcs.atomic import atomic_path
from kcs.models import layout_for


@dataclass
class BlockInputs:
    """The arguments one transformer block is called with: its hidden state, and the rest.

    `args` are the positional arguments after the hidden state (GPT-2 passes its cache and mask
    positionally), `kwargs` the keyword ones; every block of a model receives the same of both.
    """

    hidden: torch.Tensor  # [batch, tokens, d_model]
    args: tuple
    kwargs: dict

    def with_hidden(self, hidden: torch.Tensor) -> "BlockInputs":
        return replace(self, hidden=hidden)


class _ReachedBlock(Exception):
    def __init__(self, args: tuple, kwargs: dict):
        super().__init__("forward pass stopped at the first masked block")
        self.block_args, self.block_kwargs = args, kwargs


def blocks_of(model: nn.Module) -> nn.ModuleList:
    return model.get_submodule(layout_for(model).blocks_path)


@torch.no_grad()
def inputs_of_block(model: nn.Module, block: int, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor | None = None) -> BlockInputs:
    """Run the (unmasked) model up to `block` and return what that block would be called with."""

    def stop(module, args, kwargs):
        raise _ReachedBlock(args, kwargs)

    handle = blocks_of(model)[block].register_forward_pre_hook(stop, with_kwargs=True)
    try:
        model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _ReachedBlock as reached:
        args, kwargs = reached.block_args, reached.block_kwargs
    else:  # pragma: no cover - every layout calls its blocks
        raise RuntimeError(f"the model's forward pass never called block {block}")
    finally:
        handle.remove()
    return BlockInputs(args[0], tuple(args[1:]), dict(kwargs))


def run_upper_blocks(model: nn.Module, first_block: int, inputs: BlockInputs) -> torch.Tensor:
    """Blocks `first_block`.. and the final norm: the last hidden state, as the backbone returns it."""
    hidden = inputs.hidden
    for block in blocks_of(model)[first_block:]:
        out = block(hidden, *inputs.args, **inputs.kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
    return model.get_submodule(layout_for(model).final_norm)(hidden)


class PrefixStore:
    """A folder of prefix hidden states shared by the processes of a pipeline.

    Every evaluation job, every training run and every step evaluation of one model recomputes the
    same frozen prefix over the same data sets; with a store, the first computes it and the others
    read it (on the demo, 24 of SmolLM2's 30 blocks). One safetensors file per cache, named by a
    SHA-256 digest of everything the hidden states depend on: the prefix's weights (every
    parameter and buffer outside the masked blocks), the first masked block, the rows' token ids
    and attention mask, the chunking, the device type and the torch version. A file can only be
    found by the computation that would recompute it, so reading it changes no number; one that
    is unreadable or of the wrong shape is recomputed and replaced. Files are written atomically,
    so concurrent jobs at most compute the same file twice.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._weights: dict[tuple[int, int], str] = {}

    def _weights_digest(self, model: nn.Module, first_block: int) -> str:
        key = (id(model), first_block)
        if key not in self._weights:
            upper = tuple(f"{layout_for(model).blocks_path}.{i}." for i in range(first_block, len(blocks_of(model))))
            digest = hashlib.sha256(f"{torch.__version__}|{first_block}".encode())
            for name, tensor in (*model.named_parameters(), *model.named_buffers()):
                if name.startswith(upper):
                    continue
                digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
                digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
            self._weights[key] = digest.hexdigest()
        return self._weights[key]

    def path(self, model: nn.Module, first_block: int, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
             n_rows: int, chunk: int) -> Path:
        digest = hashlib.sha256(self._weights_digest(model, first_block).encode())
        device = next(model.parameters()).device.type
        digest.update(f"{device}|{n_rows}|{chunk}|{tuple(input_ids.shape)}".encode())
        digest.update(input_ids.cpu().contiguous().numpy().tobytes())
        if attention_mask is not None:
            digest.update(attention_mask.cpu().contiguous().numpy().tobytes())
        return self.root / f"{digest.hexdigest()[:40]}.safetensors"

    @staticmethod
    def load(path: Path, shape: tuple[int, ...]) -> torch.Tensor | None:
        try:
            hidden = load_file(str(path))["hidden"]
        except (OSError, KeyError, SafetensorError):
            return None
        return hidden if tuple(hidden.shape) == shape else None

    @staticmethod
    def save(path: Path, hidden: torch.Tensor) -> None:
        with atomic_path(path) as tmp:
            save_file({"hidden": hidden.detach().cpu().contiguous()}, str(tmp))


class PrefixCache:
    """The inputs of the first masked block for a fixed set of rows, cached within a byte budget.

    `input_ids` [N, T] (right padded when `attention_mask` is given) are the rows; the hidden
    states of the first rows that fit `budget_bytes` are computed up front in fixed chunks, so a
    cached value never depends on which batch asks for it (a resumed run sees the same numbers).
    With a `store`, they are read from it when another process has computed them already.
    """

    def __init__(self, model: nn.Module, first_block: int, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None = None, budget_bytes: int = 0, chunk: int = 64,
                 store: PrefixStore | None = None):
        self.model, self.first_block = model, first_block
        self.input_ids, self.attention_mask = input_ids, attention_mask
        self.device = next(model.parameters()).device
        d_model = model.config.get_text_config().hidden_size
        row_bytes = input_ids.shape[1] * d_model * 4
        # below block 0 there is only the embedding lookup: nothing worth caching
        self.n_cached = 0 if first_block == 0 else min(len(input_ids), max(budget_bytes, 0) // row_bytes)
        self.hidden: torch.Tensor | None = None
        if not self.n_cached:
            return
        shape = (self.n_cached, input_ids.shape[1], d_model)
        stored = None if store is None else store.path(model, first_block, input_ids, attention_mask, self.n_cached, chunk)
        if stored is not None:
            self.hidden = PrefixStore.load(stored, shape)
            if self.hidden is not None:
                self.hidden = self.hidden.to(self.device)
                return
        self.hidden = torch.zeros(shape, device=self.device)
        for start in range(0, self.n_cached, chunk):
            rows = torch.arange(start, min(start + chunk, self.n_cached))
            ids, att = self.rows(rows)
            self.hidden[rows.to(self.device), : ids.shape[1]] = self._lower(ids, att).hidden
        if stored is not None:
            PrefixStore.save(stored, self.hidden)

    @classmethod
    def for_lm(cls, lm, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               budget_bytes: int = 0, store: PrefixStore | None = None) -> "PrefixCache":
        """The cache of a kcs.masking.MaskedLM's frozen prefix (masks with the same first block share it)."""
        return cls(lm.model, lm.first_block, input_ids, attention_mask, budget_bytes, store=store)

    def _lower(self, ids: torch.Tensor, att: torch.Tensor | None) -> BlockInputs:
        return inputs_of_block(self.model, self.first_block, ids.to(self.device), _to(att, self.device))

    @property
    def nbytes(self) -> int:
        return 0 if self.hidden is None else self.hidden.numel() * self.hidden.element_size()

    def __len__(self) -> int:
        return len(self.input_ids)

    def rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The token ids (and attention mask) of `rows`, trimmed to their longest row, on the CPU."""
        ids = self.input_ids[rows]
        if self.attention_mask is None:
            return ids, None
        att = self.attention_mask[rows]
        width = int(att.sum(dim=1).max())  # trim the padding these rows do not need
        return ids[:, :width], att[:, :width]

    def block_inputs(self, rows: torch.Tensor, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor | None = None) -> BlockInputs:
        """What the first masked block receives for `rows`, whose (trimmed) batch is `input_ids`."""
        rows = rows.cpu()
        input_ids, attention_mask = input_ids.to(self.device), _to(attention_mask, self.device)
        cached = rows < self.n_cached
        if not bool(cached.any()):
            return self._lower(input_ids, attention_mask)
        # the mask, positions and rotary embeddings of this very batch: the model stopped at block 0
        inputs = inputs_of_block(self.model, 0, input_ids, attention_mask)
        width = input_ids.shape[1]
        # advanced indexing copies, so filling the missing rows below never touches the cache
        hidden = self.hidden[rows.clamp(max=self.n_cached - 1).to(self.hidden.device), :width]
        if not bool(cached.all()):
            missing = (~cached).nonzero().squeeze(1)
            ids, att = self.rows(rows[missing])
            part = self._lower(ids, att).hidden
            hidden[missing.to(hidden.device), : part.shape[1]] = part
        return inputs.with_hidden(hidden)


def _to(tensor: torch.Tensor | None, device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)
