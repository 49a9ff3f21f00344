"""Samplers of minima with different flatness (docs/method.md §8): the one sampler registry.

``SAMPLERS`` maps a name to a :class:`SamplerSpec` (description, hyperparameters with defaults
and docs, the paper's values, whether binary networks are accepted, the training function):

==============  =============================================================================
``sgd``         SGD, Nesterov 0.9, lr 0.02, cosine: typical minima
``rsgd``        replicated SGD (5 coupled replicas, returns their center): flat minima
``adv``         adversarial initialization (Liu et al. 2020) then plain SGD: sharp minima
``sam``         Sharpness-Aware Minimization (Foret et al. 2021)
``entropy_sgd`` Entropy-SGD (Chaudhari et al. 2017)
``adam``        Adam, a plain baseline (continuous and binary networks)
``binary``      binary networks trained with the sgd / rsgd / adv variant (``variant``)
==============  =============================================================================

:func:`train_minimum` builds a network from the architecture registry, trains it with a
sampler and returns it with its provenance.  Every run is seeded: the initialization comes
from ``build_model(..., seed=seed)``, every other random stream (shuffling, replicas,
confusion data, Langevin noise) from a ``torch.Generator`` seeded with a seed derived from
``seed``, so on CPU the same seed, sampler and data give bit-identical weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from toroid.worker.landscape import CODE_VERSION
from toroid.worker.landscape.data import Dataset, load_dataset
from toroid.worker.landscape.device import resolve_device
from toroid.worker.landscape.nets import build_model, model_spec
from toroid.worker.landscape.registry import get_architecture
from toroid.worker.landscape.samplers import adam, adv, binary, entropy_sgd, rsgd, sam, sgd
from toroid.worker.landscape.samplers.base import Progress, SamplerSpec, TrainRun, validate_hparams

__all__ = ["SAMPLERS", "SamplerSpec", "resolve_hparams", "sampler_schema", "train_minimum"]

SAMPLERS: dict[str, SamplerSpec] = {
    "sgd": sgd.SPEC,
    "rsgd": rsgd.SPEC,
    "adv": adv.SPEC,
    "sam": sam.SPEC,
    "entropy_sgd": entropy_sgd.SPEC,
    "adam": adam.SPEC,
    "binary": binary.SPEC,
}


def _spec(name: str) -> SamplerSpec:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[name]


def resolve_hparams(name: str, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """All hyperparameters of sampler ``name`` with the defaults filled in (validated).

    Raises:
        ValueError: unknown sampler or hyperparameter (the message lists the valid ones), or a
            value of the wrong type / out of range.
    """
    return validate_hparams(name, _spec(name), hparams)


def sampler_schema(name: str) -> dict[str, Any]:
    """A JSON-able description of sampler ``name``: description, reference, whether binary networks
    are accepted, and per hyperparameter its default, doc, type, choices and the paper's value."""
    spec = _spec(name)
    return {
        "name": name,
        "description": spec.description,
        "reference": spec.reference,
        "binary_ok": spec.binary_ok,
        "binary_only": spec.binary_only,
        "hyperparameters": {
            key: {
                "default": h.default,
                "doc": h.doc,
                "type": h.kind.__name__,
                "choices": list(h.choices) if h.choices else None,
                "minimum": h.minimum,
                "optional": h.optional,
                "paper": spec.paper.get(key),
            }
            for key, h in spec.hyper.items()
        },
    }


def _as_dataset(dataset: Dataset | str | tuple[str, Mapping[str, Any]]) -> Dataset:
    if isinstance(dataset, str):
        return load_dataset(dataset)
    if isinstance(dataset, tuple) and len(dataset) == 2 and isinstance(dataset[0], str):
        return load_dataset(dataset[0], **dict(dataset[1]))
    if all(hasattr(dataset, a) for a in ("x_train", "y_train", "x_test", "y_test", "num_classes")):
        return dataset  # type: ignore[return-value]
    raise ValueError(
        "dataset must be a Dataset from toroid.worker.landscape.data.load_dataset, a dataset name such as 'digits', "
        f"or a tuple (name, options); got {type(dataset).__name__}"
    )


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def train_minimum(
    arch: str,
    config: Mapping[str, Any] | None,
    dataset: Dataset | str | tuple[str, Mapping[str, Any]],
    sampler: str = "sgd",
    hparams: Mapping[str, Any] | None = None,
    seed: int = 0,
    epochs: int | None = None,
    target_error: float | None = 0.0,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a minimum of architecture ``arch`` on ``dataset`` with ``sampler`` (docs/method.md §8).

    Args:
        arch, config: architecture registry name and config (missing keys take the defaults).
        dataset: a loaded :class:`~toroid.worker.landscape.data.Dataset`, a dataset name, or ``(name, options)``.
        sampler: a key of :data:`SAMPLERS`.
        hparams: sampler hyperparameters; missing ones take the sampler's defaults.
        seed: fixes the initialization and every random stream of the run.
        epochs: the epoch budget; overrides ``hparams["epochs"]`` (default: the sampler's small default;
            the paper trains 300 epochs).
        target_error: stop as soon as the train error of the minimizer is <= this after an epoch
            (``0.0``: at zero train error; ``None``: always run the whole budget).
        progress: called after every epoch with ``(fraction, {"epoch", "epochs", "train_loss",
            "train_error", "test_error"})`` (errors are fractions; ``train_loss`` is the full-pass
            cross-entropy); an exception raised by it stops training and propagates.
        device: defaults to :func:`toroid.worker.landscape.device.default_device`.

    Returns:
        ``(model, provenance)``: the minimizer on the CPU in eval mode, and a JSON-able dict with
        ``sampler``, ``hyperparameters`` (all, defaults filled), ``seed``, ``dataset`` (name and
        options), ``architecture`` (name and full config), ``epochs_run``, ``train_error``,
        ``test_error``, ``train_loss``, ``test_loss``, ``target_error``, ``stop_rule``
        (``"target_error"`` when the target stopped training, else ``"budget"``),
        ``target_reached_epoch`` (1-based, or None), ``history`` (per epoch),
        ``extra`` (sampler diagnostics), ``code_version``, ``device``, ``torch_version``.

    Raises:
        ValueError: unknown sampler, hyperparameter, architecture or dataset (the message lists the
            valid ones), bad values, or an architecture the sampler cannot train (binary vs continuous).
        FloatingPointError: the training loss became NaN or infinite.
    """
    spec = _spec(sampler)
    hp = validate_hparams(sampler, spec, hparams)
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        if hparams and "epochs" in hparams and hparams["epochs"] != epochs:
            raise ValueError(
                f"epochs={epochs} and hparams['epochs']={hparams['epochs']} disagree; give the budget once"
            )
        hp["epochs"] = int(epochs)
    if target_error is not None:
        if (
            isinstance(target_error, bool)
            or not isinstance(target_error, int | float)
            or not (0.0 <= target_error <= 1.0 and math.isfinite(target_error))
        ):
            raise ValueError(f"target_error must be a fraction in [0, 1] or None, got {target_error!r}")
        target_error = float(target_error)
    seed = _check_seed(seed)
    is_binary_arch = get_architecture(arch).binary  # ValueError naming the choices for an unknown name
    if is_binary_arch and not spec.binary_ok:
        ok = sorted(n for n, s in SAMPLERS.items() if s.binary_ok)
        raise ValueError(
            f"sampler {sampler!r} trains continuous networks only; architecture {arch!r} is binary: use one of "
            f"{ok} (e.g. sampler='binary' with hparams={{'variant': {sampler!r}}})"
        )
    if not is_binary_arch and spec.binary_only:
        ok = sorted(n for n, s in SAMPLERS.items() if not s.binary_only)
        raise ValueError(
            f"sampler {sampler!r} trains binary networks only; architecture {arch!r} is continuous: use one of {ok}"
        )
    data = _as_dataset(dataset)
    dev = resolve_device(device)

    def build(s: int) -> nn.Module:
        return build_model(arch, dict(config or {}), data, seed=s).to(dev)

    model = build(seed)
    run = TrainRun(
        sampler=sampler,
        model=model,
        build=build,
        dataset=data,
        hp=hp,
        seed=seed,
        epochs=hp["epochs"],
        target_error=target_error,
        progress=progress,
        device=dev,
    )
    trained = spec.fn(run).cpu().eval()
    final = run.history[-1]  # the minimizer's errors after its last epoch
    reached = next(
        (h["epoch"] for h in run.history if target_error is not None and h["train_error"] <= target_error), None
    )
    arch_spec = model_spec(trained) or model_spec(model) or {}
    provenance = {
        "sampler": sampler,
        "hyperparameters": copy.deepcopy(run.hp),
        "seed": seed,
        "dataset": {"name": data.name, "options": copy.deepcopy(dict(getattr(data, "options", {})))},
        "architecture": {"name": arch, "config": copy.deepcopy(arch_spec.get("config", dict(config or {})))},
        "epochs": run.epochs,
        "epochs_run": run.epochs_run,
        "target_error": target_error,
        # which rule ended training (docs/samplers.md): the target train error, or the whole epoch budget
        "stop_rule": "target_error" if reached is not None else "budget",
        "target_reached_epoch": reached,
        "train_error": final["train_error"],
        "test_error": final["test_error"],
        "train_loss": final["train_loss"],
        "test_loss": final["test_loss"],
        "history": run.history,
        "extra": dict(run.extra),
        "code_version": CODE_VERSION,
        "device": str(dev),
        "torch_version": torch.__version__,
    }
    return trained, provenance
