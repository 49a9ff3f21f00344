"""``python -m bench scaling``: time and peak memory of paths, flatness and tori vs inputs, points and width.

One axis varies at a time around a base case (MLP 784-W-W-10, N train inputs + N/4 test inputs of
synthetic MNIST-shaped data, random-init endpoints):

* inputs N in 1,000 .. 50,000 (points 9, width 256);
* points P in 9 .. 129 (N = 2,000, width 256): path points; flatness noisy evaluations (exact mode, one
  sigma, P samples); torus grid points (resolution r, r^2 ~ P: 3, 6, 11);
* width W in 128 .. 2,048 (N = 2,000, P = 9).

The grid is chosen so that the whole run stays under about 10 minutes on a 2-core machine (about
24 measurements of a few seconds each, plus one process start per measurement).

Every measurement runs in its own subprocess, so that its peak memory is its own: the child reports
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the peak resident set size, which covers torch's CPU
allocations that ``tracemalloc`` does not see) before and after the measured call; the table shows
the peak and the growth during the call (peak after - peak before the call, which includes the data
and the evaluator's caches built inside the call).  ``--quick`` runs a 3-point grid per axis on small
sizes.  The plot goes to docs/img/scaling.png (``--plot PATH`` elsewhere).

Usage: ``.venv/bin/python -m bench scaling [--quick] [--threads 1]`` or ``python -m bench.scaling``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import Row, Settings

ANALYSES = ("paths", "flatness", "torus")
BASE = {"inputs": 2000, "points": 9, "width": 256}
AXES = {
    "inputs": [1000, 4000, 16000, 50000],
    "points": [9, 33, 129],
    "width": [128, 512, 2048],
}
QUICK_AXES = {"inputs": [500, 1000, 2000], "points": [9, 17, 33], "width": [64, 128, 256]}
QUICK_BASE = {"inputs": 500, "points": 9, "width": 64}
TORUS_RESOLUTION = {9: 3, 17: 4, 33: 6, 129: 11}
DEFAULT_PLOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "scaling.png"


def _mlp(width: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 10)).eval()


def measure_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this process and return seconds and ru_maxrss (KiB on Linux) before/after."""
    from bench.paths import synthetic_mnist
    from toroid.worker.landscape.flatness import local_energy
    from toroid.worker.landscape.paths import path_profile
    from toroid.worker.landscape.torus import torus_slice

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    n, points, width = int(spec["inputs"]), int(spec["points"]), int(spec["width"])
    data = synthetic_mnist(n, max(1, n // 4))
    a, b = _mlp(width, 0), _mlp(width, 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if spec["analysis"] == "paths":
        path_profile(a, b, data, "linear", points, device="cpu")
        evaluated = points
    elif spec["analysis"] == "flatness":
        local_energy(a, data, [0.1], samples=points, mode="exact", device="cpu")
        evaluated = points + 1
    else:
        res = TORUS_RESOLUTION.get(points, max(2, round(points**0.5)))
        torus_slice(a, b, data, resolution=res, device="cpu")
        evaluated = res * res
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**spec, "seconds": seconds, "evaluated": evaluated, "rss_before_kib": before, "rss_peak_kib": after}


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scaling", "--one", json.dumps(spec)],
        cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scaling measurement {spec} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def grid(quick: bool) -> list[dict[str, Any]]:
    axes, base = (QUICK_AXES, QUICK_BASE) if quick else (AXES, BASE)
    specs, seen = [], set()
    for analysis in ANALYSES:
        for axis, values in axes.items():
            for v in values:
                point = {**base, axis: v}
                key = (analysis, point["inputs"], point["points"], point["width"])
                if key in seen:
                    continue
                seen.add(key)
                specs.append({"analysis": analysis, **point})
    return specs


def plot(results: list[dict[str, Any]], path: Path, quick: bool) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", flush=True)
        return None
    axes, base = (QUICK_AXES, QUICK_BASE) if quick else (AXES, BASE)
    fig, grid_ax = plt.subplots(2, 3, figsize=(13, 7.5))
    for col, axis in enumerate(axes):
        for analysis in ANALYSES:
            pts = sorted(
                (r[axis], r["seconds"], r["rss_peak_kib"] / 1024)
                for r in results
                if r["analysis"] == analysis and all(r[k] == base[k] for k in base if k != axis)
            )
            if not pts:
                continue
            xs = [p[0] for p in pts]
            grid_ax[0][col].plot(xs, [p[1] for p in pts], "o-", label=analysis)
            grid_ax[1][col].plot(xs, [p[2] for p in pts], "o-", label=analysis)
        for row, label in ((0, "seconds"), (1, "peak RSS (MiB)")):
            ax = grid_ax[row][col]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(axis)
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        others = ", ".join(f"{k} {v}" for k, v in base.items() if k != axis)
        grid_ax[0][col].set_title(f"vs {axis} ({others})", fontsize=9)
    fig.suptitle(f"Toroid cost vs size (MLP 784-W-W-10, CPU, {torch.get_num_threads()} thread(s))")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _slope(results: list[dict[str, Any]], analysis: str, axis: str, base: dict[str, int]) -> float | None:
    """Log-log slope of time between the smallest and largest value of ``axis`` (1 = linear)."""
    import math

    pts = sorted((r[axis], r["seconds"]) for r in results
                 if r["analysis"] == analysis and all(r[k] == base[k] for k in base if k != axis))
    if len(pts) < 2 or pts[0][1] <= 0:
        return None
    (x0, t0), (x1, t1) = pts[0], pts[-1]
    return math.log(t1 / t0) / math.log(x1 / x0)


def run_scaling(settings: Settings, plot_path: Path | None = None) -> list[Row]:
    specs = grid(settings.quick)
    threads = torch.get_num_threads()
    results = []
    for spec in specs:
        r = _run_child({**spec, "threads": threads})
        results.append(r)
        print(f"  scaling {r['analysis']:<8} inputs {r['inputs']:>6} points {r['points']:>4} width {r['width']:>5}: "
              f"{r['seconds']:8.2f} s, peak RSS {r['rss_peak_kib'] / 1024:7.0f} MiB "
              f"(+{(r['rss_peak_kib'] - r['rss_before_kib']) / 1024:.0f} during the call), load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
    out = plot(results, plot_path or DEFAULT_PLOT, settings.quick)
    base = QUICK_BASE if settings.quick else BASE
    rows = []
    for r in results:
        rows.append(Row(
            "scaling", f"{r['analysis']} N{r['inputs']} P{r['points']} W{r['width']}", "Toroid", r["seconds"],
            [r["seconds"]], note=f"peak RSS {r['rss_peak_kib'] / 1024:.0f} MiB "
                                 f"(+{(r['rss_peak_kib'] - r['rss_before_kib']) / 1024:.0f}); {r['evaluated']} evals",
            extra=r,
        ))
    for analysis in ANALYSES:
        slopes = {axis: _slope(results, analysis, axis, base) for axis in AXES}
        text = ", ".join(f"{k} {v:.2f}" for k, v in slopes.items() if v is not None)
        rows.append(Row("scaling", f"{analysis} log-log slope", "time", None, note=f"{text} (1.00 = linear)"))
    if out is not None:
        print(f"  scaling plot: {out}", flush=True)
    return rows


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--one":
        print(json.dumps(measure_one(json.loads(sys.argv[2]))), flush=True)
        return
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--plot", default=None, help=f"PNG path (default {DEFAULT_PLOT})")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run_scaling(Settings(quick=args.quick, repeats=1), Path(args.plot) if args.plot else None)
    for r in rows:
        print(f"{r.case:<34} {r.method:<8} {'' if r.seconds is None else f'{r.seconds:.2f} s':>10}  {r.note}")


if __name__ == "__main__":
    main()
