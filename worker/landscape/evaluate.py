"""The one fast evaluator of the error landscape (docs/method.md §§6-7).

Every measure of Toroid (path profiles, sections, tori, local energy, one-bend paths) asks
the same question many times: what are the train and test error (fraction misclassified)
and mean cross-entropy loss of the network with parameters ``w``?  This module answers it
fast:

* the data live as one tensor per split on the device, evaluated in large batches under
  ``torch.inference_mode``;
* parameters are copied into one reusable working model (no deep copy per point);
* :func:`recalibrate_bn` recomputes BatchNorm running statistics from the training data
  (deterministic full pass, cumulative average);
* :class:`CombinationEvaluator` evaluates points that are per-unit linear combinations of a
  few anchor networks (straight lines, geodesics, planes, tori).  Because the first layer's
  pre-activations are linear in its weights, X W(x)^T = sum_m c_m (.) (X W_m^T), a path of K
  points costs M first-layer products (M = 2 for a path) instead of K;
* :meth:`Evaluator.evaluate_stacked` evaluates many parameter sets in one pass with
  ``torch.func.vmap`` (used for noisy copies on GPUs).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from toroid.worker.landscape.device import default_device

if TYPE_CHECKING:
    from toroid.worker.landscape.data import Dataset

__all__ = [
    "CombinationEvaluator",
    "Evaluator",
    "FirstLayer",
    "as_state",
    "batchnorm_modules",
    "combine_states",
    "has_batchnorm",
    "load_state",
    "recalibrate_bn",
]

Split = Literal["train", "test", "both"]
BNMode = Literal["recompute", "interpolate"]

_CPU_ACTIVATION_BUDGET = 512 * 2**20  # bytes of activations per evaluation batch on CPU
_CPU_CACHE_BUDGET = 2 * 2**30  # bytes of cached first-layer products on CPU


def as_state(network: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict of ``network`` (a module or already a mapping of name -> tensor)."""
    if isinstance(network, nn.Module):
        return network.state_dict()
    if isinstance(network, Mapping):
        return dict(network)
    raise ValueError(
        f"expected an nn.Module or a state dict (mapping of name -> tensor), got {type(network).__name__}"
    )


def batchnorm_modules(model: nn.Module) -> list[_BatchNorm]:
    """BatchNorm modules of ``model`` that keep running statistics."""
    return [
        m
        for m in model.modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None
    ]


def has_batchnorm(model: nn.Module) -> bool:
    """True when ``model`` has BatchNorm layers with running statistics."""
    return bool(batchnorm_modules(model))


@torch.no_grad()
def load_state(model: nn.Module, state: Mapping[str, Tensor], *, allow_extra: bool = False) -> nn.Module:
    """Copy ``state`` into the parameters and buffers of ``model`` in place (no reallocation).

    Every entry of ``model.state_dict()`` must be present in ``state`` with the same shape;
    extra entries in ``state`` are an error unless ``allow_extra``.
    """
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    if missing:
        raise ValueError(f"state is missing {len(missing)} entries of the model, e.g. {missing[:5]}")
    if not allow_extra:
        extra = [k for k in state if k not in target]
        if extra:
            raise ValueError(f"state has {len(extra)} entries the model does not have, e.g. {extra[:5]}")
    for key, dst in target.items():
        src = state[key]
        if src.shape != dst.shape:
            raise ValueError(
                f"shape mismatch for {key!r}: state has {tuple(src.shape)}, model {tuple(dst.shape)}"
            )
        dst.copy_(src)
    return model


def _equal_chunks(n: int, batch_size: int) -> list[slice]:
    """Split range(n) into ceil(n / batch_size) contiguous chunks whose sizes differ by at most one."""
    if n == 0:
        return []
    count = max(1, math.ceil(n / max(1, batch_size)))
    base, rest = divmod(n, count)
    slices, start = [], 0
    for i in range(count):
        size = base + (1 if i < rest else 0)
        slices.append(slice(start, start + size))
        start += size
    return slices


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x_train: Tensor, batch_size: int | None = None) -> nn.Module:
    """Recompute the BatchNorm running statistics of ``model`` from training inputs, in place.

    docs/method.md §7 leaves BN statistics along paths open; Toroid recomputes them.  Every
    BN layer's statistics are reset and re-estimated in one deterministic pass over
    ``x_train`` (in its order) with ``momentum=None``, i.e. the cumulative average of the
    per-batch statistics.  Batches have (almost) equal sizes, so with a single batch the
    statistics are the exact full-data train-mode statistics.  The model is returned in eval
    mode; momentum values are restored.
    """
    bns = batchnorm_modules(model)
    model.eval()
    if not bns:
        return model
    device = _model_device(model)
    with _cumulative_bn_statistics(model, bns):
        for sl in _equal_chunks(len(x_train), batch_size or len(x_train)):
            model(x_train[sl].to(device))
    return model


@contextmanager
def _cumulative_bn_statistics(model: nn.Module, bns: Sequence[_BatchNorm]) -> Iterator[None]:
    """Put BN layers in cumulative-statistics train mode for one pass, then restore them."""
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        yield None
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
            m.eval()


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


def _metrics(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Number of errors and summed loss of one batch (cross-entropy; logistic for one output)."""
    if logits.dim() == 1 or logits.shape[-1] == 1:
        score = logits.reshape(logits.shape[0], -1)[:, 0] if logits.dim() > 1 else logits
        errors = ((score > 0).long() != y).sum()
        loss = F.binary_cross_entropy_with_logits(score, y.to(score.dtype), reduction="sum")
        return errors, loss
    errors = (logits.argmax(dim=-1) != y).sum()
    loss = F.cross_entropy(logits.float(), y, reduction="sum")
    return errors, loss


class Evaluator:
    """Fast error / loss evaluation of many parameter points of one architecture on one dataset.

    Parameters
    ----------
    model_template:
        Any model of the architecture (its parameters are irrelevant; a private working
        copy is made once).
    dataset:
        Object with ``x_train, y_train, x_test, y_test`` tensors (a ``data.Dataset``).
    device:
        Defaults to ``device.default_device()``.
    batch_size:
        Evaluation batch size; default: as large as an activation-memory budget allows
        (512 MiB on CPU, a quarter of free GPU memory), up to the whole split.
    train_indices:
        Evaluate the "train" split on this subset only (e.g. a stratified subsample).
    """

    def __init__(
        self,
        model_template: nn.Module,
        dataset: Dataset | Any,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
        *,
        train_indices: Tensor | Sequence[int] | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.model = copy.deepcopy(model_template).to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        x_train, y_train = self._check_split(dataset, "train")
        x_test, y_test = self._check_split(dataset, "test")
        if train_indices is not None:
            idx = torch.as_tensor(train_indices, dtype=torch.long)
            x_train, y_train = x_train[idx], y_train[idx]
        self.data: dict[str, tuple[Tensor, Tensor]] = {
            "train": (x_train.to(self.device, torch.float32), y_train.to(self.device, torch.long)),
            "test": (x_test.to(self.device, torch.float32), y_test.to(self.device, torch.long)),
        }
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.batch_size = int(batch_size) if batch_size is not None else self._auto_batch_size()
        self.has_bn = has_batchnorm(self.model)
        probe = self.data["train"][0][:2] if len(self.data["train"][0]) else self.data["test"][0][:2]
        self.first_layer = _find_first_layer(self.model, probe) if len(probe) else None
        self._stack_ok: bool | None = None

    @staticmethod
    def _check_split(dataset: Any, split: str) -> tuple[Tensor, Tensor]:
        try:
            x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        except AttributeError as exc:
            raise ValueError(
                f"dataset must have x_{split} and y_{split} tensors (use toroid.worker.landscape.data.load_dataset)"
            ) from exc
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x_{split} has {x.shape[0]} rows but y_{split} has {y.shape[0]} labels")
        return x, y

    def _auto_batch_size(self) -> int:
        n = max(len(self.data["train"][0]), len(self.data["test"][0]), 1)
        probe = self.data["train"][0][:2] if len(self.data["train"][0]) else self.data["test"][0][:2]
        if len(probe) == 0:
            return 1
        numel = [probe[0].numel()]

        def hook(_m: nn.Module, _a: Any, out: Any) -> None:
            if isinstance(out, Tensor):
                numel.append(out[0].numel())

        handles = [m.register_forward_hook(hook) for m in self.model.modules() if not list(m.children())]
        try:
            with torch.inference_mode():
                self.model(probe)
        finally:
            for h in handles:
                h.remove()
        per_sample = 4 * 2 * sum(numel)  # float32, plus room for temporaries
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = free // 4
        else:
            budget = _CPU_ACTIVATION_BUDGET
        return int(min(n, max(64, budget // max(per_sample, 1))))

    # ------------------------------------------------------------------ single points
    def slices(self, split: str) -> list[slice]:
        """Evaluation batches of ``split`` (contiguous, almost equal sizes)."""
        return _equal_chunks(len(self.data[split][0]), self.batch_size)

    @staticmethod
    def _splits(split: Split) -> tuple[str, ...]:
        if split == "both":
            return ("train", "test")
        if split in ("train", "test"):
            return (split,)
        raise ValueError(f"split must be 'train', 'test' or 'both', got {split!r}")

    def run(
        self, model: nn.Module, split: str, inject: tuple[_Injected, Any] | None = None
    ) -> tuple[float, float]:
        """(error, mean loss) of ``model`` (already loaded, eval mode) on ``split``.

        ``inject`` = (injected module, function slice -> first-layer output) feeds the
        factorized first layer.
        """
        x, y = self.data[split]
        if len(x) == 0:
            return math.nan, math.nan
        errors = torch.zeros((), dtype=torch.long, device=self.device)
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        with torch.inference_mode():
            for sl in self.slices(split):
                if inject is not None:
                    inject[0].value = inject[1](split, sl)
                e, lo = _metrics(model(x[sl]), y[sl])
                errors += e
                loss += lo.double()
            if inject is not None:
                inject[0].value = None
        n = len(x)
        return float(errors) / n, float(loss) / n

    def recalibrate(self, model: nn.Module, inject: tuple[_Injected, Any] | None = None) -> None:
        """Recompute BN running statistics of the loaded ``model`` from the train split (in place)."""
        bns = batchnorm_modules(model)
        if not bns:
            return
        x = self.data["train"][0]
        if len(x) == 0:
            raise ValueError("cannot recompute BatchNorm statistics: the training split is empty")
        with torch.inference_mode():
            with _cumulative_bn_statistics(model, bns):
                for sl in self.slices("train"):
                    if inject is not None:
                        inject[0].value = inject[1]("train", sl)
                    model(x[sl])
            if inject is not None:
                inject[0].value = None

    def evaluate_state(
        self,
        state: nn.Module | Mapping[str, Tensor],
        split: Split = "both",
        *,
        recalibrate: bool = False,
    ) -> dict[str, float]:
        """Errors and mean losses of one network, e.g. ``{"train_error": .., "train_loss": ..}``.

        ``recalibrate=True`` recomputes BN running statistics from the training data first.
        """
        load_state(self.model, as_state(state))
        if recalibrate:
            self.recalibrate(self.model)
        out: dict[str, float] = {}
        for s in self._splits(split):
            out[f"{s}_error"], out[f"{s}_loss"] = self.run(self.model, s)
        return out

    def evaluate_many(
        self,
        states: Sequence[nn.Module | Mapping[str, Tensor]],
        split: Split = "both",
        *,
        recalibrate: bool = False,
    ) -> list[dict[str, float]]:
        """``evaluate_state`` for each of ``states`` (one reusable model, no copies)."""
        return [self.evaluate_state(s, split, recalibrate=recalibrate) for s in states]

    # ------------------------------------------------------------------ stacked (vmap)
    def stacking_supported(self) -> bool:
        """Whether ``evaluate_stacked`` works for this model (vmap over functional_call)."""
        if self._stack_ok is None:
            x = self.data["train"][0][:2] if len(self.data["train"][0]) else self.data["test"][0][:2]
            params = {k: v.unsqueeze(0).expand(2, *v.shape) for k, v in self.model.named_parameters()}
            try:
                logits = self._stacked_logits(params, x)
                with torch.inference_mode():
                    ref = self.model(x)
                self._stack_ok = bool(torch.allclose(logits[0], ref, atol=1e-5, rtol=1e-4))
            except (RuntimeError, NotImplementedError, ValueError, TypeError):
                self._stack_ok = False
        return self._stack_ok

    def _stacked_logits(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        def call(p: Mapping[str, Tensor], inp: Tensor) -> Tensor:
            return torch.func.functional_call(self.model, dict(p), (inp,), strict=False)

        with torch.inference_mode():
            return torch.func.vmap(call, in_dims=(0, None))(params, x)

    def evaluate_stacked(
        self, params: Mapping[str, Tensor], split: Split = "train"
    ) -> list[dict[str, float]]:
        """Evaluate S parameter sets in one pass per batch (``torch.func.vmap``).

        ``params`` maps parameter names to tensors with a leading dimension S (entries not
        given are taken from the working model, whose buffers - BN running statistics - are
        shared by all S sets).  Returns one metrics dict per set.
        """
        sizes = {v.shape[0] for v in params.values()}
        if len(sizes) != 1:
            raise ValueError(f"all stacked parameters need the same leading dimension, got {sorted(sizes)}")
        count = sizes.pop()
        out: list[dict[str, float]] = [{} for _ in range(count)]
        sub_batch = max(16, self.batch_size // count)
        for s in self._splits(split):
            x, y = self.data[s]
            errors = torch.zeros(count, dtype=torch.long, device=self.device)
            loss = torch.zeros(count, dtype=torch.float64, device=self.device)
            for sl in _equal_chunks(len(x), sub_batch):
                logits = self._stacked_logits(params, x[sl])
                for i in range(count):
                    e, lo = _metrics(logits[i], y[sl])
                    errors[i] += e
                    loss[i] += lo.double()
            n = max(len(x), 1)
            for i in range(count):
                out[i][f"{s}_error"] = float(errors[i]) / n if len(x) else math.nan
                out[i][f"{s}_loss"] = float(loss[i]) / n if len(x) else math.nan
        return out

    # ------------------------------------------------------------------ combinations
    def combinations(
        self,
        anchors: Sequence[nn.Module | Mapping[str, Tensor]],
        *,
        factorize: bool = True,
        cache_budget: int | None = None,
    ) -> CombinationEvaluator:
        """A :class:`CombinationEvaluator` over the given anchor networks."""
        return CombinationEvaluator(self, anchors, factorize=factorize, cache_budget=cache_budget)


Coefficients = Mapping[str, Tensor]


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
        first = evaluator.first_layer
        if factorize and first is not None:
            budget = cache_budget if cache_budget is not None else self._default_cache_budget()
            if self._cache_bytes(first) <= budget:
                self._setup_factorization(first)

    def _default_cache_budget(self) -> int:
        if self.evaluator.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.evaluator.device)
            return free // 3
        return _CPU_CACHE_BUDGET

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
                prods = torch.empty((len(self.anchors), len(x), *shape), device=ev.device)  # (M, N, out, ...)
                for m, anchor in enumerate(self.anchors):
                    for sl in ev.slices(split):
                        prods[m, sl] = self._product(first, x[sl], anchor[first.weight])
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
        some = next(iter(self._products.values()))
        extra_dims = some.dim() - 3  # spatial dimensions of conv outputs
        c = c.reshape(c.shape[0], 1, out_dim, *([1] * extra_dims))
        b = bias.reshape(1, out_dim, *([1] * extra_dims)) if bias is not None else None

        def output(split: str, sl: slice) -> Tensor:
            prods = self._products[split]
            h = torch.mul(prods[0, sl], c[0]) if b is None else torch.addcmul(b, prods[0, sl], c[0])
            for i in range(1, prods.shape[0]):
                h.addcmul_(prods[i, sl], c[i])
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


def combine_states(
    states: Sequence[Mapping[str, Tensor]], coefs: Coefficients, keys: Sequence[str] | None = None
) -> dict[str, Tensor]:
    """sum_m coefs[key][m] (.) states[m][key] for each key (of ``keys``, default all of states[0]).

    ``coefs[key]`` has shape (M,) (one coefficient per state) or (M, rows) (one per state and
    unit, i.e. per slice along dim 0).  Coefficients are given in float64 and applied in the
    tensor's dtype (a coefficient 1 or 0 reproduces a state exactly).  Keys without
    coefficients are taken from ``states[0]`` (not copied).
    """
    m_count = len(states)
    out: dict[str, Tensor] = {}
    for k in keys if keys is not None else list(states[0].keys()):
        ref = states[0][k]
        c = coefs.get(k)
        if c is None:
            out[k] = ref
            continue
        c = torch.as_tensor(c, dtype=torch.float64)
        if c.dim() == 0 or c.dim() > 2 or c.shape[0] != m_count:
            raise ValueError(f"coefficients for {k!r} must have shape (M,) or (M, rows) with M={m_count}")
        if c.dim() == 2 and (ref.dim() == 0 or c.shape[1] != ref.shape[0]):
            raise ValueError(
                f"per-unit coefficients for {k!r} have {c.shape[1]} rows, the tensor has shape {tuple(ref.shape)}"
            )
        if c.dim() == 1:  # one scalar per state: scaled adds, no coefficient tensors
            weights = [float(v) for v in c]
            total = torch.mul(states[0][k], weights[0])
            for i in range(1, m_count):
                total.add_(states[i][k], alpha=weights[i])
        else:  # one coefficient per state and unit (slice along dim 0)
            per_unit = c.to(device=ref.device, dtype=ref.dtype).reshape(m_count, -1, *([1] * (ref.dim() - 1)))
            total = torch.mul(states[0][k], per_unit[0])
            for i in range(1, m_count):
                total.addcmul_(states[i][k], per_unit[i])
        out[k] = total
    return out
