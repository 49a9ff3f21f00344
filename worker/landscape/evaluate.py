"""The one fast evaluator of the error landscape (docs/method.md §§6-7).

Every measure of Toroid (path profiles, sections, tori, local energy, one-bend paths) asks
the same question many times: what are the train and test error (fraction misclassified)
and mean cross-entropy loss of the network with parameters ``w``?  This module answers it
fast:

* the data live as one tensor per split on the device, evaluated in large batches under
  ``torch.inference_mode``;
* parameters are copied into one reusable working model (no deep copy per point);
* :func:`~toroid.worker.landscape.states.recalibrate_bn` recomputes BatchNorm running statistics
  from the training data (deterministic full pass, cumulative average);
* :class:`~toroid.worker.landscape.combination.CombinationEvaluator` evaluates points that are
  per-unit linear combinations of a few anchor networks (straight lines, geodesics, planes, tori).
  Because the first layer's pre-activations are linear in its weights,
  X W(x)^T = sum_m c_m (.) (X W_m^T), a path of K points costs M first-layer products (M = 2 for
  a path) instead of K;
* :meth:`Evaluator.evaluate_stacked` evaluates many parameter sets in one pass with
  ``torch.func.vmap`` (used for noisy copies on GPUs);
* the batch size and, for convolutional networks, the memory layout (channels-last or not) are
  measured, not guessed: a short calibration times a few candidates once per (architecture,
  input shape, device, threads) in a process and keeps the fastest (docs/performance.md,
  "Evaluator calibration"); conv nets on too few inputs to calibrate reuse an earlier calibration of
  the architecture or run channels-last in batches of ``SMALL_CONV_BATCH`` ("Small data sets");
  ReLUs that follow a Linear/Conv/BatchNorm inside an ``nn.Sequential`` run in place in the
  evaluator's private working copy, and such Linear layers (and the factorized first layer) write
  into output buffers reused from batch to batch (:meth:`Evaluator.forward`).

The state helpers (:mod:`toroid.worker.landscape.states`) and the combination evaluator
(:mod:`toroid.worker.landscape.combination`) are re-exported here for the code that imports them
from this module.
"""

from __future__ import annotations

import copy
import math
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toroid.worker.landscape import states
from toroid.worker.landscape.combination import CombinationEvaluator, FirstLayer, _find_first_layer, _Injected
from toroid.worker.landscape.device import default_device
from toroid.worker.landscape.states import (  # noqa: F401  (BNMode, Coefficients: kept importable from here)
    EXPORTED_BN_MESSAGE,
    BNMode,
    Coefficients,
    _cumulative_bn_statistics,
    _equal_chunks,
    as_state,
    batchnorm_modules,
    combine_states,
    has_batchnorm,
    is_exported,
    load_state,
    recalibrate_bn,
    set_mode,
)

if TYPE_CHECKING:
    from toroid.worker.landscape.data import Dataset

__all__ = ["CombinationEvaluator", "Evaluator", "FirstLayer", *states.__all__]

Split = Literal["train", "test", "both"]

_CPU_ACTIVATION_BUDGET = 512 * 2**20  # bytes of activations per evaluation batch on CPU

# Calibration (docs/performance.md, "Evaluator calibration"): candidate batch sizes per device and
# network family, and the inputs timed per candidate.  On one CPU thread, convolutions run fastest
# in batches of 64-256 (larger batches leave the caches) and fully connected networks in batches of
# 1,000-4,000; on GPUs larger batches keep the device busy.
_CALIBRATION_CANDIDATES = {
    ("cpu", True): (64, 128, 256),
    ("cpu", False): (512, 1024, 2048, 4096),
    ("cuda", True): (256, 1024, 4096),
    ("cuda", False): (1024, 4096, 16384),
}
#: Calibrate only when the splits hold at least this many inputs (below, a calibration would cost more
#: than it can save: see SMALL_CONV_BATCH for conv nets; other networks keep the budget rule).
CALIBRATION_MIN_INPUTS = 2048
#: Conv nets on the CPU with fewer inputs than CALIBRATION_MIN_INPUTS: the choice an earlier calibration
#: of the same architecture made in this process or, without one, channels-last in batches of this size
#: (what the calibration chose for LeNet and VGG11-BN/4 on 300-1,100 inputs per split, 1 thread;
#: NCHW in one batch ran 1.6-2x slower: docs/performance.md, "Small data sets").
SMALL_CONV_BATCH = 128
_CALIBRATIONS: dict[tuple, dict[str, Any]] = {}  # per process: (signature, input shape, device, threads) -> choice
_ARCH_CHOICES: dict[tuple, dict[str, Any]] = {}  # the latest free calibration per (signature, shape, device, threads)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_FRESH_OUTPUT = (nn.Linear, *_CONVS, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, _Injected)


def _inplace_relus(model: nn.Module) -> int:
    """Make ReLUs in place where their input is a fresh tensor nobody else reads (the working copy only).

    A ReLU at position i > 0 of an ``nn.Sequential`` whose previous module is a Linear, Conv,
    BatchNorm (or the injected first layer) receives that module's new output tensor, which only
    the ReLU reads: clamping it in place saves one allocation and one pass over the activations.
    Returns the number of ReLUs changed.
    """
    changed = 0
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.children())
        for prev, mod in zip(children, children[1:], strict=False):
            if type(mod) is nn.ReLU and not mod.inplace and type(prev) in _FRESH_OUTPUT:
                mod.inplace = True
                changed += 1
    return changed


class _Step:
    """One top-level module of a plain ``nn.Sequential``, run by :meth:`Evaluator.forward`.

    ``reuse`` marks a Linear whose output only an in-place ReLU and the module after it read: it
    writes into a buffer kept from batch to batch (``torch.addmm(..., out=)``, the kernel
    ``F.linear`` itself calls, so the values are identical) instead of allocating a fresh
    batch x width output per layer, batch and point (docs/performance.md, "MLP paths").
    """

    __slots__ = ("buffer", "module", "reuse")

    def __init__(self, module: nn.Module, reuse: bool) -> None:
        self.module = module
        self.reuse = reuse
        self.buffer: Tensor | None = None


def _plan(model: nn.Module) -> list[_Step] | None:
    """The steps of ``model`` when it is exactly an ``nn.Sequential`` (else None: call the model).

    A Linear is marked for output reuse when the module after it is an in-place ReLU (see
    :func:`_inplace_relus`) and the Linear occurs once in the whole model (a shared module would
    read the buffer it writes).
    """
    if type(model) is not nn.Sequential:
        return None
    children = list(model.children())
    if len(children) != len(model):  # a child registered twice at the top: keep the plain forward
        return None
    uses: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1
    steps = []
    for i, mod in enumerate(children):
        nxt = children[i + 1] if i + 1 < len(children) else None
        reuse = (
            type(mod) is nn.Linear
            and type(nxt) is nn.ReLU
            and nxt.inplace
            and uses[id(mod)] == 1
            and mod.weight.dtype == torch.float32
        )
        steps.append(_Step(mod, reuse))
    return steps


def _signature(model: nn.Module) -> tuple:
    """The architecture's identity for the calibration cache: module names, types and parameter shapes."""
    return tuple(
        (name, type(m).__name__, tuple(tuple(p.shape) for p in m.parameters(recurse=False)))
        for name, m in model.named_modules()
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
        calibrate: bool | None = None,
        channels_last: bool | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.model = set_mode(copy.deepcopy(model_template).to(self.device), False)
        for p in self.model.parameters():
            p.requires_grad_(False)
        _inplace_relus(self.model)
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
        # BN statistics are recomputed in batches of this size, never the calibrated one: in train mode a
        # batch's statistics shape the next layers' inputs, so the result must not depend on a timing
        self.recalibration_batch_size = self.batch_size
        self.memory_format = torch.contiguous_format
        self.calibration: dict[str, Any] | None = None
        n_inputs = len(self.data["train"][0]) + len(self.data["test"][0])
        small_conv = (
            calibrate is None and batch_size is None and channels_last is None and n_inputs < CALIBRATION_MIN_INPUTS
            and self.device.type == "cpu" and self._can_go_channels_last()
        )
        if calibrate is None:
            calibrate = batch_size is None and n_inputs >= CALIBRATION_MIN_INPUTS
        if calibrate:
            self.calibration = self._calibrate(fixed_batch=batch_size is not None, channels_last=channels_last)
        elif small_conv:
            self.calibration = self._small_data_choice()
        if self.calibration is not None:
            self.batch_size = self.calibration["batch_size"]
            if self.calibration["channels_last"]:
                self._use_channels_last()
        elif channels_last:
            self._use_channels_last()
        self.has_bn = has_batchnorm(self.model)
        probe = self.data["train"][0][:2] if len(self.data["train"][0]) else self.data["test"][0][:2]
        self.first_layer = _find_first_layer(self.model, probe) if len(probe) else None
        self._stack_ok: bool | None = None
        self._plans: weakref.WeakKeyDictionary[nn.Module, list[_Step] | None] = weakref.WeakKeyDictionary()

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

    def _can_go_channels_last(self) -> bool:
        x = self.data["train"][0] if len(self.data["train"][0]) else self.data["test"][0]
        return x.dim() == 4 and any(isinstance(m, nn.Conv2d) for m in self.model.modules())

    def _use_channels_last(self) -> None:
        """Inputs and 4-d weights in the channels-last layout (same values, faster convolutions on oneDNN)."""
        if not self._can_go_channels_last():
            return
        self.model = self.model.to(memory_format=torch.channels_last)
        self.data = {
            s: (x.contiguous(memory_format=torch.channels_last), y) for s, (x, y) in self.data.items()
        }
        self.memory_format = torch.channels_last

    def _arch_key(self, x: Tensor) -> tuple:
        threads = torch.get_num_threads() if self.device.type == "cpu" else 0
        return (_signature(self.model), tuple(x.shape[1:]), str(self.device), threads)

    def _small_data_choice(self) -> dict[str, Any]:
        """Batch size and layout of a conv net on too few inputs to calibrate (see SMALL_CONV_BATCH)."""
        x = self.data["train"][0] if len(self.data["train"][0]) >= len(self.data["test"][0]) else self.data["test"][0]
        earlier = _ARCH_CHOICES.get(self._arch_key(x))
        if earlier is not None:
            batch, fmt, source = earlier["batch_size"], earlier["channels_last"], "earlier calibration"
        else:
            batch, fmt, source = SMALL_CONV_BATCH, True, "small-data rule"
        return {
            "batch_size": int(max(1, min(batch, self.batch_size))),
            "channels_last": bool(fmt),
            "sample": 0,
            "seconds_per_input": {},
            "source": source,
        }

    def _calibrate(self, *, fixed_batch: bool, channels_last: bool | None) -> dict[str, Any]:
        """Time a few (batch size, layout) candidates once per architecture, input shape, device and threads.

        Each candidate evaluates the same ``sample`` inputs (a plain forward pass, as every point of
        a path or noise sample does) twice; the fastest of the two runs counts.  The choice is cached
        in this process.  Batch sizes never exceed the activation-memory budget of
        :meth:`_auto_batch_size`; ``fixed_batch`` keeps the given batch size and calibrates only the
        layout; ``channels_last`` True/False fixes the layout.
        """
        x = self.data["train"][0] if len(self.data["train"][0]) >= len(self.data["test"][0]) else self.data["test"][0]
        conv = self._can_go_channels_last()
        threads = torch.get_num_threads() if self.device.type == "cpu" else 0
        formats = [False, True] if conv else [False]
        if channels_last is not None:
            formats = [bool(channels_last) and conv]
        cap = self.batch_size
        has_conv = any(isinstance(m, _CONVS) for m in self.model.modules())
        sizes = [cap] if fixed_batch else [
            b for b in _CALIBRATION_CANDIDATES[("cuda" if self.device.type == "cuda" else "cpu", has_conv)] if b < cap
        ] or [cap]
        if not fixed_batch and cap < 2 * max(sizes) and cap not in sizes:
            sizes.append(cap)  # the budget allows less than the largest candidate: try the cap itself
        key = (_signature(self.model), tuple(x.shape[1:]), str(self.device), threads, tuple(sizes), tuple(formats))
        cached = _CALIBRATIONS.get(key)
        if cached is not None:
            return dict(cached)
        sample = x[: min(len(x), max(512, max(sizes)))]
        if len(sample) == 0:  # nothing to time: keep the budget's batch size and the NCHW layout
            return {"batch_size": cap, "channels_last": False, "sample": 0, "seconds_per_input": {}}
        timings: dict[str, float] = {}
        best: tuple[float, int, bool] | None = None
        for fmt in formats:
            model = self.model
            xs = sample
            if fmt:
                model = copy.deepcopy(self.model).to(memory_format=torch.channels_last)
                xs = sample.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                for bs in sizes:
                    model(xs[: min(bs, 8)])  # warm-up: primitive creation for this layout
                    runs = []
                    for _ in range(2):
                        _sync(self.device)
                        start = time.perf_counter()
                        for sl in _equal_chunks(len(xs), bs):
                            model(xs[sl])
                        _sync(self.device)
                        runs.append(time.perf_counter() - start)
                    per_input = min(runs) / len(xs)
                    timings[f"{bs}{' channels_last' if fmt else ''}"] = per_input
                    if best is None or per_input < best[0]:
                        best = (per_input, bs, fmt)
        assert best is not None
        choice = {
            "batch_size": int(best[1]),
            "channels_last": bool(best[2]),
            "sample": len(sample),
            "seconds_per_input": timings,
            "source": "measured",
        }
        _CALIBRATIONS[key] = choice
        if not fixed_batch and len(formats) == 2:  # a free choice: small data sets of this architecture reuse it
            _ARCH_CHOICES[self._arch_key(x)] = choice
        return dict(choice)

    # ------------------------------------------------------------------ single points
    def forward(self, model: nn.Module, x: Tensor) -> Tensor:
        """``model(x)`` for evaluation (call under ``torch.inference_mode``), reusing Linear outputs.

        For a plain ``nn.Sequential`` the modules run one after the other as its own forward does;
        a Linear followed by an in-place ReLU writes into a buffer reused across batches (see
        :class:`_Step`).  The result is the same tensor values as ``model(x)``; a returned tensor
        may be such a buffer, valid until the next call.
        """
        if model not in self._plans:
            self._plans[model] = _plan(model)
        plan = self._plans[model]
        if plan is None:
            return model(x)
        for step in plan:
            mod = step.module
            if not step.reuse or x.dim() != 2 or x.dtype != torch.float32:
                x = mod(x)
                continue
            rows, width = x.shape[0], mod.out_features
            buf = step.buffer
            if buf is None or buf.shape[0] < rows or buf.device != x.device:
                buf = step.buffer = torch.empty((rows, width), device=x.device, dtype=x.dtype)
            out = buf[:rows]
            if mod.bias is None:
                x = torch.mm(x, mod.weight.t(), out=out)
            else:
                x = torch.addmm(mod.bias, x, mod.weight.t(), out=out)
        return x

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
                e, lo = _metrics(self.forward(model, x[sl]), y[sl])
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
                for sl in _equal_chunks(len(x), self.recalibration_batch_size):
                    if inject is not None:
                        inject[0].value = inject[1]("train", sl)
                    self.forward(model, x[sl])
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
