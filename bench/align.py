"""Benchmark: how long symmetry removal takes on paper-sized networks (CPU by default).

Times ``align`` (docs/method.md §3 / 4; the default, best of identity / greedy / refined, and the
paper's greedy matching alone, ``method="greedy"``) between two independently initialized networks,
plus ``normalize`` (docs/method.md §2) and the one-off unit-graph trace, as the median of several runs:

* VGG16-BN, CIFAR-10 input 3x32x32, 10 classes (target: greedy align < 0.5 s on the 2-core CPU)
* binary MLP 3 x 1001 on 784 inputs, 10 classes (sign flips included)

Usage: ``.venv/bin/python bench/align.py [--repeats 7] [--threads 1 2]``

On a shared machine, torch's intra-op threads compete with other processes: the table is printed
for each thread count given (default: 1 and torch's default), with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from toroid.worker.landscape.distances import geodesic_distance, hamming_distance
from toroid.worker.landscape.graph import _GRAPH_CACHE, unit_graph
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.symmetry import align, normalize


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="runs per measurement (median reported)")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None, help="torch thread counts to try (default: 1 and torch's)"
    )
    args = parser.parse_args()
    for threads in args.threads or sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        run(args.repeats)


def run(repeats: int) -> None:
    rows = []
    cases = [
        ("VGG16-BN (3x32x32, 10 cl.)", "vgg", None, ((3, 32, 32), 10)),
        ("binary MLP 3x1001 (784 in)", "binary_mlp", {"widths": [1001, 1001, 1001]}, ((784,), 10)),
    ]
    for label, name, config, data in cases:
        a = build_model(name, config, data, seed=0).eval()
        b = build_model(name, config, data, seed=1).eval()
        n_params = sum(p.numel() for p in a.parameters())
        _GRAPH_CACHE.clear()
        start = time.perf_counter()
        unit_graph(a)
        trace_s = time.perf_counter() - start
        norm_s = median_time(lambda a=a: normalize(a), repeats)
        na, nb = normalize(a), normalize(b)
        greedy_s = median_time(lambda na=na, nb=nb: align(na, nb, method="greedy"), repeats)
        align_s = median_time(lambda na=na, nb=nb: align(na, nb), repeats)
        aligned = align(na, nb)
        if name.startswith("binary"):
            dist = f"Hamming {hamming_distance(na, nb):.3f} -> {hamming_distance(na, aligned):.3f}"
        else:
            dist = f"geodesic {geodesic_distance(na, nb):.2f} -> {geodesic_distance(na, aligned):.2f}"
        rows.append((label, n_params, trace_s, norm_s, greedy_s, align_s, dist))

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, median of {repeats} runs, "
        f"load average {load} on {os.cpu_count()} cores"
    )
    header = (f"{'network':<28} {'params':>11} {'trace s':>8} {'normalize s':>12} {'greedy s':>9} {'align s':>8}"
              "  distance")
    print(header)
    print("-" * len(header))
    for label, n_params, trace_s, norm_s, greedy_s, align_s, dist in rows:
        print(f"{label:<28} {n_params:>11,} {trace_s:>8.3f} {norm_s:>12.3f} {greedy_s:>9.3f} {align_s:>8.3f}  {dist}")


if __name__ == "__main__":
    main()
