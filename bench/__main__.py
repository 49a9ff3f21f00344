"""``python -m bench``: Toroid's speed against peers and against this machine's matrix-multiply limit.

Usage::

    python -m bench                              # every CPU workload: paths flatness align api limit
    python -m bench paths flatness --repeats 5   # some workloads
    python -m bench --quick                      # smoke run: small data, one repetition
    python -m bench --device cuda                # the GPU suite (VGG16-BN, ResNet-18, 50,000 CIFAR-shaped inputs)
    python -m bench gpu --device cpu --quick     # the GPU suite's code path on a CPU, tiny sizes
    python -m bench --json out.json              # also write every row as JSON

Workloads (each method measured side by side in this one process, medians of ``--repeats``):

* ``paths``: 33-point linear and geodesic error profiles (docs/method.md §7) of a 784-512-512-10
  MLP on 10,000 + 10,000 synthetic MNIST-shaped inputs and of LeNet on 10,000 + 10,000
  32x32x3 inputs: Toroid's ``path_profile`` vs a straightforward loop (deep copy per point,
  DataLoader batch 128) vs the ``loss-landscapes`` package's ``linear_interpolation``.
* ``flatness``: local energy (docs/method.md §6), 8 sigmas x 32 samples on the same MLP: the loop vs
  Toroid exact vs Toroid fast mode (with its standard error).
* ``align``: ``align`` (docs/method.md §§3-4) of two VGG16-BN networks and two 3x1001 binary MLPs.
* ``api``: upload of two digits minima to a finished 17-point geodesic job through ``toroid up``.
* ``limit``: torch.mm throughput on the workloads' layer shapes and each row's fraction of it.
* ``gpu`` (the default with ``--device cuda``): see :mod:`bench.gpu`.
* ``scaling`` (not in the default set, ~10 min): time and peak memory of paths, flatness and tori vs
  inputs, points and width, a PNG plot (see :mod:`bench.scaling`).

Every run ends with the targets it measured (docs/performance.md), each met or missed with its ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import numpy as np
import torch

from bench.common import (
    Row,
    Settings,
    bench_device,
    fill_speedups,
    layer_shapes,
    machine_info,
    print_table,
    synthetic_images,
    time_interleaved,
    time_median,
    train_quick,
    write_json,
)

CPU_WORKLOADS = ("paths", "flatness", "align", "api", "limit")
ALL_WORKLOADS = (*CPU_WORKLOADS, "gpu", "scaling")
POINTS = 33


def _max_diff(a: list[float], b: list[float] | None) -> float:
    if b is None:
        return float("nan")
    return max(abs(p - q) for p, q in zip(a, b, strict=True))


# ------------------------------------------------------------------------------------ paths
def _path_case(
    settings: Settings,
    case: str,
    a: torch.nn.Module,
    b: torch.nn.Module,
    data,
    input_shape: tuple[int, ...],
    *,
    bn: str = "recompute",
    peers: bool = True,
    loops: bool = True,
) -> list[Row]:
    """Toroid vs the loop (and loss-landscapes) on one case; methods interleaved in every repetition.

    ``bn``: Toroid's BatchNorm mode; the loop interpolates the running statistics, so BN nets are
    compared with ``bn="interpolate"`` (same work, same numbers).
    """
    from bench.paths import loop_geodesic, loop_linear, loss_landscapes_linear
    from toroid.worker.landscape.paths import path_profile, prepare_endpoints

    reps, dev = settings.repeats, settings.device
    layers = layer_shapes(a, input_shape)
    n_inputs = POINTS * (len(data.y_train) + len(data.y_test))
    common = {"layers": layers}
    rows: list[Row] = []
    toroid = "Toroid path_profile"
    loop = "loop (deepcopy, DataLoader 128)"
    peer = "loss-landscapes linear_interpolation"
    ga, gb = prepare_endpoints(a, b, "geodesic")
    for kind, (pa, pb) in (("linear", (a, b)), ("geodesic", (ga, gb))):
        fns = {toroid: lambda pa=pa, pb=pb, kind=kind: path_profile(
            pa, pb, data, kind, POINTS, device=dev, prepared=True, bn=bn)}
        if loops:
            fns[loop] = (lambda: loop_linear(a, b, data)) if kind == "linear" else (
                lambda: loop_geodesic(ga, gb, data))
        if kind == "linear" and peers:
            fns[peer] = lambda: loss_landscapes_linear(a, b, data)
        timed = time_interleaved(fns, reps, dev)
        t, runs, prof = timed[toroid]
        ours = prof.train_error
        base = loop if loops else None
        rows.append(Row("paths", f"{case} {kind}", toroid, t, runs, baseline=base, extra={"forward_inputs": n_inputs},
                        note=f"barrier {prof.barrier:.3f}", **common))
        if loops:
            t, runs, errs = timed[loop]
            rows.append(Row("paths", f"{case} {kind}", loop, t, runs, baseline=loop,
                            extra={"forward_inputs": n_inputs},
                            note=f"max |train err diff| {_max_diff(ours, errs):.1e}", **common))
        if peer in timed:
            t, runs, errs = timed[peer]
            rows.append(Row(
                "paths", f"{case} {kind}", peer, t if errs is not None else None,
                runs if errs is not None else [], baseline=base, extra={"forward_inputs": n_inputs},
                note=f"max |train err diff| {_max_diff(ours, errs):.1e}" if errs is not None else "not installed",
                **common,
            ))
    return rows


def _plain_mlp(seed: int) -> torch.nn.Module:
    """784-512-512-10 as a plain ``nn.Sequential`` at its random initialization (the issue's independent setup)."""
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 10)).eval()


def run_paths(settings: Settings) -> list[Row]:
    """MLP 784-512-512-10 (trained; and a plain random-init nn.Sequential vs loss-landscapes), LeNet and
    a VGG11-BN (width 1/4) on 32x32x3: path profiles, methods side by side."""
    from bench.paths import synthetic_mnist, train_mlp

    n = 1000 if settings.quick else 10_000
    data = synthetic_mnist(n, n)
    epochs = 1 if settings.quick else 3
    a, b = train_mlp(data, seed=0, epochs=epochs), train_mlp(data, seed=1, epochs=epochs)
    rows = _path_case(settings, f"MLP 784-512-512-10, {n}+{n}", a, b, data, (1, 28, 28))
    rows += _path_case(settings, f"MLP Sequential random, {n}+{n}", _plain_mlp(0), _plain_mlp(1), data,
                       (1, 28, 28), loops=False)
    m = settings.lenet_inputs or n
    cifar = synthetic_images(m, m, (3, 32, 32), seed=1)
    lenet_a = train_quick("lenet", None, cifar, seed=0, epochs=1 if settings.quick else 2)
    lenet_b = train_quick("lenet", None, cifar, seed=1, epochs=1 if settings.quick else 2)
    rows += _path_case(settings, f"LeNet 3x32x32, {m}+{m}", lenet_a, lenet_b, cifar, (3, 32, 32), peers=False)
    vgg = {"depth": 11, "width_scale": 0.25}
    vgg_a = train_quick("vgg", vgg, cifar, seed=0, epochs=1)
    vgg_b = train_quick("vgg", vgg, cifar, seed=1, epochs=1)
    rows += _path_case(settings, f"VGG11-BN/4 3x32x32, {m}+{m}", vgg_a, vgg_b, cifar, (3, 32, 32),
                       bn="interpolate", peers=False)
    return rows


#: (workload, case prefix, path kind, method, baseline method, required speed-up): the targets of
#: docs/performance.md, printed as met or missed at the end of every run that measured them.
TARGETS = [
    ("paths", "MLP 784-512-512-10", "linear", "Toroid path_profile", "loss-landscapes linear_interpolation", 2.0),
    ("paths", "MLP Sequential random", "linear", "Toroid path_profile", "loss-landscapes linear_interpolation", 2.0),
    ("paths", "MLP 784-512-512-10", "linear", "Toroid path_profile", "loop (deepcopy, DataLoader 128)", 3.0),
    ("paths", "MLP 784-512-512-10", "geodesic", "Toroid path_profile", "loop (deepcopy, DataLoader 128)", 3.0),
    ("paths", "LeNet", "linear", "Toroid path_profile", "loop (deepcopy, DataLoader 128)", 1.5),
    ("paths", "LeNet", "geodesic", "Toroid path_profile", "loop (deepcopy, DataLoader 128)", 1.5),
    ("paths", "VGG11-BN", "linear", "Toroid path_profile", "loop (deepcopy, DataLoader 128)", 1.2),
    ("paths", "VGG11-BN", "geodesic", "Toroid path_profile", "loop (deepcopy, DataLoader 128)", 1.2),
]


def target_lines(rows: list[Row]) -> list[str]:
    """One line per target measured in ``rows``: the ratio, met or missed."""
    lines = []
    for workload, prefix, kind, method, base, need in TARGETS:
        def find(name: str, workload: str = workload, prefix: str = prefix, kind: str = kind) -> Row | None:
            for r in rows:
                if r.workload == workload and r.case.startswith(prefix) and r.case.endswith(kind) and r.method == name:
                    return r
            return None

        ours, ref = find(method), find(base)
        if ours is None or ref is None or ours.seconds is None or ref.seconds is None:
            continue
        ratio = ref.seconds / ours.seconds
        verdict = "met" if ratio >= need else "MISSED"
        lines.append(f"target {ours.case} ({method} vs {base}) >= {need:.1f}x: {ratio:.2f}x "
                     f"({ours.seconds:.2f} s vs {ref.seconds:.2f} s)  {verdict}")
    return lines


# --------------------------------------------------------------------------------- flatness
def run_flatness(settings: Settings) -> list[Row]:
    """Local energy 8 sigmas x 32 samples: the exact loop, Toroid exact, Toroid fast (stderr reported)."""
    from bench.flatness import SAMPLES, exact_loop
    from bench.paths import synthetic_mnist, train_mlp
    from toroid.worker.landscape.flatness import DEFAULT_SIGMAS, local_energy

    n = 1000 if settings.quick else 10_000
    data = synthetic_mnist(n, n)
    model = train_mlp(data, seed=0, epochs=1 if settings.quick else 3)
    sigmas = list(DEFAULT_SIGMAS["mlp"])
    reps, dev = settings.repeats, settings.device
    layers = layer_shapes(model, (1, 28, 28))
    naive = (len(sigmas) * SAMPLES + 1) * n
    case = f"MLP 784-512-512-10, {n} train, {len(sigmas)}x{SAMPLES}"
    loop = f"exact loop (deepcopy, DataLoader, {SAMPLES}/sigma)"

    t_loop, runs_loop, out_loop = time_median(lambda: exact_loop(model, data, sigmas), reps)
    t_exact, runs_exact, exact = time_median(
        lambda: local_energy(model, data, sigmas, samples=SAMPLES, mode="exact", device=dev), reps, dev
    )
    t_fast, runs_fast, fast = time_median(
        lambda: local_energy(model, data, sigmas, samples=100, mode="fast", device=dev), reps, dev
    )
    loop_se = max(se for _, se in out_loop)
    exact_vs_loop = max(abs(m - lm) for m, (lm, _) in zip(exact.mean, out_loop, strict=True))
    fast_vs_exact = max(abs(p - q) for p, q in zip(fast.mean, exact.mean, strict=True))
    extra = {"forward_inputs": naive}
    return [
        Row("flatness", case, loop, t_loop, runs_loop, baseline=loop, layers=layers, extra=dict(extra),
            note=f"max stderr {loop_se * 100:.2f} pts"),
        Row("flatness", case, f"Toroid exact ({SAMPLES}/sigma, full train)", t_exact, runs_exact, baseline=loop,
            layers=layers, extra=dict(extra),
            note=f"max stderr {max(exact.stderr) * 100:.2f} pts; "
                 f"max |mean - loop| {exact_vs_loop * 100:.2f} pts"),
        Row("flatness", case, f"Toroid fast (subsample {fast.subsample}, tol 0.5 pt)", t_fast, runs_fast,
            baseline=loop, layers=layers, extra={**extra, "stderr": fast.stderr, "samples": fast.samples},
            note=f"max stderr {max(fast.stderr) * 100:.2f} pts, {sum(fast.samples)} noisy evals; "
                 f"max |mean - exact| {fast_vs_exact * 100:.2f} pts"),
    ]


# ------------------------------------------------------------------------------------ align
def run_align(settings: Settings) -> list[Row]:
    """Wall time of ``align`` between two independently initialized networks (normalize timed too)."""
    from toroid.worker.landscape.distances import geodesic_distance, hamming_distance
    from toroid.worker.landscape.nets import build_model
    from toroid.worker.landscape.symmetry import align, normalize

    reps = settings.repeats
    rows = []
    cases = [
        ("VGG16-BN 3x32x32", "vgg", None, ((3, 32, 32), 10)),
        ("binary MLP 3x1001, 784 in", "binary_mlp", {"widths": [1001, 1001, 1001]}, ((784,), 10)),
    ]
    for label, name, config, shape in cases:
        a = build_model(name, config, shape, seed=0).eval()
        b = build_model(name, config, shape, seed=1).eval()
        na, nb = normalize(a), normalize(b)
        align(na, nb)  # the unit graph is traced once per architecture and cached: time the steady state
        t_norm, runs_norm, _ = time_median(lambda a=a: normalize(a), reps)
        t, runs, aligned = time_median(lambda na=na, nb=nb: align(na, nb), reps)
        if name.startswith("binary"):
            dist = f"Hamming {hamming_distance(na, nb):.3f} -> {hamming_distance(na, aligned):.3f}"
        else:
            dist = f"geodesic {geodesic_distance(na, nb):.2f} -> {geodesic_distance(na, aligned):.2f}"
        params = sum(p.numel() for p in a.parameters())
        rows.append(Row("align", label, "Toroid align", t, runs, note=f"{params:,} params; {dist}"))
        rows.append(Row("align", label, "Toroid normalize", t_norm, runs_norm))
    return rows


def run_api(settings: Settings) -> list[Row]:
    from bench.api import run_api as api

    return api(settings)


def run_scaling(settings: Settings) -> list[Row]:
    from bench.scaling import run_scaling as scaling

    return scaling(settings)


def run_gpu(settings: Settings) -> list[Row]:
    from bench.gpu import run_gpu as gpu

    return gpu(settings)


RUNNERS: dict[str, Callable[[Settings], list[Row]]] = {
    "paths": run_paths,
    "flatness": run_flatness,
    "align": run_align,
    "api": run_api,
    "gpu": run_gpu,
    "scaling": run_scaling,
}


def limit_shapes(settings: Settings) -> list[Row]:
    """Rows carrying only the layer shapes of the CPU workloads (for ``limit`` run on its own)."""
    from toroid.worker.landscape.nets import build_model

    mlp = build_model("mlp", {"widths": [512, 512]}, ((1, 28, 28), 10), seed=0)
    lenet = build_model("lenet", None, ((3, 32, 32), 10), seed=0)
    return [
        Row("limit", "MLP 784-512-512-10", "layers", None, layers=layer_shapes(mlp, (1, 28, 28))),
        Row("limit", "LeNet 3x32x32", "layers", None, layers=layer_shapes(lenet, (3, 32, 32))),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "workloads", nargs="*", metavar="WORKLOAD",
        help=f"any of {', '.join(ALL_WORKLOADS)} (default: {' '.join(CPU_WORKLOADS)} on cpu, gpu limit on cuda)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 repetition unless --repeats")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement, median reported (default 3)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--gpu-suite", action="store_true", help="add the gpu workload (any device; tiny with --quick)")
    parser.add_argument("--compile", action="store_true", help="gpu workload: also time torch.compile'd evaluation")
    parser.add_argument("--lenet-inputs", type=int, default=None,
                        help="paths: LeNet train (= test) inputs (default: as the MLP, 10,000; 1,000 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write every row and the machine as JSON")
    args = parser.parse_args(argv)

    device = bench_device(args.device)
    unknown = [w for w in args.workloads if w not in ALL_WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {', '.join(ALL_WORKLOADS)}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    workloads = list(args.workloads) or (["gpu", "limit"] if device.type == "cuda" else list(CPU_WORKLOADS))
    if args.gpu_suite and "gpu" not in workloads:
        workloads.insert(-1 if "limit" in workloads else len(workloads), "gpu")
    settings = Settings(
        quick=args.quick, repeats=args.repeats or (1 if args.quick else 3), device=device, compile=args.compile,
        lenet_inputs=args.lenet_inputs,
    )
    if args.lenet_inputs is not None and args.lenet_inputs < 1:
        parser.error(f"--lenet-inputs must be a positive integer, got {args.lenet_inputs}")
    torch.manual_seed(0)
    np.random.seed(0)
    info = machine_info(device)
    print(f"python -m bench {' '.join(workloads)} (quick={args.quick}, repeats={settings.repeats}, "
          f"device={device}), load average {info['load_average']}", flush=True)

    if device.type == "cpu" and torch.get_num_threads() > 1 and info["load_average"][0] > (os.cpu_count() or 1):
        print(f"note: load average {info['load_average'][0]:.1f} exceeds the {os.cpu_count()} cores; torch's "
              f"{torch.get_num_threads()} intra-op threads will contend with other processes (on a shared 2-core "
              "machine --threads 1 measured the straightforward loops ~10x faster)", flush=True)
    rows: list[Row] = []
    for name in workloads:
        if name == "limit":
            continue
        print(f"[bench] {name} ...", flush=True)
        done = RUNNERS[name](settings)
        for r in done:  # partial results as they come (the full table follows at the end)
            t = f"{r.seconds:.3f} s" if r.seconds is not None else "-"
            print(f"  {r.case} | {r.method}: {t}  {r.note}", flush=True)
        rows += done
    extra: dict = {}
    if "limit" in workloads:
        from bench.limit import LimitTable, apply_limits

        print("[bench] limit ...", flush=True)
        table = LimitTable(device, repeats=settings.repeats, quick=settings.quick)
        targets = rows if any(r.layers for r in rows) else limit_shapes(settings)
        for r in targets:
            for shape in r.layers:
                table.rate(shape, r.extra.get("precision", "fp32"))
        apply_limits(rows, table)
        rows += table.rows()
        extra["mm_throughput"] = table.to_dict()
    fill_speedups(rows)
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print()
    print_table(rows, info, settings.repeats)
    targets_text = target_lines(rows) + extra.pop("target_lines", [])
    if targets_text:
        print("\nTargets (docs/performance.md), load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
        for line in targets_text:
            print("  " + line)
    if args.json:
        write_json(args.json, rows, info, extra)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
