"""This machine's limit: measured ``torch.mm`` throughput on the workloads' own layer shapes.

For every matrix-multiply shape of a workload's network (Linear layers as they are, Conv2d
layers as their im2col product, see :func:`bench.common.layer_shapes`) the bench times
``torch.mm`` of an (M, K) by (K, N) product with M = rows per input x a batch of inputs.  The
*mm-limit time* of a measure is then the time this machine needs just for the matrix multiplies
of the naive evaluation (every path point or noise sample a full forward pass over every input):

    limit_s = sum over layers of  forward_inputs * 2 * m * k * n / throughput(layer shape)

and a row's achieved fraction is ``limit_s / measured_s``.  Elementwise work (activations,
pooling, BatchNorm, the loss) is not counted, so a naive method stays below 100 %; a method that
skips work (first-layer factorization, a training-set subsample, early stopping of noise
samples) can show more than 100 %.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from contextlib import contextmanager

import torch

from bench.common import Row

__all__ = ["LimitTable", "apply_limits", "measure_mm", "precision"]

#: per precision: dtype of the operands and whether TF32 tensor cores are allowed
PRECISIONS = {"fp32": (torch.float32, False), "tf32": (torch.float32, True), "bf16": (torch.bfloat16, False)}


@contextmanager
def precision(name: str, device: torch.device):
    """Set the matmul precision for the block: fp32 (TF32 off), tf32 (TF32 on), bf16 (autocast).

    Restores the previous TF32 flags afterwards.
    """
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose one of {sorted(PRECISIONS)}")
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        torch.backends.cudnn.allow_tf32 = name == "tf32"
        if name == "bf16":
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_mm(
    shape: tuple[int, int, int],
    device: torch.device,
    prec: str = "fp32",
    batch: int = 512,
    max_rows: int = 65536,
    min_seconds: float = 0.05,
    repeats: int = 3,
) -> float:
    """Measured throughput (FLOP/s) of ``torch.mm`` for a layer of ``shape`` = (rows per input, K, N).

    M = min(rows * batch, max_rows); each timing repeats the product until ``min_seconds`` have
    passed; the median of ``repeats`` timings is returned.
    """
    rows, k, n = shape
    m = max(1, min(rows * batch, max_rows))
    dtype, _ = PRECISIONS[prec]
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(device, dtype)
    b = torch.randn(k, n, generator=gen).to(device, dtype)
    flops = 2.0 * m * k * n
    with precision("tf32" if prec == "tf32" else "fp32", device):
        torch.mm(a, b)  # warm-up
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        once = max(time.perf_counter() - start, 1e-7)
        inner = max(1, min(1000, int(min_seconds / once)))
        rates = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            for _ in range(inner):
                torch.mm(a, b)
            _sync(device)
            rates.append(flops * inner / (time.perf_counter() - start))
    return statistics.median(rates)


class LimitTable:
    """Measured throughput per (shape, precision), measured once per distinct (K, N, M) product."""

    def __init__(self, device: torch.device, repeats: int = 3, quick: bool = False) -> None:
        self.device = device
        self.repeats = repeats
        self.quick = quick
        self.rates: dict[tuple[tuple[int, int, int], str], float] = {}

    def rate(self, shape: tuple[int, int, int], prec: str = "fp32") -> float:
        key = (tuple(shape), prec)
        if key not in self.rates:
            self.rates[key] = measure_mm(
                tuple(shape),
                self.device,
                prec,
                batch=64 if self.quick else 512,
                max_rows=8192 if self.quick else 65536,
                min_seconds=0.01 if self.quick else 0.05,
                repeats=1 if self.quick else self.repeats,
            )
        return self.rates[key]

    def limit_seconds(self, layers: Iterable[tuple[int, int, int]], forward_inputs: float, prec: str) -> float:
        """Seconds this machine needs for the matrix multiplies of ``forward_inputs`` naive forward passes."""
        return float(sum(forward_inputs * 2.0 * m * k * n / self.rate((m, k, n), prec) for m, k, n in layers))

    def rows(self) -> list[Row]:
        """One row per measured shape: GFLOP/s of torch.mm on this device."""
        out = []
        for (shape, prec), rate in sorted(self.rates.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            rows, k, n = shape
            out.append(
                Row(
                    workload="limit",
                    case=f"mm ({rows}*B)x{k} @ {k}x{n}",
                    method=f"torch.mm {prec} on {self.device.type}",
                    seconds=None,
                    note=f"{rate / 1e9:.1f} GFLOP/s",
                    extra={"flops_per_s": rate, "shape": list(shape), "precision": prec},
                )
            )
        return out

    def to_dict(self) -> list[dict]:
        return [
            {"shape": list(shape), "precision": prec, "gflops": rate / 1e9}
            for (shape, prec), rate in sorted(self.rates.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ]


def apply_limits(rows: list[Row], table: LimitTable) -> None:
    """Fill ``limit_fraction`` (and ``naive_flops``) of every row that names its layers and naive work.

    A row takes part when ``row.layers`` is set and ``row.extra["forward_inputs"]`` gives the
    number of input forward passes of the naive evaluation; ``row.extra["precision"]`` picks the
    throughput (default fp32).
    """
    for r in rows:
        inputs = r.extra.get("forward_inputs")
        if not r.layers or not inputs or r.seconds is None:
            continue
        prec = r.extra.get("precision", "fp32")
        limit_s = table.limit_seconds(r.layers, inputs, prec)
        r.naive_flops = float(inputs * sum(2.0 * m * k * n for m, k, n in r.layers))
        r.extra["mm_limit_s"] = limit_s
        r.limit_fraction = limit_s / r.seconds
