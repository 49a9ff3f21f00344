"""Shared machinery of the samplers of minima (docs/method.md §8).

Everything a sampler needs besides its update rule lives here, so that each sampler module
reads like its paper:

* :class:`SamplerSpec` - a registry entry: description, hyperparameters with defaults and
  one-line docs, the paper's values, whether binary networks are accepted, the training
  function;
* :class:`TrainRun` - what a training function receives (initialized model, data, validated
  hyperparameters, seed, budget, callbacks) and the per-epoch bookkeeping: evaluation with the
  one fast evaluator (:class:`toroid.worker.landscape.evaluate.Evaluator`), the progress callback,
  the stop at a target train error, the history;
* seeded mini-batch shuffling (``torch.Generator``, so the same seed gives bit-identical
  weights on CPU), the cosine annealing schedule, optimizers, the latent-weight clip of
  binary networks.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from toroid.worker.landscape.evaluate import Evaluator

if TYPE_CHECKING:
    from toroid.worker.landscape.data import Dataset

__all__ = [
    "Hyper",
    "Progress",
    "SamplerSpec",
    "TrainRun",
    "binary_latent_weights",
    "check_finite",
    "clip_latent",
    "cosine_lr",
    "derive_seed",
    "set_lr",
    "validate_hparams",
]

Progress = Callable[[float, dict[str, Any]], None]

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter: its default, a one-line doc and, for strings, the valid choices.

    ``kind`` is the accepted Python type (``int``, ``float``, ``bool`` or ``str``); ``minimum``
    (inclusive) applies to numbers; ``optional`` allows ``None``.
    """

    default: Any
    doc: str
    kind: type
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    optional: bool = False


@dataclass(frozen=True)
class SamplerSpec:
    """A registry entry of :data:`toroid.worker.landscape.samplers.SAMPLERS`.

    ``fn(run: TrainRun) -> nn.Module`` trains ``run.model`` (or replicas of it) and returns the
    minimizer.  ``binary_ok``: accepts binary architectures; ``binary_only``: accepts nothing else.
    ``hyper`` documents every hyperparameter; ``defaults`` is the derived
    ``{name: default}`` dict; ``paper`` holds the values the paper (or the sampler's original
    paper) uses where they differ from Toroid's small defaults.
    """

    description: str
    hyper: dict[str, Hyper]
    binary_ok: bool
    fn: Callable[[TrainRun], nn.Module] = field(repr=False)
    paper: dict[str, Any] = field(default_factory=dict)
    reference: str = ""
    binary_only: bool = False

    @property
    def defaults(self) -> dict[str, Any]:
        """``{hyperparameter: default}`` (a fresh dict)."""
        return {k: h.default for k, h in self.hyper.items()}


def validate_hparams(name: str, spec: SamplerSpec, hparams: Mapping[str, Any] | None) -> dict[str, Any]:
    """All hyperparameters of sampler ``name``: ``hparams`` over the defaults, type- and range-checked.

    Raises:
        ValueError: unknown key (the message lists the valid ones), wrong type, value out of
            range or not among the choices.
    """
    given = dict(hparams or {})
    unknown = sorted(set(given) - set(spec.hyper))
    if unknown:
        raise ValueError(
            f"sampler {name!r} has no hyperparameter(s) {unknown}; valid hyperparameters: {sorted(spec.hyper)}"
        )
    full = spec.defaults
    for key, value in given.items():
        h = spec.hyper[key]
        if value is None and h.optional:
            full[key] = None
            continue
        if h.kind is bool:
            ok = isinstance(value, bool)
        elif h.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif h.kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, h.kind)
        if not ok:
            expected = h.kind.__name__ + (" or None" if h.optional else "")
            raise ValueError(f"sampler {name!r}: hyperparameter {key}={value!r} must be of type {expected} ({h.doc})")
        if h.choices is not None and value not in h.choices:
            raise ValueError(f"sampler {name!r}: hyperparameter {key}={value!r} must be one of {list(h.choices)}")
        if h.minimum is not None and value < h.minimum:
            raise ValueError(f"sampler {name!r}: hyperparameter {key}={value!r} must be >= {h.minimum}")
        full[key] = float(value) if h.kind is float else value
    return full


def derive_seed(seed: int, *tags: object) -> int:
    """A 63-bit seed derived from ``seed`` and ``tags`` (stable across processes and platforms).

    Separate random streams (initialization, shuffling, confusion labels, Langevin noise,
    each replica) get separate derived seeds, so changing one never shifts another.
    """
    text = ":".join(str(t) for t in (seed, *tags)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & (2**63 - 1)


def cosine_lr(base: float, epoch: int, epochs: int, schedule: str = "cosine") -> float:
    """Learning rate of ``epoch`` (0-based): cosine annealing ``base * (1 + cos(pi e / E)) / 2``
    stepped once per epoch (as ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=E)``), or
    ``base`` for the ``constant`` schedule."""
    if schedule == "constant":
        return base
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def binary_latent_weights(model: nn.Module) -> list[Tensor]:
    """The latent real weights of the binary layers (modules with ``binary = True``, docs/method.md §8)."""
    return [
        m.weight
        for m in model.modules()
        if getattr(m, "binary", False) is True and isinstance(getattr(m, "weight", None), Tensor)
    ]


@torch.no_grad()
def clip_latent(weights: list[Tensor], bound: float) -> None:
    """Clip latent binary weights to ``[-bound, bound]`` after each step (BinaryConnect / BinaryNet):
    beyond the straight-through window a latent weight gets no gradient and would never flip back."""
    for w in weights:
        w.clamp_(-bound, bound)


def check_finite(value: float, sampler: str, epoch: int, hint: str) -> None:
    """Raise ``FloatingPointError`` when a training loss becomes NaN or infinite."""
    if not math.isfinite(value):
        raise FloatingPointError(f"sampler {sampler!r} diverged at epoch {epoch} (loss {value}); {hint}")


@dataclass
class TrainRun:
    """Everything a sampler's training function receives, plus the per-epoch bookkeeping.

    Attributes:
        sampler: registry name.
        model: the initialized network, already on ``device`` (training functions may train
            it in place and return it, or return another module such as RSGD's center).
        build: ``build(seed) -> nn.Module`` makes a freshly initialized network of the same
            architecture on ``device`` (used for RSGD's independently initialized replicas).
        dataset: the data (inputs already standardized by :mod:`toroid.worker.landscape.data`).
        hp: validated hyperparameters, defaults filled.
        seed: the run's seed; every random stream derives from it (:func:`derive_seed`).
        epochs: the epoch budget.
        target_error: stop once the train error of the reported minimizer is <= this
            (``None``: always run the full budget).
        progress: called after every epoch with ``(fraction, {"epoch", "epochs", "train_loss",
            "train_error", "test_error"})``; an exception raised by it stops the run.
        device: where the computation runs.
        phase: named in every progress report when set (``"training"`` after ADV's confusion pre-training,
            whose own reports say ``"confusion"``), so a job's ``partial["phase"]`` names the current phase.
        epochs_before: epochs of an earlier phase (ADV's pre-training): the progress fraction counts them, so it
            rises over the whole run instead of restarting at 0.
    """

    sampler: str
    model: nn.Module
    build: Callable[[int], nn.Module]
    dataset: Dataset
    hp: dict[str, Any]
    seed: int
    epochs: int
    target_error: float | None
    progress: Progress | None
    device: torch.device
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    phase: str | None = None
    epochs_before: int = 0
    _evaluator: Evaluator | None = field(default=None, repr=False)
    _data: dict[str, tuple[Tensor, Tensor]] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ data
    def train_data(self) -> tuple[Tensor, Tensor]:
        """Training inputs and labels on the device (moved once)."""
        if self._data is None:
            ds = self.dataset
            self._data = {"train": (ds.x_train.to(self.device, torch.float32), ds.y_train.to(self.device, torch.long))}
        return self._data["train"]

    def generator(self, *tags: object) -> torch.Generator:
        """A CPU ``torch.Generator`` seeded from the run's seed and ``tags`` (e.g. ``"shuffle"``)."""
        return torch.Generator().manual_seed(derive_seed(self.seed, *tags))

    def device_generator(self, *tags: object) -> torch.Generator:
        """Like :meth:`generator`, on the run's device (for noise drawn on the device)."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derive_seed(self.seed, *tags))
        return gen

    def batches(self, gen: torch.Generator, n: int | None = None) -> list[Tensor]:
        """One epoch of mini-batch index tensors (on the device): a fresh permutation drawn from
        ``gen``, cut into ``batch_size`` pieces (the last one may be smaller; a last piece of a single
        sample joins the previous one, since BatchNorm cannot train on one sample)."""
        if n is None:
            n = len(self.dataset.y_train)
        perm = torch.randperm(n, generator=gen).to(self.device)
        bs = int(self.hp["batch_size"])
        pieces = list(perm.split(bs))
        if len(pieces) > 1 and len(pieces[-1]) == 1:
            pieces[-2:] = [torch.cat(pieces[-2:])]
        return pieces

    def batch_stream(self, gen: torch.Generator) -> Iterator[Tensor]:
        """Endless mini-batches over reshuffled epochs (for samplers whose steps straddle epochs)."""
        while True:
            yield from self.batches(gen)

    def lr(self, epoch: int, base: float | None = None) -> float:
        """The learning rate of ``epoch`` under the run's ``schedule`` hyperparameter."""
        return cosine_lr(self.hp["lr"] if base is None else base, epoch, self.epochs, self.hp["schedule"])

    # ------------------------------------------------------------------ bookkeeping
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Train/test error and loss of ``model`` (eval mode, full splits), via the fast evaluator."""
        if self._evaluator is None:
            self._evaluator = Evaluator(model, self.dataset, self.device)
        was_training = model.training
        out = self._evaluator.evaluate_state(model, "both")
        model.train(was_training)
        return out

    def end_epoch(self, epoch: int, model: nn.Module) -> bool:
        """Evaluate the current minimizer after ``epoch`` (0-based), record it, report progress.

        Returns True when training should stop (train error <= ``target_error``).
        """
        metrics = self.evaluate(model)
        check_finite(metrics["train_loss"], self.sampler, epoch, "lower the learning rate")
        info = {
            "epoch": epoch + 1,
            "epochs": self.epochs,
            "train_loss": metrics["train_loss"],
            "train_error": metrics["train_error"],
            "test_error": metrics["test_error"],
        }
        self.history.append({**info, "test_loss": metrics["test_loss"]})
        if self.progress is not None:
            report = dict(info, phase=self.phase) if self.phase else dict(info)
            done = self.epochs_before + epoch + 1
            self.progress(done / (self.epochs_before + self.epochs), report)
        return self.target_error is not None and metrics["train_error"] <= self.target_error

    @property
    def epochs_run(self) -> int:
        return len(self.history)


# shared hyperparameter documentation (each sampler lists the ones it uses)
def common_hyper(epochs: int, lr: float, momentum: float, nesterov: bool, schedule: str = "cosine") -> dict:
    """The hyperparameters every gradient sampler has: budget, batch, optimizer, schedule."""
    return {
        "epochs": Hyper(epochs, "epoch budget (the paper trains 300 epochs)", int, minimum=1),
        "batch_size": Hyper(128, "mini-batch size (paper: 128)", int, minimum=1),
        "lr": Hyper(lr, "learning rate (peak of the schedule)", float, minimum=0.0),
        "momentum": Hyper(momentum, "momentum of SGD (0: none)", float, minimum=0.0),
        "nesterov": Hyper(nesterov, "Nesterov momentum", bool),
        "schedule": Hyper(
            schedule, "learning-rate schedule: cosine annealing over the budget, or constant", str, SCHEDULES
        ),
    }


def sgd_optimizer(params: Any, hp: Mapping[str, Any], lr: float | None = None) -> torch.optim.SGD:
    """``torch.optim.SGD`` with the run's momentum / Nesterov settings (no weight decay, docs/method.md §8)."""
    momentum = float(hp["momentum"])
    nesterov = bool(hp["nesterov"]) and momentum > 0
    return torch.optim.SGD(params, lr=hp["lr"] if lr is None else lr, momentum=momentum, nesterov=nesterov)
