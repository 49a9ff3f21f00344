"""Shared pieces of ``python -m bench``: timing, result rows, the table, naive FLOP counts, data.

Every workload returns a list of :class:`Row`.  A row is one method on one case, timed as the
median of several runs in the same process.  ``naive_flops`` is the matrix-multiply work a
straightforward evaluation of the same measure needs (every point / noise sample a full forward
pass over every input); :mod:`bench.limit` turns it into an achieved fraction of the machine's
measured ``torch.mm`` throughput, so a method that does less work (first-layer factorization,
subsampling) shows as more than 100 %.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from toroid.worker.landscape.data import Dataset
from toroid.worker.landscape.nets import build_model

__all__ = [
    "Row",
    "Settings",
    "bench_device",
    "layer_shapes",
    "machine_info",
    "naive_forward_flops",
    "print_table",
    "synthetic_images",
    "time_interleaved",
    "time_median",
    "train_quick",
    "write_json",
]


@dataclass
class Settings:
    """Options shared by every workload (from the command line)."""

    quick: bool = False
    repeats: int = 3
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    compile: bool = False
    lenet_inputs: int | None = None


@dataclass
class Row:
    """One measured method on one case.

    ``seconds`` is the median wall time (``None``: not run, ``note`` says why); ``baseline``
    names the row (same workload and case) the speed-up is computed against; ``layers`` are the
    (M, K, N) matrix-multiply shapes of one naive forward pass per input row, used by
    :mod:`bench.limit`.
    """

    workload: str
    case: str
    method: str
    seconds: float | None
    runs: list[float] = field(default_factory=list)
    note: str = ""
    naive_flops: float | None = None
    layers: list[tuple[int, int, int]] = field(default_factory=list)
    baseline: str | None = None
    speedup: float | None = None
    limit_fraction: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = [list(s) for s in self.layers]
        return out


def time_median(
    fn: Callable[[], Any], repeats: int, sync: torch.device | None = None
) -> tuple[float, list[float], Any]:
    """(median seconds, every run's seconds, last result) of ``repeats`` calls of ``fn``.

    On CUDA the device is synchronized before reading the clock.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats}")
    times: list[float] = []
    out: Any = None
    for _ in range(repeats):
        if sync is not None and sync.type == "cuda":
            torch.cuda.synchronize(sync)
        start = time.perf_counter()
        out = fn()
        if sync is not None and sync.type == "cuda":
            torch.cuda.synchronize(sync)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


def time_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, sync: torch.device | None = None
) -> dict[str, tuple[float, list[float], Any]]:
    """Like :func:`time_median` for several methods, run in turn within each repetition (A B C A B C ...).

    On a shared machine the load drifts: interleaving gives every method the same mix of quiet and busy
    moments, so their ratios are fairer than timing all runs of one method, then all of the next.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats}")
    times: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            if sync is not None and sync.type == "cuda":
                torch.cuda.synchronize(sync)
            start = time.perf_counter()
            outs[name] = fn()
            if sync is not None and sync.type == "cuda":
                torch.cuda.synchronize(sync)
            times[name].append(time.perf_counter() - start)
    return {k: (statistics.median(v), v, outs[k]) for k, v in times.items()}


def bench_device(name: str) -> torch.device:
    """The device named on the command line, with a clear error when CUDA is asked for but absent."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise SystemExit(f"--device {name!r} is not a torch device; use 'cpu' or 'cuda' (or 'cuda:0')") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"--device {name} asks for CUDA but torch.cuda.is_available() is False on this machine "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}). Run the GPU suite on a "
            "machine with an NVIDIA GPU and a CUDA build of torch, or exercise its code path here with "
            "`python -m bench gpu --device cpu --quick`."
        )
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device {name!r}: the benchmarks support 'cpu' and 'cuda' only")
    return device


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, load average, torch, threads, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


# --------------------------------------------------------------------------------- naive FLOPs
def layer_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Matrix-multiply shapes (rows per input, K, N) of one forward pass of ``model`` per input.

    Linear: (1, in, out).  Conv2d as im2col: (H_out * W_out, C_in / groups * kh * kw, C_out)
    (groups > 1 counted as one product of the summed size).  Elementwise work is not counted.
    """
    shapes: list[tuple[int, int, int]] = []
    hooks = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            rows = int(output.numel() // output.shape[0] // module.out_features)
            shapes.append((rows, module.in_features, module.out_features))
        elif isinstance(module, nn.Conv2d):
            _, c_out, h, w = output.shape
            kh, kw = module.kernel_size
            shapes.append((int(h * w), int(module.in_channels // module.groups * kh * kw), int(c_out)))

    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            device = next(model.parameters()).device
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return shapes


def naive_forward_flops(shapes: Iterable[tuple[int, int, int]]) -> float:
    """FLOPs (2 per multiply-add) of one forward pass of one input."""
    return float(sum(2 * m * k * n for m, k, n in shapes))


# ------------------------------------------------------------------------------------ data
def synthetic_images(n_train: int, n_test: int, shape: tuple[int, ...], classes: int = 10, seed: int = 0) -> Dataset:
    """Standard-normal inputs of ``shape`` labelled by a random linear teacher (argmax of x T)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, *shape, generator=gen)
    dim = x[0].numel()
    teacher = torch.randn(dim, classes, generator=gen)
    y = torch.cat([(chunk.reshape(len(chunk), -1) @ teacher).argmax(1) for chunk in x.split(8192)])
    return Dataset(
        name="synthetic",
        options={"n_train": n_train, "n_test": n_test, "shape": list(shape), "seed": seed},
        x_train=x[:n_train].contiguous(),
        y_train=y[:n_train].contiguous(),
        x_test=x[n_train:].contiguous(),
        y_test=y[n_train:].contiguous(),
        input_shape=tuple(shape),
        num_classes=classes,
    )


def train_quick(
    arch: str,
    config: dict[str, Any] | None,
    data: Dataset,
    seed: int,
    epochs: int = 1,
    device: torch.device | None = None,
    batch_size: int = 128,
    lr: float = 0.02,
) -> nn.Module:
    """A few epochs of SGD + Nesterov momentum: end points for timing (their quality is irrelevant to speed)."""
    device = device or torch.device("cpu")
    model = build_model(arch, config, data, seed=seed).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = data.x_train.to(device), data.y_train.to(device)
    for _ in range(epochs):
        perm = torch.randperm(len(y_all), generator=gen).to(device)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.cpu().eval()


# ----------------------------------------------------------------------------------- output
def _fmt_seconds(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{t:.3f}" if t < 100 else f"{t:.1f}"


def print_table(rows: list[Row], info: dict[str, Any], repeats: int) -> str:
    """The one table of a run (also returned as text)."""
    load = ", ".join(f"{x:.2f}" for x in info["load_average"])
    lines = [
        f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, {info['threads']} threads, "
        f"device {info['device']}" + (f" ({info['gpu']})" if "gpu" in info else ""),
        f"load average at start {load}; medians of {repeats} run(s) per row",
    ]
    if "load_average_end" in info:
        lines[-1] += "; at end " + ", ".join(f"{x:.2f}" for x in info["load_average_end"])
    header = (
        f"{'workload':<9} {'case':<30} {'method':<38} {'median s':>9} {'speed-up':>9} {'of mm limit':>11}  note"
    )
    lines += [header, "-" * len(header)]
    for r in rows:
        speed = f"{r.speedup:.2f}x" if r.speedup is not None else ""
        frac = f"{r.limit_fraction * 100:.0f}%" if r.limit_fraction is not None else ""
        lines.append(
            f"{r.workload:<9} {r.case[:30]:<30} {r.method[:38]:<38} {_fmt_seconds(r.seconds):>9} {speed:>9} "
            f"{frac:>11}  {r.note}"
        )
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def fill_speedups(rows: list[Row]) -> None:
    """speed-up of each row = baseline row's seconds / this row's seconds (same workload and case)."""
    index = {(r.workload, r.case, r.method): r for r in rows}
    for r in rows:
        if r.baseline is None or r.seconds is None:
            continue
        base = index.get((r.workload, r.case, r.baseline))
        if base is not None and base.seconds is not None and r.seconds > 0:
            r.speedup = base.seconds / r.seconds


def write_json(path: str | Path, rows: list[Row], info: dict[str, Any], extra: dict[str, Any]) -> None:
    """All rows, the machine and workload extras (e.g. the mm throughput table) as JSON."""
    payload = {"machine": info, "rows": [r.to_dict() for r in rows], **extra}
    Path(path).write_text(json.dumps(payload, indent=2, default=float) + "\n")
