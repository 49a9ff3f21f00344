"""Flatness of a minimum: the local energy (docs/method.md §6).

    dE_train(w, sigma) = E_z[ E_train(w + sigma * z (.) w) ] - E_train(w),   z ~ N(0, I)

The noise is multiplicative (each parameter is perturbed in proportion to itself), so the
measure is invariant under the per-unit rescaling symmetry and needs no normalization.
E_train is the training *error* (fraction misclassified).  BatchNorm running statistics stay
fixed and the network is in eval mode.  For binary networks a random fraction eps of the
binary weights is flipped instead (docs/method.md §6, last line).

Two modes:

* ``exact``: full training set, a fixed number of noise samples per sigma (the paper: 100);
* ``fast`` (default): a stratified subsample of the training set (``subsample``, 2048) and,
  for each sigma, noise samples are drawn until the standard error of the mean is below
  ``tolerance`` (after ``min_samples``), up to ``samples``.  E_train(w) is evaluated on the
  same subsample, so dE(w, 0) = 0 exactly and the difference is paired.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from toroid.worker.landscape.device import resolve_device
from toroid.worker.landscape.evaluate import Evaluator
from toroid.worker.landscape.graph import is_binary
from toroid.worker.landscape.nets import model_spec
from toroid.worker.landscape.results import LocalEnergy
from toroid.worker.landscape.states import load_state

if TYPE_CHECKING:
    from toroid.worker.landscape.data import Dataset

__all__ = [
    "DEFAULT_SIGMAS",
    "architecture_family",
    "binary_weight_keys",
    "default_sigmas",
    "local_energy",
    "noise_keys",
    "stratified_indices",
]

Progress = Callable[[float, dict[str, Any]], None]

#: Default sigma grids (8 values including 0) per architecture family, docs/method.md §6:
#: MLP 0-0.5, LeNet 0-0.25, VGG16-BN 0-0.05 (also used for other BatchNorm conv nets such as
#: ResNets).  Binary networks: flip fractions 0-0.1 (the paper does not state its range).
DEFAULT_SIGMAS: dict[str, list[float]] = {
    "mlp": np.linspace(0.0, 0.5, 8).tolist(),
    "lenet": np.linspace(0.0, 0.25, 8).tolist(),
    "vgg": np.linspace(0.0, 0.05, 8).tolist(),
    "binary": np.linspace(0.0, 0.1, 8).tolist(),
}


_FAMILY_OF_ARCHITECTURE = {"mlp": "mlp", "lenet": "lenet", "vgg": "vgg", "resnet": "vgg"}


def architecture_family(model: nn.Module) -> str:
    """The sigma family of ``model``: ``binary``, ``mlp``, ``lenet`` or ``vgg``.

    Models built by :func:`toroid.worker.landscape.nets.build_model` are classified by their
    architecture name (ResNets use the VGG range, both being BatchNorm conv nets); other
    modules by structure: conv with BatchNorm -> vgg, conv -> lenet, otherwise mlp.
    """
    if is_binary(model):
        return "binary"
    spec = model_spec(model)
    if spec is not None and spec.get("name") in _FAMILY_OF_ARCHITECTURE:
        return _FAMILY_OF_ARCHITECTURE[spec["name"]]
    modules = list(model.modules())
    has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in modules)
    has_bn = any(isinstance(m, _BatchNorm) for m in modules)
    if has_conv and has_bn:
        return "vgg"
    if has_conv:
        return "lenet"
    return "mlp"


def default_sigmas(model: nn.Module) -> list[float]:
    """The default sigma (or flip fraction) grid for ``model`` (see ``DEFAULT_SIGMAS``)."""
    return list(DEFAULT_SIGMAS[architecture_family(model)])


def noise_keys(model: nn.Module, noise_on: str = "all") -> list[str]:
    """Names of the parameters that receive multiplicative noise.

    ``all`` (Toroid's default; the paper is silent): every floating parameter - weights,
    biases, BatchNorm affine.  ``weights``: only weight tensors of Linear/Conv layers
    (parameters with two or more dimensions).  Buffers (BN running statistics) never get noise.
    """
    if noise_on not in ("all", "weights"):
        raise ValueError(f"noise_on must be 'all' or 'weights', got {noise_on!r}")
    keys = []
    for name, p in model.named_parameters():
        if not p.is_floating_point():
            continue
        if noise_on == "weights" and p.dim() < 2:
            continue
        keys.append(name)
    return keys


def binary_weight_keys(model: nn.Module) -> list[str]:
    """Names of the latent weight tensors of the binary layers (modules with ``binary = True``)."""
    keys = []
    for name, module in model.named_modules():
        if getattr(module, "binary", False) is True and isinstance(getattr(module, "weight", None), Tensor):
            keys.append(f"{name}.weight" if name else "weight")
    return keys


def stratified_indices(labels: Tensor, size: int, seed: int = 0) -> Tensor:
    """A seeded subsample of ``size`` indices with the class proportions of ``labels``.

    Each class gets floor(size * n_c / N) indices, the remaining ones go to the classes with
    the largest fractional parts (ties by class order); indices are returned sorted.
    """
    y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    n = len(y)
    if size <= 0:
        raise ValueError(f"subsample size must be positive, got {size}")
    if size >= n:
        return torch.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = size * counts / n
    take = np.floor(quota).astype(int)
    remainder = size - int(take.sum())
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:remainder]] += 1
    chosen = [rng.permutation(np.flatnonzero(y == c))[:t] for c, t in zip(classes, take, strict=True)]
    return torch.from_numpy(np.sort(np.concatenate(chosen))).long()


def _check_sigmas(sigmas: Sequence[float], binary: bool) -> list[float]:
    values = [float(s) for s in sigmas]
    if not values:
        raise ValueError("sigmas must contain at least one value")
    for s in values:
        if not math.isfinite(s) or s < 0:
            raise ValueError(f"sigmas must be finite and >= 0, got {s}")
        if binary and s > 1:
            raise ValueError(f"flip fractions of a binary network must lie in [0, 1], got {s}")
    return values


def local_energy(
    model: nn.Module,
    dataset: Dataset | Any,
    sigmas: Sequence[float] | None = None,
    samples: int | None = None,
    noise_on: Literal["all", "weights"] = "all",
    mode: Literal["fast", "exact"] = "fast",
    tolerance: float = 0.005,
    subsample: int | None = 2048,
    seed: int = 0,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
    *,
    min_samples: int = 8,
    stack: int | None = None,
    batch_size: int | None = None,
) -> LocalEnergy:
    """Local energy dE_train(w, sigma) of ``model`` for each sigma (docs/method.md §6).

    Parameters
    ----------
    sigmas:
        Noise strengths (flip fractions for binary networks); default per architecture
        family, :data:`DEFAULT_SIGMAS`.
    samples:
        Noise samples per sigma: exactly this many in ``exact`` mode, at most this many in
        ``fast`` mode.  Default 100 (the paper), 10 for binary networks.
    noise_on:
        ``all`` (weights, biases, BN affine) or ``weights`` (Linear/Conv weights only).
        Binary networks: always the binary weights.
    mode:
        ``exact`` (full training set, fixed ``samples``) or ``fast`` (stratified
        ``subsample`` of the training set; stop once stderr < ``tolerance``, after at least
        ``min_samples``).
    tolerance:
        Target standard error in fast mode, as a fraction (0.005 = 0.5 percentage points).
    stack:
        Noisy copies evaluated per pass with ``torch.func.vmap``; default 16 on GPU, 1 on CPU
        (where stacking gives no speed-up).
    progress:
        Called after each sigma with the fraction done and that sigma's values.

    Returns a :class:`LocalEnergy` with mean, std over samples (the paper's error bars) and
    the standard error of the mean per sigma; ``samples`` holds the counts actually drawn.
    """
    if mode not in ("fast", "exact"):
        raise ValueError(f"mode must be 'fast' or 'exact', got {mode!r}")
    if not (isinstance(tolerance, int | float) and tolerance > 0):
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
    if min_samples < 2:
        raise ValueError(
            f"min_samples must be at least 2 (a standard error needs two samples), got {min_samples}"
        )
    binary = is_binary(model)
    n_samples = samples if samples is not None else (10 if binary else 100)
    if n_samples < 1:
        raise ValueError(f"samples must be a positive integer, got {n_samples}")
    sigma_list = _check_sigmas(default_sigmas(model) if sigmas is None else sigmas, binary)
    dev = resolve_device(device)

    train_indices = None
    used_subsample: int | None = None
    if mode == "fast" and subsample is not None:
        n_train = len(dataset.y_train)
        if subsample < n_train:
            train_indices = stratified_indices(dataset.y_train, subsample, seed)
            used_subsample = int(subsample)
    evaluator = Evaluator(model, dataset, dev, batch_size, train_indices=train_indices)
    base = evaluator.evaluate_state(model, "both")
    if train_indices is not None:
        full = Evaluator(model, dataset, dev, batch_size).evaluate_state(model, "train")
        base_train_full = full["train_error"]
    else:
        base_train_full = base["train_error"]
    base_train = base["train_error"]

    state = {k: v.detach().to(dev) for k, v in model.state_dict().items()}
    keys = binary_weight_keys(model) if binary else noise_keys(model, noise_on)
    if not keys:
        raise ValueError("the model has no parameters to perturb")
    if stack is None:
        stack = 16 if dev.type == "cuda" else 1
    use_stack = stack > 1 and not binary and evaluator.stacking_supported()

    means, stds, stderrs, counts = [], [], [], []
    for i, sigma in enumerate(sigma_list):
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(seed) * 1_000_003 + i)
        diffs: list[float] = []
        if sigma > 0:
            while len(diffs) < n_samples:
                if mode == "fast" and len(diffs) >= min_samples:
                    if _stderr(diffs) < tolerance:
                        break
                if use_stack:
                    chunk = min(n_samples - len(diffs), stack)
                    params = _stacked_noise(state, keys, sigma, chunk, gen)
                    errors = [r["train_error"] for r in evaluator.evaluate_stacked(params, "train")]
                else:
                    noisy = _flipped(state, keys, sigma, gen) if binary else _noisy(state, keys, sigma, gen)
                    load_state(evaluator.model, noisy)
                    errors = [evaluator.run(evaluator.model, "train")[0]]
                diffs.extend(e - base_train for e in errors)
        arr = np.asarray(diffs, dtype=np.float64)
        mean = float(arr.mean()) if len(arr) else 0.0
        std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        err = std / math.sqrt(len(arr)) if len(arr) > 1 else 0.0
        means.append(mean)
        stds.append(std)
        stderrs.append(err)
        counts.append(len(arr))
        if progress is not None:
            progress(
                (i + 1) / len(sigma_list),
                {"sigma": sigma, "mean": mean, "std": std, "stderr": err, "samples": len(arr)},
            )
    extra: dict[str, Any] = {
        "seed": int(seed),
        "min_samples": int(min_samples),
        "tolerance": float(tolerance),
    }
    if train_indices is not None:
        extra["base_train_error_subsample"] = base_train
    return LocalEnergy(
        sigmas=sigma_list,
        mean=means,
        std=stds,
        stderr=stderrs,
        samples=counts,
        base_train_error=base_train_full,
        base_test_error=base["test_error"],
        noise_on="binary_weights" if binary else noise_on,
        mode=mode,
        subsample=used_subsample,
        binary=binary,
        extra=extra,
    )


def _stderr(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.std(ddof=1) / math.sqrt(len(arr)))


def _noisy(state: Mapping[str, Tensor], keys: Sequence[str], sigma: float, gen: torch.Generator) -> dict:
    """One noisy copy: w + sigma z (.) w on ``keys``, everything else unchanged."""
    out = dict(state)
    for k in keys:
        w = state[k]
        z = torch.randn(w.shape, generator=gen, device=w.device, dtype=w.dtype)
        out[k] = w + sigma * z * w
    return out


def _stacked_noise(
    state: Mapping[str, Tensor], keys: Sequence[str], sigma: float, count: int, gen: torch.Generator
) -> dict[str, Tensor]:
    """``count`` noisy copies of the parameters ``keys`` stacked along a new leading dimension.

    The noise is drawn copy by copy in the order :func:`_noisy` draws it, so stacked and
    one-at-a-time evaluation see the same noise for the same seed.
    """
    copies = [_noisy(state, keys, sigma, gen) for _ in range(count)]
    return {k: torch.stack([c[k] for c in copies]) for k in keys}


def _flipped(state: Mapping[str, Tensor], keys: Sequence[str], fraction: float, gen: torch.Generator) -> dict:
    """One copy with round(fraction * N) of the N binary weights flipped (sign negated), chosen uniformly."""
    sizes = [state[k].numel() for k in keys]
    total = sum(sizes)
    count = int(round(fraction * total))
    out = dict(state)
    if count == 0:
        return out
    device = state[keys[0]].device
    chosen = torch.randperm(total, generator=gen, device=device)[:count]
    flat = torch.cat([state[k].reshape(-1) for k in keys])
    picked = flat[chosen]
    # binarize maps w >= 0 to +1: a zero latent weight is flipped to -1, not to -0.0 (= +1)
    flat[chosen] = torch.where(picked == 0, -torch.ones_like(picked), -picked)
    start = 0
    for k, size in zip(keys, sizes, strict=True):
        out[k] = flat[start : start + size].reshape(state[k].shape)
        start += size
    return out
