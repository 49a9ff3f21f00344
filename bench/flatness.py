"""Benchmark: local energy (docs/method.md §6), 8 sigmas x 32 noise samples, 784-512-512-10 MLP.

Same data and minimum as ``bench.paths`` (synthetic MNIST-shaped inputs, 10,000 train).

* exact loop: the straightforward way - for each sigma and sample a deep copy of the model,
  multiplicative noise on every parameter, train error with a ``DataLoader`` (batch 128) over
  the full training set, ``torch.no_grad``;
* Toroid exact: ``local_energy(mode="exact", samples=32)`` (full training set, one reusable
  model, large batches);
* Toroid fast: ``local_energy(mode="fast")`` (stratified 2,048-sample subsample, noise samples
  drawn until the standard error is below 0.5 points, at least 8, at most ``--fast-max``).

Target: Toroid fast >= 10x faster than the exact loop with every stderr < 0.5 points.
Medians of ``--repeats`` runs (``--loop-repeats`` for the slow loop); ``--quick``: 2,000
samples per split, 1 repetition.  ``python -m bench flatness`` runs the same comparison in
the project's benchmark suite.

Usage: ``.venv/bin/python -m bench.flatness [--quick] [--repeats 3] [--loop-repeats 1] [--threads N]``
"""

from __future__ import annotations

import argparse
import copy
import math

import numpy as np
import torch
from torch import nn

from bench.paths import _loader_eval, median_time, synthetic_mnist, train_mlp
from toroid.worker.landscape.data import Dataset
from toroid.worker.landscape.flatness import DEFAULT_SIGMAS, local_energy

SAMPLES = 32


def exact_loop(model: nn.Module, data: Dataset, sigmas: list[float]) -> list[tuple[float, float]]:
    """(mean, stderr) of the local energy per sigma, written the straightforward way."""
    base, _ = _loader_eval(model.eval(), data.x_train, data.y_train)
    gen = torch.Generator().manual_seed(0)
    out = []
    for sigma in sigmas:
        diffs = []
        for _ in range(SAMPLES):
            noisy = copy.deepcopy(model)
            with torch.no_grad():
                for p in noisy.parameters():
                    p.add_(sigma * torch.randn(p.shape, generator=gen) * p)
            err, _ = _loader_eval(noisy.eval(), data.x_train, data.y_train)
            diffs.append(err - base)
        arr = np.asarray(diffs)
        out.append((float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(len(arr)))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,000 samples per split, 1 repetition")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (median; default 3)")
    parser.add_argument(
        "--loop-repeats", type=int, default=None, help="runs of the slow exact loop (default: --repeats)"
    )
    parser.add_argument("--fast-max", type=int, default=100, help="most noise samples per sigma in fast mode")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 2000 if args.quick else 10_000
    repeats = args.repeats or (1 if args.quick else 3)
    loop_repeats = args.loop_repeats or repeats
    data = synthetic_mnist(n, n)
    model = train_mlp(data, seed=0)
    sigmas = list(DEFAULT_SIGMAS["mlp"])
    cpu = torch.device("cpu")

    t_loop, loop = median_time(lambda: exact_loop(model, data, sigmas), loop_repeats)
    t_exact, exact = median_time(
        lambda: local_energy(model, data, sigmas, samples=SAMPLES, mode="exact", device=cpu), repeats
    )
    t_fast, fast = median_time(
        lambda: local_energy(model, data, sigmas, samples=args.fast_max, mode="fast", device=cpu), repeats
    )

    print(
        f"local energy, MLP 784-512-512-10, {n} train inputs, {len(sigmas)} sigmas in [0, 0.5], "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {repeats} runs "
        f"({loop_repeats} for the loop)"
    )
    print(f"base train error {exact.base_train_error:.4f}")
    header = (
        f"{'sigma':>6} | {'loop mean':>9} {'se':>6} | {'exact mean':>10} {'se':>6} | "
        f"{'fast mean':>9} {'se':>6} {'n':>4}"
    )
    print(header)
    print("-" * len(header))
    for i, s in enumerate(sigmas):
        print(
            f"{s:>6.3f} | {loop[i][0]:>9.4f} {loop[i][1]:>6.4f} | {exact.mean[i]:>10.4f} {exact.stderr[i]:>6.4f} | "
            f"{fast.mean[i]:>9.4f} {fast.stderr[i]:>6.4f} {fast.samples[i]:>4d}"
        )
    print()
    print(f"{'method':<44} {'median s':>9} {'speed-up vs loop':>17}")
    for label, t in (
        (f"exact loop (deepcopy, DataLoader 128, {SAMPLES}/sigma)", t_loop),
        (f"Toroid exact ({SAMPLES}/sigma, full train set)", t_exact),
        (f"Toroid fast (subsample {fast.subsample}, tol 0.005)", t_fast),
    ):
        print(f"{label:<44} {t:>9.3f} {t_loop / t:>16.2f}x")
    print(f"fast mode: max stderr {max(fast.stderr) * 100:.2f} points, {sum(fast.samples)} noisy evaluations")


if __name__ == "__main__":
    main()
