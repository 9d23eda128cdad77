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

from kcs import noise
from kcs.config import TrainConfig
from kcs.errors import KcsError
from kcs.models import block_and_module, layout_for, maskable_parameters
from kcs.prefix import BlockInputs, inputs_of_block, run_upper_blocks

VIEWS = ("full", "remaining", "subnetwork")
# a new mask's granularity, init_p and temperature default to mask training's, written once in kcs.config
_TRAIN_DEFAULTS = TrainConfig()
GRANULARITIES = ("weight", "neuron")
_NOISE_EPS = 1e-6  # clamp of u before logit(u); 1 - 1e-10 would round to 1.0 in float32


class _StraightThroughMask(torch.autograd.Function):
    """y = W * 1[s > 0.5] (or 1[1 - s > 0.5] when inverted), s = sigmoid((l + c * noise) / tau).

    Backward is the straight-through estimator: dL/dl = dL/dm * ds/dl with dL/dm = dL/dy * W
    (summed over broadcast axes for neuron masks). Written as one Function so that only s is kept
    for backward, and s is built and then turned into ds/dl in one buffer: on a CPU a fresh
    weight-sized tensor costs more (page faults) than the arithmetic on it.
    """

    @staticmethod
    def forward(ctx, weight, logits, uniform, noise_scale, temperature, invert):
        """`uniform`: U(0, 1) draws shaped like the logits (kcs.noise), consumed in place; None
        for the deterministic mask."""
        logits = logits.detach()
        if uniform is None or noise_scale == 0.0:
            soft = logits / temperature
        else:
            # logistic noise: logit(u) = log u - log(1 - u), u ~ U(0, 1) (docs/method.md 1.4), scaled by
            # noise_scale (1 = the paper's; smaller = samples closer to the deterministic mask)
            soft = uniform.logit_(_NOISE_EPS)
            if noise_scale != 1.0:
                soft.mul_(noise_scale)
            soft.add_(logits)
            if temperature != 1.0:
                soft.div_(temperature)
        soft.sigmoid_()
        # the 0/1 multiplier as floats: round(s) = 1[s > 0.5] on [0, 1] (0.5 rounds to even, 0);
        # a float * bool product takes ~5x longer than float * float on a CPU
        keep = torch.round(soft)
        if invert:  # 1[s <= 0.5]
            keep.neg_().add_(1.0)
        # soft is an intermediate (a view of the step's flat noise buffer, whose other views are
        # written in place): kept on ctx, as autograd prescribes for intermediates
        ctx.save_for_backward(weight)
        ctx.soft = soft
        ctx.temperature, ctx.invert = temperature, invert
        # a multiply by the 0/1 mask, not torch.where: where branches per element, and a mask
        # that is still near 50/50 makes it ~4x slower on a CPU
        return keep.mul_(weight) if keep.shape == weight.shape else weight * keep

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        (weight,), soft = ctx.saved_tensors, ctx.soft
        del ctx.soft
        grad_mask = grad_output * weight
        if grad_mask.shape != soft.shape:  # neuron masks broadcast over one axis
            grad_mask = grad_mask.sum(dim=[d for d in range(2) if soft.shape[d] == 1], keepdim=True)
        # ds/dl = s (1 - s) / tau = (s - s^2) / tau; the inverted mask 1 - s has the opposite
        # sign: (s^2 - s) / tau = ((-s) + (-s)^2) / tau. Computed in s's own buffer.
        slope = soft.neg_() if ctx.invert else soft
        slope.addcmul_(slope, slope, value=1.0 if ctx.invert else -1.0)
        grad_logits = grad_mask.mul_(slope)
        if ctx.temperature != 1.0:
            grad_logits.div_(ctx.temperature)
        return None, grad_logits, None, None, None, None


class _ExpectedDensity(torch.autograd.Function):
    """mean(sigmoid(l)) over all logit tensors; backward s (1 - s) / n computed in s's own buffer
    (autograd's sigmoid backward would allocate a second weight-sized tensor per matrix).
    `buffers` (one per logit tensor, reused every step) hold s: fresh weight-sized tensors cost
    page faults on a CPU."""

    @staticmethod
    def forward(ctx, n, buffers, *logits):
        softs = [torch.sigmoid(t.detach(), out=buf) for t, buf in zip(logits, buffers)]
        ctx.softs = softs
        ctx.n = n
        return sum(soft.sum() for soft in softs) / n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        scale = grad_output / ctx.n
        softs = ctx.softs
        del ctx.softs
        return (None, None, *(soft.addcmul_(soft, soft, value=-1.0).mul_(scale) for soft in softs))


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

    def uniform_draws(self, stochastic: bool) -> list[torch.Tensor | None]:
        """One fresh U(0, 1) tensor per logit tensor (None each when deterministic), drawn as one
        flat buffer so that the fast CPU source (kcs.noise) fills all matrices in parallel."""
        if self._noise_scale(stochastic) == 0.0:
            return [None] * len(self.logits)
        flat = noise.uniform_(torch.empty(self.num_logits, device=self.logits[0].device))
        return list(flat.split([logits.numel() for logits in self.logits]))

    def sample(self, index: int, view: str, stochastic: bool) -> torch.Tensor:
        """The hard 0/1 multiplier of matrix `index` in `view` (no gradient; for inspection and tests)."""
        logits = self.logits[index]
        uniform = None if self._noise_scale(stochastic) == 0.0 else noise.uniform_like(logits)
        with torch.no_grad():
            return _StraightThroughMask.apply(torch.ones_like(logits), logits, uniform, self._noise_scale(stochastic),
                                              self.temperature, view == "remaining")

    def masked_weight(self, index: int, weight: torch.Tensor, view: str, stochastic: bool,
                      uniform: torch.Tensor | None = None) -> torch.Tensor:
        """weight * hard mask, with the straight-through gradient reaching the logits.

        The remaining view thresholds 1 - s, as the authors' inverse mask does. Every forward
        pass of every matrix gets a fresh sample: `uniform` (from `uniform_draws`), or drawn here.
        """
        logits = self.logits[index]
        if uniform is None and self._noise_scale(stochastic) != 0.0:
            uniform = noise.uniform_like(logits)
        return _StraightThroughMask.apply(weight, logits, None if uniform is None else uniform.view(logits.shape),
                                          self._noise_scale(stochastic), self.temperature, view == "remaining")

    def binary(self) -> dict[str, torch.Tensor]:
        """The deterministic subnetwork: True where a weight (or neuron) is in it (logit > 0)."""
        return {name: (logits.detach() > 0) for name, logits in zip(self.names, self.logits)}

    def expected_density(self) -> torch.Tensor:
        """The sparsity regulariser: mean sigmoid of all logits (expected subnetwork share)."""
        buffers = self.__dict__.setdefault("_density_buffers", [])
        if len(buffers) != len(self.logits) or buffers[0].device != self.logits[0].device:
            buffers[:] = [torch.empty_like(logits, requires_grad=False) for logits in self.logits]
        return _ExpectedDensity.apply(self.num_logits, buffers, *self.logits)

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
        draws = self.mask.uniform_draws(stochastic)
        return {
            name: self.mask.masked_weight(i, weight, view, stochastic, uniform)
            for i, (name, weight, uniform) in enumerate(zip(self.mask.names, self._weights, draws))
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
