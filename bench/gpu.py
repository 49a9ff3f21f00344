"""GPU suite: VGG16-BN and ResNet-18 path profiles and local energy on 50,000 CIFAR-shaped inputs.

Run as one prepared command on a GPU machine (``make bench-gpu`` = ``python -m bench --device
cuda``; it also runs the ``limit`` workload for the achieved fraction of measured torch.mm
throughput per precision).  Sized to finish in well under 10 minutes on one H100 with one
repetition (``--repeats 1``); the default 3 repetitions take about three times as long.

Per network (end points: one epoch of SGD on the synthetic data, on the GPU):

* 33-point ``linear`` path in fp32 (TF32 off: the reference), and ``linear`` and ``geodesic``
  paths under each reduced precision (BatchNorm statistics recomputed at every point, the
  core's default; 50,000 train + 10,000 test inputs);
* local energy, 8 sigmas: ``fast`` mode (stratified 2,048-input subsample, noise samples until
  the standard error is < 0.5 points, at most 100) under each reduced precision, and ``exact``
  mode with 32 samples per sigma on the whole training set in bf16.

Precisions: the core has no autocast option, so the bench sets them around the core's calls:
``fp32`` (``torch.backends.cuda.matmul.allow_tf32 = cudnn.allow_tf32 = False``), ``tf32``
(both True), ``bf16`` (``torch.autocast(dtype=bfloat16)``; a failure is reported in the row's
note, not hidden).  ``--compile`` adds a row with the evaluator's working model compiled by
``nn.Module.compile()`` (fp32 on CPU, tf32 on CUDA).

``--device cpu --gpu-suite --quick`` (or ``python -m bench gpu --device cpu --quick``) runs the
same code on tiny networks and data (VGG width_scale 1/16, ResNet width 4 with one block per
stage, 64 + 64 inputs, 9-point paths, 4 exact / at most 16 fast noise samples per sigma) so
the path is exercised without a GPU; there TF32 does not exist and is skipped.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import torch

from bench.common import Row, Settings, layer_shapes, synthetic_images, time_median, train_quick
from bench.limit import precision

__all__ = ["gpu_networks", "run_gpu"]

POINTS = 33
SAMPLES = 32


def gpu_networks(quick: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, architecture, config) of the suite's networks; tiny ones with ``quick``."""
    if quick:
        return [
            ("VGG16-BN (width 1/16)", "vgg", {"depth": 16, "width_scale": 1 / 16}),
            ("ResNet-18 (width 4, 1 block/stage)", "resnet", {"width": 4, "blocks": [1, 1, 1, 1]}),
        ]
    return [("VGG16-BN", "vgg", {"depth": 16}), ("ResNet-18", "resnet", {"width": 64, "blocks": [2, 2, 2, 2]})]


def _attempt(fn: Callable[[], Any], reps: int, device: torch.device) -> tuple[float | None, list[float], Any, str]:
    """time_median that turns a failure into a note (the suite must go on to the next row)."""
    try:
        t, runs, out = time_median(fn, reps, device)
        return t, runs, out, ""
    except Exception as exc:  # noqa: BLE001 - reported in the table, with the exception type
        traceback.print_exc()
        return None, [], None, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}"


def _compiled_evaluator(template: torch.nn.Module, data, device: torch.device):
    from toroid.worker.landscape.evaluate import Evaluator

    ev = Evaluator(template, data, device)
    ev.model.compile(dynamic=False)
    return ev


def run_gpu(settings: Settings) -> list[Row]:
    """The ``gpu`` workload on ``settings.device`` (CUDA for real numbers, CPU with --quick to exercise it)."""
    dev = settings.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    n_train, n_test = (64, 64) if settings.quick else (50_000, 10_000)
    data = synthetic_images(n_train, n_test, (3, 32, 32), seed=2)
    reduced = ["tf32", "bf16"] if dev.type == "cuda" else ["bf16"]
    rows: list[Row] = []
    for label, arch, config in gpu_networks(settings.quick):
        rows += _network_rows(settings, data, reduced, label, arch, config)
    return rows


def _network_rows(
    settings: Settings, data, reduced: list[str], label: str, arch: str, config: dict[str, Any]
) -> list[Row]:
    """Path and local-energy rows of one network of the suite."""
    from toroid.worker.landscape.flatness import DEFAULT_SIGMAS, local_energy
    from toroid.worker.landscape.paths import path_profile, prepare_endpoints

    dev, reps = settings.device, settings.repeats
    n_train, n_test = len(data.y_train), len(data.y_test)
    points, samples, fast_max = (9, 4, 16) if settings.quick else (POINTS, SAMPLES, 100)
    rows: list[Row] = []
    print(f"[bench gpu] {label}: training two end points ...", flush=True)
    a = train_quick(arch, config, data, seed=0, epochs=1, device=dev, lr=0.01)
    b = train_quick(arch, config, data, seed=1, epochs=1, device=dev, lr=0.01)
    layers = layer_shapes(a, (3, 32, 32))
    path_inputs = points * (2 * n_train + n_test)  # BN recompute pass + train + test at each point
    case = f"{label}, {n_train}+{n_test}, {points}-pt path"
    baseline = "linear fp32"
    ga, gb = prepare_endpoints(a, b, "geodesic")

    def path(kind: str, prec: str, ev_factory=None):
        pa, pb = (ga, gb) if kind == "geodesic" else (a, b)

        def go():
            ev = ev_factory(pa) if ev_factory is not None else None
            with precision(prec, dev):
                return path_profile(pa, pb, data, kind, points, device=dev, prepared=kind == "geodesic",
                                    evaluator=ev)

        return go

    plan = [("linear", "fp32")] + [(kind, p) for p in reduced for kind in ("linear", "geodesic")]
    for kind, prec in plan:
        print(f"[bench gpu] {label}: {kind} path {prec} ...", flush=True)
        t, runs, prof, note = _attempt(path(kind, prec), reps, dev)
        if prof is not None:
            note = f"barrier {prof.barrier:.3f}, factorized {prof.extra.get('factorized')}"
        rows.append(Row("gpu", case, f"{kind} {prec}", t, runs, note=note, layers=layers, baseline=baseline,
                        extra={"forward_inputs": path_inputs, "precision": prec}))
    if settings.compile:
        prec = "tf32" if dev.type == "cuda" else "fp32"
        print(f"[bench gpu] {label}: linear path {prec} compiled ...", flush=True)
        t, runs, prof, note = _attempt(
            path("linear", prec, lambda tpl: _compiled_evaluator(tpl, data, dev)), reps, dev
        )
        if prof is not None:
            note = f"barrier {prof.barrier:.3f}; includes compilation on every run"
        rows.append(Row("gpu", case, f"linear {prec} torch.compile", t, runs, note=note, layers=layers,
                        baseline=baseline, extra={"forward_inputs": path_inputs, "precision": prec}))

    sigmas = list(DEFAULT_SIGMAS.get(arch, DEFAULT_SIGMAS["vgg"]))
    le_case = f"{label}, {n_train} train, local energy {len(sigmas)} sigmas"
    le_inputs = (len(sigmas) * samples + 1) * n_train

    def energy(mode: str, prec: str):
        def go():
            with precision(prec, dev):
                return local_energy(a, data, sigmas, samples=samples if mode == "exact" else fast_max, mode=mode,
                                    device=dev)

        return go

    le_plan = [("fast", p) for p in reduced] + [("exact", "bf16")]
    for mode, prec in le_plan:
        print(f"[bench gpu] {label}: local energy {mode} {prec} ...", flush=True)
        t, runs, le, note = _attempt(energy(mode, prec), reps, dev)
        if le is not None:
            note = f"max stderr {max(le.stderr) * 100:.2f} pts, {sum(le.samples)} noisy evals"
        method = f"{mode} {prec}" + (f" ({samples}/sigma)" if mode == "exact" else f" (<= {fast_max}/sigma)")
        rows.append(Row("gpu", le_case, method, t, runs, note=note, layers=layers,
                        baseline=f"exact bf16 ({samples}/sigma)",
                        extra={"forward_inputs": le_inputs, "precision": prec}))
    return rows
