"""Networks that are per-unit linear combinations of a few anchor networks, evaluated fast.

Straight lines, geodesics, planes and tori (docs/method.md §7) are all points of the form
sum_m c_m (.) w_m over M anchor networks. :class:`CombinationEvaluator` evaluates them with the
first-layer factorization (docs/method.md §7, "First-layer factorization"): because the
first layer's pre-activations are linear in its weights, X W(x)^T = sum_m c_m (.) (X W_m^T), so a
path of K points costs M first-layer products (M = 2 for a path) instead of K.
:func:`_find_first_layer` decides whether a network's first layer is eligible (:class:`FirstLayer`).
The plain evaluator it builds on is :class:`~toroid.worker.landscape.evaluate.Evaluator`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toroid.worker.landscape.states import BNMode, Coefficients, as_state, combine_states, load_state

if TYPE_CHECKING:
    from toroid.worker.landscape.evaluate import Evaluator, Split

__all__ = ["CombinationEvaluator", "FirstLayer"]

_CPU_CACHE_BUDGET = 2 * 2**30  # bytes of cached first-layer products on CPU (at least; see _default_cache_budget)


@dataclass
class FirstLayer:
    """The network's first layer when it is a plain Linear or Conv applied to the raw input.

    ``name`` is the module's qualified name, ``kind`` ``linear`` or ``conv``, ``weight`` and
    ``bias`` its state-dict keys (``bias`` is None when the layer has none).
    """

    name: str
    module: nn.Module
    kind: str
    weight: str
    bias: str | None


class _Injected(nn.Module):
    """Stands in for the first layer: returns precomputed pre-activations for the current batch."""

    def __init__(self) -> None:
        super().__init__()
        self.value: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.value is None:
            raise RuntimeError("injected first-layer output not set")
        if self.value.shape[0] != x.shape[0]:
            raise RuntimeError("injected first-layer output does not match the batch")
        return self.value


_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def _find_first_layer(model: nn.Module, x: Tensor) -> FirstLayer | None:
    """Detect a first layer eligible for the factorization (see module docstring).

    Eligible: the first module with parameters called in the forward pass is exactly
    ``nn.Linear`` (input = the flattened raw input) or ``nn.Conv1d/2d/3d`` with zero padding
    (input = the raw input), called once.  Anything else (parameters used before it, input
    transformed, weight re-parametrized, binary layers) returns None: use the plain path.
    """
    calls: list[tuple[str, nn.Module, Tensor]] = []
    handles = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)) or any(
            True for _ in module.buffers(recurse=False)
        ):

            def hook(mod: nn.Module, args: tuple[Any, ...], _name: str = name) -> None:
                inp = args[0] if args and isinstance(args[0], Tensor) else torch.empty(0)
                calls.append((_name, mod, inp))

            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not calls:
        return None
    name, module, inp = calls[0]
    if sum(1 for c in calls if c[1] is module) != 1:
        return None
    weight_key = f"{name}.weight" if name else "weight"
    bias_key = f"{name}.bias" if name else "bias"
    state = model.state_dict()
    if weight_key not in state:
        return None
    has_bias = getattr(module, "bias", None) is not None
    if has_bias and bias_key not in state:
        return None
    n = x.shape[0]
    if type(module) is nn.Linear:
        if inp.dim() != 2 or inp.shape[0] != n or not torch.equal(inp, x.reshape(n, -1)):
            return None
        kind = "linear"
    elif type(module) in _CONV:
        if module.padding_mode != "zeros" or inp.shape != x.shape or not torch.equal(inp, x):
            return None
        kind = "conv"
    else:
        return None
    if not name:
        return None  # the whole model is one layer: nothing to inject into
    return FirstLayer(name, module, kind, weight_key, bias_key if has_bias else None)


class CombinationEvaluator:
    """Evaluate networks that are per-unit linear combinations of M anchor networks.

    A point is given by ``coefs``: for each state-dict key a tensor of shape (M,) (one
    coefficient per anchor) or (M, rows) (one per anchor and unit, i.e. per slice along
    dim 0).  The point's tensor is sum_m coefs[key][m] (.) anchors[m][key].  Keys without
    coefficients (integer buffers, and BN running statistics when they are recomputed) are
    taken from anchor 0.  Straight lines, geodesics (per-unit slerp coefficients), planes and
    tori are all of this form.

    When the first layer is a plain Linear/Conv on the raw input (see :class:`FirstLayer`),
    its pre-activations X W_m^T are computed once per anchor and split, and each point
    combines them with the per-unit coefficients: K points cost M first-layer products
    instead of K.  The cache is used when it fits ``cache_budget`` bytes (default 2 GiB on
    CPU, a third of free GPU memory); otherwise every point runs the plain forward pass.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        anchors: Sequence[nn.Module | Mapping[str, Tensor]],
        *,
        factorize: bool = True,
        cache_budget: int | None = None,
    ) -> None:
        if len(anchors) == 0:
            raise ValueError("a combination needs at least one anchor network")
        self.evaluator = evaluator
        device = evaluator.device
        states = [as_state(a) for a in anchors]
        keys = list(evaluator.model.state_dict().keys())
        for i, st in enumerate(states):
            missing = [k for k in keys if k not in st]
            if missing:
                raise ValueError(f"anchor {i} does not match the architecture: missing {missing[:5]}")
        self.keys = keys
        self.anchors = [{k: st[k].detach().to(device) for k in keys} for st in states]
        ref = self.anchors[0]
        for i, st in enumerate(self.anchors[1:], start=1):
            for k in keys:
                if st[k].shape != ref[k].shape:
                    raise ValueError(
                        f"anchor {i} has shape {tuple(st[k].shape)} for {k!r}, expected {tuple(ref[k].shape)}"
                    )
        self.float_keys = [k for k in keys if ref[k].is_floating_point()]
        self.factorized = False
        self._products: dict[str, Tensor] = {}
        # the combined first-layer output of the current batch: one buffer reused by every batch and point
        # (the next layers read it before the next batch overwrites it; docs/performance.md, "MLP paths")
        self._output: Tensor | None = None
        first = evaluator.first_layer
        if factorize and first is not None:
            budget = cache_budget if cache_budget is not None else self._default_cache_budget()
            if self._cache_bytes(first) <= budget:
                self._setup_factorization(first)

    def _default_cache_budget(self) -> int:
        if self.evaluator.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.evaluator.device)
            return free // 3
        try:  # a third of the memory free now, at least 2 GiB (LeNet, 10,000 + 10,000 CIFAR inputs: 2.5 GB)
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 0
        return max(_CPU_CACHE_BUDGET, free // 3)

    def _cache_bytes(self, first: FirstLayer) -> int:
        ev = self.evaluator
        total = 0
        for split in ("train", "test"):
            x = ev.data[split][0]
            if len(x) == 0:
                continue
            with torch.inference_mode():
                out = self._product(first, x[:1], self.anchors[0][first.weight])
            total += out.numel() * len(x) * out.element_size()
        return total * len(self.anchors)

    @staticmethod
    def _product(first: FirstLayer, x: Tensor, weight: Tensor) -> Tensor:
        """The first layer's pre-activation without bias: X W^T (Linear) or conv(X, W)."""
        if first.kind == "linear":
            return x.reshape(x.shape[0], -1) @ weight.T
        m = first.module
        return _CONV[type(m)](x, weight, None, m.stride, m.padding, m.dilation, m.groups)

    def _setup_factorization(self, first: FirstLayer) -> None:
        ev = self.evaluator
        self.first = first
        self.model = copy.deepcopy(ev.model)
        self.injected = _Injected()
        parent_name, _, child = first.name.rpartition(".")
        parent = self.model.get_submodule(parent_name) if parent_name else self.model
        setattr(parent, child, self.injected)
        with torch.inference_mode():
            for split in ("train", "test"):
                x = ev.data[split][0]
                if len(x) == 0:
                    continue
                shape = self._product(first, x[:1], self.anchors[0][first.weight]).shape[1:]
                # one (N, out, ...) tensor per anchor, in the evaluator's layout (channels-last for conv
                # nets when the calibration chose it), so each point's combination feeds the next layer as is
                fmt = ev.memory_format if len(shape) == 3 else torch.contiguous_format
                prods = []
                for anchor in self.anchors:
                    out = torch.empty((len(x), *shape), device=ev.device, memory_format=fmt)
                    for sl in ev.slices(split):
                        if first.kind == "linear":  # straight into the cache (the same mm, no copy)
                            torch.mm(x[sl].reshape(sl.stop - sl.start, -1), anchor[first.weight].T, out=out[sl])
                        else:
                            out[sl] = self._product(first, x[sl], anchor[first.weight])
                    prods.append(out)
                self._products[split] = prods
        self.factorized = True

    def combine(self, coefs: Coefficients, keys: Sequence[str] | None = None) -> dict[str, Tensor]:
        """The state dict of the point ``coefs`` (see class docstring)."""
        return combine_states(self.anchors, coefs, keys)

    def _first_layer_output(self, coefs: Coefficients, bias: Tensor | None) -> Any:
        first = self.first
        c = coefs.get(first.weight)
        if c is None:
            c = torch.zeros(len(self.anchors), dtype=torch.float64)
            c[0] = 1.0
        c = torch.as_tensor(c, dtype=torch.float64)
        out_dim = self.anchors[0][first.weight].shape[0]
        if c.dim() == 1:
            c = c.unsqueeze(1).expand(-1, out_dim)
        c = c.to(self.evaluator.device, torch.float32)
        some = next(iter(self._products.values()))[0]
        extra_dims = some.dim() - 2  # spatial dimensions of conv outputs
        c = c.reshape(c.shape[0], 1, out_dim, *([1] * extra_dims))
        b = bias.reshape(1, out_dim, *([1] * extra_dims)) if bias is not None else None

        def output(split: str, sl: slice) -> Tensor:
            prods = self._products[split]
            p0 = prods[0][sl]
            buf = self._output
            if buf is None or buf.shape[0] < len(p0) or buf.shape[1:] != p0.shape[1:]:
                buf = self._output = torch.empty_like(p0)  # the cache's layout (channels-last or not)
            h = buf[: len(p0)]
            if b is None:
                torch.mul(p0, c[0], out=h)
            else:
                torch.addcmul(b, p0, c[0], out=h)
            for i in range(1, len(prods)):
                h.addcmul_(prods[i][sl], c[i])
            return h

        return output

    def evaluate(
        self, coefs: Coefficients, split: Split = "both", *, bn: BNMode = "recompute"
    ) -> dict[str, float]:
        """Errors and losses at the point ``coefs``.

        ``bn="recompute"`` recomputes BatchNorm running statistics from the training data at
        this point; ``bn="interpolate"`` combines the anchors' statistics with the given
        coefficients.
        """
        if bn not in ("recompute", "interpolate"):
            raise ValueError(f"bn must be 'recompute' or 'interpolate', got {bn!r}")
        ev = self.evaluator
        recompute = bn == "recompute" and ev.has_bn
        if not self.factorized:
            state = self.combine(coefs)
            return ev.evaluate_state(state, split, recalibrate=recompute)
        first = self.first
        rest_keys = [k for k in self.keys if k not in (first.weight, first.bias)]
        state = self.combine(coefs, rest_keys)
        load_state(self.model, state)
        bias = self.combine(coefs, [first.bias])[first.bias] if first.bias is not None else None
        inject = (self.injected, self._first_layer_output(coefs, bias))
        if recompute:
            ev.recalibrate(self.model, inject)
        out: dict[str, float] = {}
        for s in ev._splits(split):
            out[f"{s}_error"], out[f"{s}_loss"] = ev.run(self.model, s, inject)
        return out
