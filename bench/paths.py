"""Benchmark: 33-point path profiles (docs/method.md §7) on a 784-512-512-10 MLP.

Data: synthetic MNIST-shaped inputs (1 x 28 x 28, standard normal pixels), 10,000 train and
10,000 test, labels from a random linear teacher (argmax of x T); two minima trained for a
few epochs of SGD.  Every method computes train and test error and loss at each point.

* Toroid: ``path_profile`` (one evaluator, data as tensors, large batches, first-layer
  factorization: 2 first-layer products per path instead of 33).
* loop: the straightforward way - per point a deep copy of the model with the interpolated
  parameters, a ``DataLoader`` with batch 128 over each split, ``torch.no_grad``.
* loss-landscapes: ``loss_landscapes.linear_interpolation`` (33 steps, deep copies of the
  end points) with a metric evaluating both splits in one batch under ``torch.no_grad``;
  linear paths only (it has no geodesic); "not installed" when it is not importable.

Medians of ``--repeats`` runs (``--loop-repeats`` for the slow loop).  Targets: Toroid >= 3x
faster than the loop and >= 2x faster than loss-landscapes.  ``--quick`` uses 2,000 samples per
split and 2 repetitions.  ``python -m bench paths`` runs the same comparison in the project's
benchmark suite.

Usage: ``.venv/bin/python -m bench.paths [--quick] [--repeats 3] [--loop-repeats 1] [--threads N]``
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.common import train_quick
from toroid.worker.landscape.data import Dataset
from toroid.worker.landscape.paths import path_profile, prepare_endpoints
from toroid.worker.landscape.results import PathProfile
from toroid.worker.landscape.symmetry import sphere_blocks

POINTS = 33


def synthetic_mnist(n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """MNIST-shaped synthetic data (1 x 28 x 28, 10 classes) labelled by a random linear teacher."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 1, 28, 28, generator=gen)
    teacher = torch.randn(784, 10, generator=gen)
    y = (x.reshape(len(x), -1) @ teacher).argmax(1)
    return Dataset(
        name="synthetic_mnist",
        options={"n_train": n_train, "n_test": n_test, "seed": seed},
        x_train=x[:n_train].contiguous(),
        y_train=y[:n_train].contiguous(),
        x_test=x[n_train:].contiguous(),
        y_test=y[n_train:].contiguous(),
        input_shape=(1, 28, 28),
        num_classes=10,
    )


def train_mlp(data: Dataset, seed: int, epochs: int = 3) -> nn.Module:
    """A 784-512-512-10 MLP trained with SGD + Nesterov momentum, batch 128 (:func:`bench.common.train_quick`)."""
    return train_quick("mlp", {"widths": [512, 512]}, data, seed=seed, epochs=epochs)


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


# ------------------------------------------------------------------------- the straightforward loop
def _loader_eval(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    errors, loss, n = 0, 0.0, 0
    with torch.no_grad():
        for xb, yb in DataLoader(TensorDataset(x, y), batch_size=128):
            out = model(xb)
            errors += int((out.argmax(1) != yb).sum())
            loss += float(F.cross_entropy(out, yb, reduction="sum"))
            n += len(yb)
    return errors / n, loss / n


def _loop(point_model: Callable[[float], nn.Module], data: Dataset) -> list[float]:
    train_errors = []
    for x in np.linspace(0.0, 1.0, POINTS):
        model = point_model(float(x)).eval()
        err, _ = _loader_eval(model, data.x_train, data.y_train)
        _loader_eval(model, data.x_test, data.y_test)
        train_errors.append(err)
    return train_errors


def loop_linear(a: nn.Module, b: nn.Module, data: Dataset) -> list[float]:
    sa, sb = a.state_dict(), b.state_dict()

    def point(x: float) -> nn.Module:
        model = copy.deepcopy(a)
        model.load_state_dict({k: (1 - x) * sa[k] + x * sb[k] for k in sa})
        return model

    return _loop(point, data)


def loop_geodesic(a: nn.Module, b: nn.Module, data: Dataset) -> list[float]:
    """Per-unit slerp written out directly (a, b normalized and aligned)."""
    sa, sb = a.state_dict(), b.state_dict()
    blocks = {blk.param: blk for blk in sphere_blocks(a)}

    def point(x: float) -> nn.Module:
        state = {}
        for k in sa:
            if k not in blocks:
                state[k] = (1 - x) * sa[k] + x * sb[k]
                continue
            blk = blocks[k]
            rows = sa[k].shape[0] if blk.per_unit else 1
            ua = sa[k].reshape(rows, -1) / blk.radius
            ub = sb[k].reshape(rows, -1) / blk.radius
            phi = torch.arccos((ua * ub).sum(1).clamp(-1, 1))[:, None]
            s = torch.sin(phi)
            w = torch.where(
                phi > 1e-6,
                (torch.sin((1 - x) * phi) * ua + torch.sin(x * phi) * ub) / s.clamp_min(1e-12),
                (1 - x) * ua + x * ub,
            )
            state[k] = (w * blk.radius).reshape(sa[k].shape)
        model = copy.deepcopy(a)
        model.load_state_dict(state)
        return model

    return _loop(point, data)


# ------------------------------------------------------------------------------- loss-landscapes
def loss_landscapes_linear(a: nn.Module, b: nn.Module, data: Dataset) -> list[float] | None:
    try:
        from loss_landscapes import linear_interpolation
        from loss_landscapes.metrics import Metric
    except ImportError:
        return None

    class ErrorsAndLosses(Metric):
        def __call__(self, wrapper) -> tuple[float, float, float, float]:  # noqa: ANN001 - their type
            out = []
            with torch.no_grad():
                for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
                    logits = wrapper.forward(x)
                    out += [float((logits.argmax(1) != y).float().mean()), float(F.cross_entropy(logits, y))]
            return tuple(out)

    values = linear_interpolation(a, b, ErrorsAndLosses(), steps=POINTS, deepcopy_model=True)
    return [float(v[0]) for v in values]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,000 samples per split, 2 repetitions")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (median; default 3)")
    parser.add_argument(
        "--loop-repeats",
        type=int,
        default=None,
        help="runs of the slow straightforward loop (default: --repeats)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 2000 if args.quick else 10_000
    repeats = args.repeats or (2 if args.quick else 3)
    loop_repeats = args.loop_repeats or repeats

    data = synthetic_mnist(n, n)
    a, b = train_mlp(data, seed=0), train_mlp(data, seed=1)
    ga, gb = prepare_endpoints(a, b, "geodesic")
    cpu = torch.device("cpu")
    print(
        f"MLP 784-512-512-10, {n} train + {n} test synthetic MNIST-shaped inputs, {POINTS} points, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {repeats} runs "
        f"({loop_repeats} for the loop)",
        flush=True,
    )
    header = f"{'path':<9} {'method':<38} {'median s':>9} {'Toroid speed-up':>16}  check"
    print(header)
    print("-" * len(header), flush=True)

    toroid: dict[str, float] = {}
    reference: dict[str, list[float]] = {}

    def row(kind: str, method: str, fn: Callable[[], object], reps: int) -> None:
        t, out = median_time(fn, reps)
        errors = out.train_error if isinstance(out, PathProfile) else out
        if errors is None:
            print(f"{kind:<9} {method:<38} {'not installed':>9}", flush=True)
            return
        if method.startswith("Toroid"):
            toroid[kind], reference[kind] = t, list(errors)
            check = f"barrier {max(errors):.3f}, end errors {errors[0]:.3f} / {errors[-1]:.3f}"
        elif method.startswith("loop"):  # same grid x = 0, 1/32, ..., 1
            diff = max(abs(p - q) for p, q in zip(reference[kind], errors, strict=True))
            check = f"max |train error diff| {diff:.1e}"
        else:  # loss-landscapes evaluates x = 1/33, ..., 1: compare the shared endpoint x = 1
            check = f"|train error diff| at x = 1: {abs(reference[kind][-1] - errors[-1]):.1e}"
        print(f"{kind:<9} {method:<38} {t:>9.3f} {t / toroid[kind]:>15.2f}x  {check}", flush=True)

    row(
        "linear",
        "Toroid path_profile",
        lambda: path_profile(a, b, data, "linear", POINTS, device=cpu),
        repeats,
    )
    row("linear", "loop (deepcopy, DataLoader 128)", lambda: loop_linear(a, b, data), loop_repeats)
    row("linear", "loss-landscapes linear_interpolation", lambda: loss_landscapes_linear(a, b, data), repeats)
    row(
        "geodesic",
        "Toroid path_profile",
        lambda: path_profile(ga, gb, data, "geodesic", POINTS, device=cpu, prepared=True),
        repeats,
    )
    row("geodesic", "loop (deepcopy, DataLoader 128)", lambda: loop_geodesic(ga, gb, data), loop_repeats)


if __name__ == "__main__":
    main()
