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
  ``torch.func.vmap`` (used for noisy copies on GPUs).

The state helpers (:mod:`toroid.worker.landscape.states`) and the combination evaluator
(:mod:`toroid.worker.landscape.combination`) are re-exported here for the code that imports them
from this module.
"""

from __future__ import annotations

import copy
import math
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
        self.model = set_mode(copy.deepcopy(model_template).to(self.device), False)
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
