"""Flatness of a minimum: the local energy (docs/method.md §6).

    dE_train(w, sigma) = E_z[ E_train(w + sigma * z (.) w) ] - E_train(w),   z ~ N(0, I)

The noise is multiplicative (each parameter is perturbed in proportion to itself), so the
measure is invariant under the per-unit rescaling symmetry and needs no normalization.
E_train is the training *error* (fraction misclassified).  BatchNorm running statistics stay
fixed and the network is in eval mode.  For binary networks a random fraction eps of the
binary weights is flipped instead (docs/method.md §6, last line).

Three modes:

* ``sequential`` (default): full training set; for each sigma, noise samples are drawn in batches
  of ``sample_batch`` (16) until the standard error of the mean is at most
  max(``tolerance``, ``rel_tolerance`` x |mean|) (0.05 percentage points or 10% of the value),
  after at least ``min_samples`` (16) and at most ``max_samples`` (1000); ``capped`` says per
  sigma whether the cap stopped it before the target held;
* ``exact``: full training set, a fixed number of noise samples per sigma (the paper: 100);
* ``fast``: a stratified subsample of the training set (``subsample``, 2048) and, for each
  sigma, noise samples are drawn until the standard error of the mean is below ``tolerance``
  (0.5 percentage points, after ``min_samples`` = 8), up to ``samples``.  E_train(w) is evaluated
  on the same subsample, so dE(w, 0) = 0 exactly and the difference is paired.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

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
    "MODES",
    "SEQUENTIAL",
    "Sequential",
    "architecture_family",
    "binary_weight_keys",
    "default_sigmas",
    "local_energy",
    "noise_keys",
    "precision_reached",
    "sample_until",
    "se_target",
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


#: The modes of :func:`local_energy` (docs/method.md §6); the first is the default.
MODES = ("sequential", "exact", "fast")

#: The sequential mode's defaults (docs/method.md §6): a standard error of at most 0.05
#: percentage points or 10% of the value, whichever is larger, from at least 16 and at most
#: 1000 noise samples per sigma, drawn 16 at a time.
SEQUENTIAL = {"tolerance": 0.0005, "rel_tolerance": 0.1, "min_samples": 16, "max_samples": 1000, "batch": 16}
#: The fast mode's defaults: standard error below 0.5 points, after at least 8 samples.
FAST = {"tolerance": 0.005, "min_samples": 8}


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


def se_target(mean: float, tolerance: float, rel_tolerance: float = 0.0) -> float:
    """The standard error a local-energy mean must reach: max(``tolerance``, ``rel_tolerance`` x |mean|)."""
    return max(float(tolerance), float(rel_tolerance) * abs(float(mean)))


def precision_reached(values: Sequence[float], tolerance: float, rel_tolerance: float = 0.0,
                      min_samples: int = 2) -> bool:
    """Whether ``values`` (noise-sample differences of one sigma) are enough: at least ``min_samples``
    of them and a standard error of their mean (ddof = 1) at most :func:`se_target` of their mean."""
    if len(values) < max(2, min_samples):
        return False
    return _stderr(values) <= se_target(float(np.mean(values)), tolerance, rel_tolerance)


class Sequential(NamedTuple):
    """The draws of one sigma by :func:`sample_until`: the values, and whether the cap stopped the
    draws before the precision target held."""

    values: list[float]
    capped: bool


def sample_until(
    draw: Callable[[int], Sequence[float]],
    *,
    tolerance: float,
    rel_tolerance: float = 0.0,
    min_samples: int = SEQUENTIAL["min_samples"],
    max_samples: int = SEQUENTIAL["max_samples"],
    batch: int = SEQUENTIAL["batch"],
) -> Sequential:
    """Sequential sampling of one sigma (docs/method.md §6): ``draw(k)`` returns ``k`` new values;
    batches of ``batch`` are drawn (the first one up to ``min_samples``) until
    :func:`precision_reached` holds, or ``max_samples`` values are in (the last batch is cut to the
    cap).  The rule is checked after every batch only, so the values depend on the draws alone."""
    if batch < 1 or max_samples < 1:
        raise ValueError(f"batch and max_samples must be positive integers, got {batch} and {max_samples}")
    values: list[float] = []
    while True:
        want = max(batch, min_samples - len(values))
        values.extend(float(v) for v in draw(min(want, max_samples - len(values))))
        if precision_reached(values, tolerance, rel_tolerance, min_samples):
            return Sequential(values, False)
        if len(values) >= max_samples:
            return Sequential(values, True)


def local_energy(
    model: nn.Module,
    dataset: Dataset | Any,
    sigmas: Sequence[float] | None = None,
    samples: int | None = None,
    noise_on: Literal["all", "weights"] = "all",
    mode: Literal["sequential", "exact", "fast"] = "sequential",
    tolerance: float | None = None,
    subsample: int | None = 2048,
    seed: int = 0,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
    *,
    min_samples: int | None = None,
    max_samples: int = SEQUENTIAL["max_samples"],
    rel_tolerance: float = SEQUENTIAL["rel_tolerance"],
    sample_batch: int = SEQUENTIAL["batch"],
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
        ``fast`` mode (unused by ``sequential``, see ``max_samples``).  Default 100 (the paper),
        10 for binary networks.
    noise_on:
        ``all`` (weights, biases, BN affine) or ``weights`` (Linear/Conv weights only).
        Binary networks: always the binary weights.
    mode:
        ``sequential`` (full training set; per sigma, batches of ``sample_batch`` noise
        samples until stderr <= max(``tolerance``, ``rel_tolerance`` x |mean|), after at least
        ``min_samples`` and at most ``max_samples``), ``exact`` (full training set, fixed
        ``samples``: the paper) or ``fast`` (stratified ``subsample`` of the training set; stop
        once stderr < ``tolerance``, after at least ``min_samples``, at most ``samples``).
    tolerance:
        Target standard error as a fraction: default 0.0005 (0.05 percentage points) in
        sequential mode, 0.005 (0.5 points) in fast mode; unused in exact mode.
    min_samples, max_samples, rel_tolerance, sample_batch:
        Sequential mode (``min_samples`` also fast mode: default 16 sequential, 8 fast); the
        result's ``capped`` flags the sigmas where ``max_samples`` stopped the draws first.
    stack:
        Noisy copies evaluated per pass with ``torch.func.vmap``; default 16 on GPU, 1 on CPU
        (where stacking gives no speed-up).
    progress:
        Called after each sigma with the fraction done and that sigma's values.

    Returns a :class:`LocalEnergy` with mean, std over samples (the paper's error bars) and
    the standard error of the mean per sigma; ``samples`` holds the counts actually drawn and
    ``capped`` whether the sample cap stopped a sigma before its precision target held.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    defaults = SEQUENTIAL if mode == "sequential" else FAST
    tolerance = defaults["tolerance"] if tolerance is None else tolerance
    min_samples = defaults["min_samples"] if min_samples is None else min_samples
    if not (isinstance(tolerance, int | float) and tolerance > 0):
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
    if min_samples < 2:
        raise ValueError(
            f"min_samples must be at least 2 (a standard error needs two samples), got {min_samples}"
        )
    if mode == "sequential":
        if not (isinstance(rel_tolerance, int | float) and rel_tolerance >= 0):
            raise ValueError(f"rel_tolerance must be a number >= 0, got {rel_tolerance!r}")
        if max_samples < min_samples:
            raise ValueError(f"max_samples ({max_samples}) must be at least min_samples ({min_samples})")
        if sample_batch < 1:
            raise ValueError(f"sample_batch must be a positive integer, got {sample_batch}")
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

    means, stds, stderrs, counts, capped = [], [], [], [], []
    for i, sigma in enumerate(sigma_list):
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(seed) * 1_000_003 + i)

        def draw(count: int, sigma: float = sigma, gen: torch.Generator = gen) -> list[float]:
            """``count`` new differences E_train(noisy) - E_train(w), drawn copy by copy in a fixed order."""
            out: list[float] = []
            while len(out) < count:
                if use_stack:
                    params = _stacked_noise(state, keys, sigma, min(count - len(out), stack), gen)
                    errors = [r["train_error"] for r in evaluator.evaluate_stacked(params, "train")]
                else:
                    noisy = _flipped(state, keys, sigma, gen) if binary else _noisy(state, keys, sigma, gen)
                    load_state(evaluator.model, noisy)
                    errors = [evaluator.run(evaluator.model, "train")[0]]
                out.extend(e - base_train for e in errors)
            return out

        diffs: list[float] = []
        hit_cap = False
        if sigma > 0 and mode == "sequential":
            diffs, hit_cap = sample_until(draw, tolerance=tolerance, rel_tolerance=rel_tolerance,
                                          min_samples=min_samples, max_samples=max_samples, batch=sample_batch)
        elif sigma > 0 and mode == "exact":
            diffs = draw(n_samples)
        elif sigma > 0:  # fast: checked before every draw (every stack of copies on a GPU)
            while len(diffs) < n_samples:
                if len(diffs) >= min_samples and _stderr(diffs) < tolerance:
                    break
                diffs.extend(draw(min(n_samples - len(diffs), stack if use_stack else 1)))
            hit_cap = len(diffs) > 1 and _stderr(diffs) >= tolerance
        arr = np.asarray(diffs, dtype=np.float64)
        mean = float(arr.mean()) if len(arr) else 0.0
        std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        err = std / math.sqrt(len(arr)) if len(arr) > 1 else 0.0
        means.append(mean)
        stds.append(std)
        stderrs.append(err)
        counts.append(len(arr))
        capped.append(bool(hit_cap))
        if progress is not None:
            progress(
                (i + 1) / len(sigma_list),
                {"sigma": sigma, "mean": mean, "std": std, "stderr": err, "samples": len(arr),
                 "capped": bool(hit_cap)},
            )
    extra: dict[str, Any] = {"seed": int(seed)}
    if mode != "exact":
        extra.update(min_samples=int(min_samples), tolerance=float(tolerance))
    if mode == "sequential":
        extra.update(rel_tolerance=float(rel_tolerance), max_samples=int(max_samples), sample_batch=int(sample_batch),
                     se_target=[se_target(m, tolerance, rel_tolerance) if s > 0 else 0.0
                                for m, s in zip(means, sigma_list, strict=True)])
    if train_indices is not None:
        extra["base_train_error_subsample"] = base_train
    return LocalEnergy(
        sigmas=sigma_list,
        mean=means,
        std=stds,
        stderr=stderrs,
        samples=counts,
        capped=capped,
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
