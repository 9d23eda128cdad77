"""Learnable binary masks over weight matrices (docs/method.md sections 1.3 to 1.6).

A `WeightMask` holds one logit tensor per masked matrix. In training each forward pass draws a
fresh Gumbel-sigmoid (logistic-noise) sample per matrix, thresholds it at 0.5 and passes the
gradient of the soft sample straight through. In evaluation the mask is deterministic:
a weight belongs to the knowledge-critical subnetwork iff its logit is > 0.

`MaskedLM` runs one model in three views without copying it:
- "full": the pretrained model, untouched;
- "remaining": the subnetwork's weights zeroed (W * (1 - m)), the model the objectives train;
- "subnetwork": only the subnetwork's weights kept inside the masked matrices (W * m).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from kcs import mask_sample, noise
from kcs.config import TrainConfig
from kcs.errors import KcsError
from kcs.models import block_and_module, layout_for, maskable_parameters
from kcs.prefix import BlockInputs, inputs_of_block, run_upper_blocks

VIEWS = ("full", "remaining", "subnetwork")
# a new mask's granularity, init_p and temperature default to mask training's, written once in kcs.config
_TRAIN_DEFAULTS = TrainConfig()
GRANULARITIES = ("weight", "neuron")


class _StraightThroughMask(torch.autograd.Function):
    """y = W * 1[s > 0.5] (or 1[s <= 0.5] when inverted), s = sigmoid((l + c * logit(u)) / tau).

    Backward is the straight-through estimator: dL/dl = dL/dm * ds/dl with dL/dm = dL/dy * W
    (summed over broadcast axes for neuron masks). s is never formed: kcs.mask_sample decides and
    differentiates it from p, q (the step's keep probabilities) and v (this sample's noise), on a
    CPU in one fused pass each way.
    """

    @staticmethod
    def forward(ctx, weight, logits, p, q, v, temperature, invert, out):
        """`v`: this sample's noise (WeightMask.uniform_draws), None for the deterministic mask; `out`:
        where the fused kernel writes the masked weight (WeightMask.sample_buffers), or None."""
        # logits are saved only so that autograd refuses a backward after an optimiser step changed
        # them: p, q and the noise buffers are reused from step to step (WeightMask)
        ctx.save_for_backward(weight, logits, p, q, v)
        ctx.temperature, ctx.invert = temperature, invert
        if mask_sample.fused_applies(weight, p):
            return mask_sample.select_fused(weight, p, q, v, invert, out)
        return mask_sample.select_torch(weight, p, q, v, invert)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        weight, _, p, q, v = ctx.saved_tensors
        if mask_sample.fused_applies(weight, p):
            grad_logits = mask_sample.grad_fused(grad_output, weight, p, q, v, ctx.invert, ctx.temperature)
        else:
            grad_mask = grad_output * weight
            if grad_mask.shape != p.shape:  # neuron masks broadcast over one axis
                grad_mask = grad_mask.sum(dim=[d for d in range(2) if p.shape[d] == 1], keepdim=True)
            grad_logits = grad_mask * mask_sample.slope_torch(p, q, v, ctx.invert, ctx.temperature)
        return None, grad_logits, None, None, None, None, None, None


class _ExpectedDensity(torch.autograd.Function):
    """mean(sigmoid(l)) over all logit tensors from the step's keep probabilities p = sigmoid(l)
    (computed once per step, shared with the samples); backward p q / n, q = sigmoid(-l) = 1 - p."""

    @staticmethod
    def forward(ctx, n, probabilities, complements, *logits):
        ctx.save_for_backward(*logits)  # refuses a backward after the logits changed (see above)
        ctx.probabilities, ctx.complements, ctx.n = probabilities, complements, n
        return sum(p.sum() for p in probabilities) / n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        ctx.saved_tensors  # noqa: B018 (the version check)
        scale = grad_output / ctx.n
        return (None, None, None, *(mask_sample.density_grad(p, q, scale) for p, q in zip(ctx.probabilities, ctx.complements)))


@dataclass(frozen=True)
class MaskInfo:
    """Where a masked matrix sits: its block index, module path and weight shape."""

    block: int
    module: str
    weight_shape: tuple[int, int]


def logit_shape(weight_shape: tuple[int, int], granularity: str, weight_in_out: bool) -> tuple[int, int]:
    """Weight masks match the weight; neuron masks hold one logit per input feature (docs/method.md 1.3)."""
    if granularity == "weight":
        return weight_shape
    if granularity == "neuron":
        return (weight_shape[0], 1) if weight_in_out else (1, weight_shape[1])
    raise KcsError(f"granularity must be one of {', '.join(GRANULARITIES)}, got '{granularity}'")


class WeightMask(nn.Module):
    def __init__(self, infos: dict[str, MaskInfo], granularity: str, weight_in_out: bool,
                 init_p: float = _TRAIN_DEFAULTS.init_p, temperature: float = _TRAIN_DEFAULTS.temperature):
        super().__init__()
        if not 0.0 < init_p < 1.0:
            raise KcsError(f"init_p must be in (0, 1), got {init_p}")
        # one canonical order (block, name) so masks built from a model or read from a file line up
        infos = dict(sorted(infos.items(), key=lambda item: (item[1].block, item[0])))
        self.names = list(infos)
        self.infos = infos
        self.granularity = granularity
        self.weight_in_out = weight_in_out
        self.temperature = temperature
        self.noise_scale = 1.0  # set per step by the training schedule (kcs.objectives.noise_scale)
        init_logit = math.log(init_p / (1.0 - init_p))
        self.logits = nn.ParameterList(
            nn.Parameter(torch.full(logit_shape(info.weight_shape, granularity, weight_in_out), init_logit))
            for info in infos.values()
        )

    @classmethod
    def for_model(cls, model: nn.Module, blocks: list[int], granularity: str = _TRAIN_DEFAULTS.granularity,
                  init_p: float = _TRAIN_DEFAULTS.init_p, temperature: float = _TRAIN_DEFAULTS.temperature) -> "WeightMask":
        layout = layout_for(model)
        infos = {}
        for name, weight in maskable_parameters(model, blocks).items():
            block, module = block_and_module(name, layout)
            infos[name] = MaskInfo(block, module, tuple(weight.shape))
        mask = cls(infos, granularity, layout.weight_in_out, init_p, temperature)
        return mask.to(next(model.parameters()).device)

    # -- sampling -------------------------------------------------------------------------
    def _noise_scale(self, stochastic: bool) -> float:
        return self.noise_scale if stochastic else 0.0

    def _logits_state(self) -> tuple:
        """Changes whenever a logit tensor is written in place (an optimiser step), moved or replaced."""
        return tuple((logits._version, logits.data_ptr(), logits.device) for logits in self.logits)

    def _flat_buffer(self) -> torch.Tensor:
        return torch.empty(self.num_logits, dtype=torch.float32, device=self.logits[0].device)

    def _split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [part.view(logits.shape) for part, logits in zip(flat.split([t.numel() for t in self.logits]), self.logits)]

    def keep_probabilities(self, temperature: float | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """p = sigmoid(l / tau) and q = sigmoid(-l / tau) per matrix (kcs.mask_sample), computed once per
        value of the logits and shared by every sample of a step and by the sparsity regulariser (tau = 1).

        A value is known by the logits' autograd version counters, which every in-place write bumps,
        except a fused optimiser's step: `kcs.training.mask_optimiser` bumps them after its step, and
        code that steps its own fused optimiser must too (torch.autograd.graph.increment_version)."""
        temperature = self.temperature if temperature is None else temperature
        cache = self.__dict__.setdefault("_keep_probabilities", {})
        state = self._logits_state()
        entry = cache.get(temperature)
        if entry is not None and entry[0] == state:
            return entry[1], entry[2]
        reuse = entry is not None and entry[1][0].device == self.logits[0].device
        p_flat, q_flat = (entry[3], entry[4]) if reuse else (self._flat_buffer(), self._flat_buffer())
        ps, qs = self._split(p_flat), self._split(q_flat)
        with torch.no_grad():
            for logits, p, q in zip(self.logits, ps, qs):
                if temperature == 1.0:
                    torch.sigmoid(logits, out=p)
                    torch.neg(logits, out=q).sigmoid_()
                else:
                    torch.div(logits, temperature, out=p).sigmoid_()
                    torch.div(logits, -temperature, out=q).sigmoid_()
        cache[temperature] = (state, ps, qs, p_flat, q_flat)
        return ps, qs

    def _step_buffer(self, kind: str) -> torch.Tensor:
        """A flat buffer for one sample's noise or masked weights. The first four of each kind in a step
        (one per loss term) are reused at the next step: a fresh 200 MB tensor costs ~45 ms of page
        faults on a CPU. A buffer is handed out once per value of the logits, and a sample saves the
        logits for its backward, so autograd refuses a backward through a buffer a later step refilled."""
        pools = self.__dict__.setdefault("_step_buffers", {})
        pool = pools.setdefault(kind, {"state": None, "buffers": [], "used": 0})
        state = self._logits_state()
        if pool["state"] != state:
            pool.update(state=state, used=0)
            if pool["buffers"] and pool["buffers"][0].device != self.logits[0].device:
                pool["buffers"] = []
        if pool["used"] >= 4:
            return self._flat_buffer()
        if pool["used"] == len(pool["buffers"]):
            pool["buffers"].append(self._flat_buffer())
        pool["used"] += 1
        return pool["buffers"][pool["used"] - 1]

    def sample_buffers(self) -> list[torch.Tensor | None]:
        """Where one sample's masked weights go (one view per matrix, weight masks only: a neuron
        mask's output has the weight's shape, not the logits')."""
        if self.granularity != "weight":
            return [None] * len(self.logits)
        return self._split(self._step_buffer("masked"))

    def uniform_draws(self, stochastic: bool) -> list[torch.Tensor | None]:
        """One sample's noise per logit tensor, as kcs.mask_sample's v (None each when deterministic),
        drawn as one flat buffer so that the fast CPU source (kcs.noise) fills all matrices in parallel."""
        scale = self._noise_scale(stochastic)
        if scale == 0.0:
            return [None] * len(self.logits)
        flat = mask_sample.noise_to_v(noise.uniform_(self._step_buffer("noise")), scale, self.temperature)
        return self._split(flat)

    def sample(self, index: int, view: str, stochastic: bool) -> torch.Tensor:
        """The hard 0/1 multiplier of matrix `index` in `view` (no gradient; for inspection and tests)."""
        logits = self.logits[index]
        with torch.no_grad():
            return self.masked_weight(index, torch.ones_like(logits), view, stochastic)

    def masked_weight(self, index: int, weight: torch.Tensor, view: str, stochastic: bool,
                      draw: torch.Tensor | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """weight * hard mask, with the straight-through gradient reaching the logits.

        The remaining view thresholds 1 - s, as the authors' inverse mask does. Every forward
        pass of every matrix gets a fresh sample: `draw` (from `uniform_draws`), or drawn here.
        """
        logits = self.logits[index]
        scale = self._noise_scale(stochastic)
        if draw is None and scale != 0.0:
            draw = mask_sample.noise_to_v(noise.uniform_like(logits), scale, self.temperature)
        p, q = self.keep_probabilities()
        return _StraightThroughMask.apply(weight, logits, p[index], q[index], None if scale == 0.0 else draw,
                                          self.temperature, view == "remaining", out)

    def binary(self) -> dict[str, torch.Tensor]:
        """The deterministic subnetwork: True where a weight (or neuron) is in it (logit > 0)."""
        return {name: (logits.detach() > 0) for name, logits in zip(self.names, self.logits)}

    def expected_density(self) -> torch.Tensor:
        """The sparsity regulariser: mean sigmoid of all logits (expected subnetwork share)."""
        p, q = self.keep_probabilities(temperature=1.0)
        return _ExpectedDensity.apply(self.num_logits, p, q, *self.logits)

    @property
    def num_logits(self) -> int:
        return sum(logits.numel() for logits in self.logits)

    # -- sparsity --------------------------------------------------------------------------
    def removed_counts(self) -> dict[str, tuple[int, int]]:
        """Per matrix: (weights in the subnetwork, weights in the matrix)."""
        counts = {}
        for name, member in self.binary().items():
            shape = self.infos[name].weight_shape
            per_logit = (shape[0] * shape[1]) // member.numel()
            counts[name] = (int(member.sum()) * per_logit, shape[0] * shape[1])
        return counts

    def sparsity(self) -> float:
        """Share of masked-matrix weights outside the subnetwork (1.0 = empty subnetwork)."""
        removed, total = map(sum, zip(*self.removed_counts().values()))
        return 1.0 - removed / total

    def sparsity_report(self) -> dict:
        by_layer: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        by_module: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        removed_total = weights_total = 0
        for name, (removed, total) in self.removed_counts().items():
            info = self.infos[name]
            for bucket in (by_layer[info.block], by_module[info.module]):
                bucket[0] += removed
                bucket[1] += total
            removed_total += removed
            weights_total += total
        return {
            "sparsity": 1.0 - removed_total / weights_total,
            "removed_weights": removed_total,
            "masked_weights": weights_total,
            "sparsity_by_layer": {str(k): 1.0 - r / t for k, (r, t) in sorted(by_layer.items())},
            "sparsity_by_module": {k: 1.0 - r / t for k, (r, t) in by_module.items()},
        }

    def load_binary(self, members: dict[str, torch.Tensor], magnitude: float = 10.0) -> None:
        """Set logits so that the deterministic mask equals `members` (random baselines, algebra)."""
        with torch.no_grad():
            for name, logits in zip(self.names, self.logits):
                logits.copy_(torch.where(members[name].to(logits.device), magnitude, -magnitude))

    def empty_like(self) -> "WeightMask":
        return WeightMask(self.infos, self.granularity, self.weight_in_out, temperature=self.temperature).to(
            self.logits[0].device
        )


class _UpperBlocks(nn.Module):
    """The masked blocks and the final norm of a model, as one module `functional_call` can reparametrise."""

    def __init__(self, model: nn.Module, first_block: int):
        super().__init__()
        self.model = model  # parameter names are "model." + the model's own
        self.first_block = first_block

    def forward(self, inputs: BlockInputs) -> torch.Tensor:
        return run_upper_blocks(self.model, self.first_block, inputs)


class MaskedLM(nn.Module):
    """One frozen causal LM seen through a `WeightMask` in the full, remaining or subnetwork view.

    A forward pass has two parts: `lower` (embeddings and the blocks below the first masked one,
    the same in every view, no gradient, cacheable: kcs.prefix) and `upper` (the masked blocks
    with the view's weights, and the final norm).
    """

    def __init__(self, model: nn.Module, mask: WeightMask | None):
        super().__init__()
        self.model = model
        self.mask = mask  # None: only the full view exists
        self.first_block = 0 if mask is None else min(info.block for info in mask.infos.values())
        # not a registered submodule: it only re-exposes the model's own blocks
        self.__dict__["_upper"] = _UpperBlocks(model, self.first_block)
        if mask is None:
            self._weights = []
            return
        params = dict(model.named_parameters())
        missing = [name for name in mask.names if name not in params]
        if missing:
            raise KcsError(f"mask parameter '{missing[0]}' does not exist in the model")
        self._weights = [params[name] for name in mask.names]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def effective_weights(self, view: str, stochastic: bool) -> dict[str, torch.Tensor]:
        if view == "full":
            return {}
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        if self.mask is None:
            raise ValueError(f"the {view} view needs a mask")
        draws, outputs = self.mask.uniform_draws(stochastic), self.mask.sample_buffers()
        return {
            name: self.mask.masked_weight(i, weight, view, stochastic, draw, out)
            for i, (name, weight, draw, out) in enumerate(zip(self.mask.names, self._weights, draws, outputs))
        }

    def lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> BlockInputs:
        """What the first masked block receives (the frozen prefix; no gradient, same in every view)."""
        device = self.device
        return inputs_of_block(self.model, self.first_block, input_ids.to(device),
                               None if attention_mask is None else attention_mask.to(device))

    def upper(self, view: str, inputs: BlockInputs, stochastic: bool | None = None) -> torch.Tensor:
        """The last hidden state [B, T, d] of `view`, from the first masked block's inputs.

        Each call draws its own mask sample when stochastic (default: self.training).
        """
        stochastic = self.training if stochastic is None else stochastic
        weights = self.effective_weights(view, stochastic)
        if not weights:
            return self._upper(inputs)
        return functional_call(self._upper, {f"model.{name}": w for name, w in weights.items()}, args=(inputs,),
                               strict=False)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The (never masked) output layer."""
        return self.model.get_output_embeddings()(hidden)

    def hidden_at(self, view: str, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                  stochastic: bool | None = None, inputs: BlockInputs | None = None) -> torch.Tensor:
        """Last hidden states [N, d] at one position per row. `inputs` (from a
        kcs.prefix.PrefixCache) skips the frozen prefix."""
        inputs = self.lower(input_ids, attention_mask) if inputs is None else inputs
        hidden = self.upper(view, inputs, stochastic)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions.to(hidden.device)]

    def logits_at(self, view: str, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                  stochastic: bool | None = None, inputs: BlockInputs | None = None) -> torch.Tensor:
        """Logits [N, V] at one position per row, without computing the LM head anywhere else.

        The KG terms need one distribution per sentence; applying the output layer to the picked
        hidden states only saves most of the head's work and memory.
        """
        return self.head(self.hidden_at(view, input_ids, attention_mask, positions, stochastic, inputs))

    def forward(self, view: str, stochastic: bool | None = None, **inputs):
        """The whole Hugging Face model in `view` (outputs with .logits, .loss); kcs's own paths use
        `lower` / `upper`, and the tests check them against this."""
        stochastic = self.training if stochastic is None else stochastic
        inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        weights = self.effective_weights(view, stochastic)
        if not weights:
            return self.model(**inputs)
        return functional_call(self.model, weights, args=(), kwargs=inputs, strict=False)
