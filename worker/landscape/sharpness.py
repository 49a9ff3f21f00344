"""Hessian sharpness of a minimum, measured on the normalized network (docs/method.md §6, "Hessian sharpness on
the normalized network").

    L(w)   = (1 / m) sum_{i in S} loss(f_w(x_i), y_i)       S: m training samples (a stratified subsample)
    H      = d^2 L / dw^2                                     w: every floating parameter of N(model)
    lambda = the largest eigenvalue of H                      (Lanczos on Hessian-vector products)
    tr(H) ~ (1 / K) sum_k z_k^T H z_k,  z_k in {-1, +1}^P    (Hutchinson, K Rademacher probes)

``loss`` is the evaluator's (mean cross-entropy; the logistic loss for one output, docs/method.md §7) and
``N = symmetry.normalize`` (docs/method.md §2, default options). Plain Hessian sharpness is not a property of the
function a ReLU network computes: rescaling unit k's incoming weights by c and its outgoing ones by 1 / c leaves the
function unchanged but multiplies the Hessian's blocks by c^2 and 1 / c^2, so the top eigenvalue can be made as
large or as small as one likes (Dinh et al. 2017). Every rescaled copy of a network has the same normalized form, so
the Hessian of the normalized network is invariant to those rescalings; permutations move its coordinates
orthogonally and leave the spectrum and the trace unchanged. The Hessian is taken with respect to the normalized
network's parameters as they are, in the full parameter space (weights, biases, BatchNorm affine), not restricted to
the tangent space of the product of spheres.

Hessian-vector products use double backward (``torch.autograd.grad`` with ``create_graph=True``), batched over the
samples; when the samples fit in one batch the gradient's graph is built once and reused by every product. BatchNorm
networks are evaluated in eval mode (running statistics fixed). Binary networks are refused: the sign of a weight has
no Hessian (their flatness is the local energy with flip fractions, §6).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toroid.worker.landscape.device import resolve_device
from toroid.worker.landscape.flatness import stratified_indices
from toroid.worker.landscape.graph import is_binary
from toroid.worker.landscape.results import HessianSharpness
from toroid.worker.landscape.states import _equal_chunks, set_mode
from toroid.worker.landscape.symmetry import normalize

if TYPE_CHECKING:
    from toroid.worker.landscape.data import Dataset

__all__ = ["HessianOperator", "hessian_sharpness", "lanczos_top", "loss_sum"]

Progress = Callable[[float, dict[str, Any]], None]

_CPU_BUDGET = 1024 * 2**20  # bytes of activations and their two backward passes per batch on CPU
_BACKWARD_FACTOR = 6  # forward activations, their gradients and the double-backward buffers, per activation value


def loss_sum(logits: Tensor, y: Tensor) -> Tensor:
    """The summed training loss of one batch, as the evaluator defines it (cross-entropy; logistic for one output),
    in the logits' precision (float32 or float64; lower precisions are computed in float32)."""
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    if logits.dim() == 1 or logits.shape[-1] == 1:
        score = logits.reshape(logits.shape[0], -1)[:, 0] if logits.dim() > 1 else logits
        return F.binary_cross_entropy_with_logits(score, y.to(score.dtype), reduction="sum")
    return F.cross_entropy(logits, y, reduction="sum")


class HessianOperator:
    """The Hessian of the mean loss of ``model`` on ``(x, y)`` w.r.t. its floating parameters, as a linear operator.

    ``model`` is used as it is (the caller's copy: its parameters are set to require gradients; put it in eval mode
    and on the data's device first). Vectors are flat, in the order of ``model.parameters()``, in float64 (CPU and
    CUDA) on the model's device; products are computed in the parameters' precision.
    """

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, batch_size: int | None = None) -> None:
        self.model = model
        self.params = [p for p in model.parameters() if p.is_floating_point()]
        if not self.params:
            raise ValueError("the model has no floating parameters: there is no Hessian to measure")
        for p in self.params:
            p.requires_grad_(True)
        self.device = self.params[0].device
        self.dtype = self.params[0].dtype
        self.vector_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self.numels = [p.numel() for p in self.params]
        self.dimension = int(sum(self.numels))
        if len(x) == 0:
            raise ValueError("the training split is empty: there is no loss to differentiate")
        self.x, self.y = x.to(self.device, self.dtype), y.to(self.device, torch.long)
        self.n = len(self.x)
        self.slices = _equal_chunks(self.n, batch_size or self.n)
        self._graph: tuple[Tensor, tuple[Tensor | None, ...]] | None = None
        self.products = 0  # Hessian-vector products computed

    # ------------------------------------------------------------------ pieces
    def _gradient(self, sl: slice, create_graph: bool) -> tuple[Tensor, tuple[Tensor | None, ...]]:
        with torch.enable_grad():
            loss = loss_sum(self.model(self.x[sl]), self.y[sl]) / self.n
            grads = torch.autograd.grad(loss, self.params, create_graph=create_graph, allow_unused=True)
        return loss.detach(), grads

    def _cached(self) -> tuple[Tensor, tuple[Tensor | None, ...]] | None:
        """The gradient with its graph when the samples fit in one batch (built once, reused by every product)."""
        if len(self.slices) != 1:
            return None
        if self._graph is None:
            self._graph = self._gradient(self.slices[0], True)
        return self._graph

    def _flat(self, parts: list[Tensor | None]) -> Tensor:
        return torch.cat([(torch.zeros(n, device=self.device, dtype=self.vector_dtype) if t is None
                           else t.detach().reshape(-1).to(self.vector_dtype)) for t, n in zip(parts, self.numels,
                                                                                           strict=True)])

    def split(self, vector: Tensor) -> list[Tensor]:
        """A flat vector as tensors shaped like the parameters (in their precision)."""
        if vector.shape != (self.dimension,):
            raise ValueError(f"expected a vector of {self.dimension} entries, got shape {tuple(vector.shape)}")
        chunks = torch.split(vector.to(self.device, self.dtype), self.numels)
        return [c.reshape(p.shape) for c, p in zip(chunks, self.params, strict=True)]

    # ------------------------------------------------------------------ the operator
    def loss(self) -> float:
        """The mean loss on the samples."""
        cached = self._cached()
        if cached is not None:
            return float(cached[0])
        with torch.no_grad():
            return float(sum(loss_sum(self.model(self.x[sl]), self.y[sl]).double() for sl in self.slices) / self.n)

    def gradient(self) -> Tensor:
        """The gradient of the mean loss, flat."""
        total = torch.zeros(self.dimension, device=self.device, dtype=self.vector_dtype)
        for sl in self.slices:
            total += self._flat(list(self._gradient(sl, False)[1]))
        return total

    def matvec(self, vector: Tensor) -> Tensor:
        """H v by double backward: the gradient of (grad L . v), summed over the batches."""
        vs = self.split(vector)
        total = torch.zeros(self.dimension, device=self.device, dtype=self.vector_dtype)
        cached = self._cached()
        for sl in self.slices:
            grads = cached[1] if cached is not None else self._gradient(sl, True)[1]
            used = [(g, v) for g, v in zip(grads, vs, strict=True) if g is not None and g.requires_grad]
            if not used:
                continue
            with torch.enable_grad():
                hv = torch.autograd.grad([g for g, _ in used], self.params, grad_outputs=[v for _, v in used],
                                         retain_graph=cached is not None, allow_unused=True)
            total += self._flat(list(hv))
        self.products += 1
        return total


def lanczos_top(
    matvec: Callable[[Tensor], Tensor],
    dimension: int,
    iterations: int,
    start: Tensor,
    tolerance: float = 1e-4,
    report: Callable[[int, float, float], None] | None = None,
) -> tuple[float, float, int, list[float]]:
    """The largest eigenvalue of a symmetric operator by Lanczos with full reorthogonalization.

    Returns (theta, relative residual |beta_k s_k| / |theta| = ||H y - theta y|| / |theta| of the Ritz pair, steps
    taken, every Ritz value of the last step, largest first). Stops after ``iterations`` steps, when the residual is
    at most ``tolerance``, or when the Krylov space is invariant (exact: residual 0). ``report(step, theta, residual)``
    is called after each step.
    """
    steps = min(int(iterations), int(dimension))
    basis = torch.empty((steps, dimension), device=start.device, dtype=start.dtype)
    q = start / torch.linalg.vector_norm(start)
    alphas: list[float] = []
    betas: list[float] = []
    theta, residual, ritz = 0.0, math.inf, [0.0]
    for k in range(steps):
        basis[k] = q
        w = matvec(q)
        alpha = float(torch.dot(w, q))
        w = w - alpha * q
        if k > 0:
            w = w - betas[-1] * basis[k - 1]
        for _ in range(2):  # full reorthogonalization, twice (Kahan: twice is enough)
            w = w - basis[: k + 1].T @ (basis[: k + 1] @ w)
        beta = float(torch.linalg.vector_norm(w))
        alphas.append(alpha)
        tridiagonal = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        values, vectors = np.linalg.eigh(tridiagonal)
        theta = float(values[-1])
        residual = abs(beta * float(vectors[-1, -1])) / max(abs(theta), 1e-300)
        ritz = [float(v) for v in values[::-1]]
        if report is not None:
            report(k + 1, theta, residual)
        invariant = beta <= 1e-12 * max(abs(theta), float(np.max(np.abs(values))), 1e-300)
        if residual <= tolerance or invariant:
            return theta, (0.0 if invariant else residual), k + 1, ritz
        betas.append(beta)
        q = w / beta
    return theta, residual, steps, ritz


def _auto_batch(model: nn.Module, x: Tensor, device: torch.device) -> int:
    """Samples per batch of a Hessian-vector product: as many as an activation-memory budget allows (1 GiB on CPU,
    a quarter of the free GPU memory), counting the forward activations and both backward passes."""
    numel = [x[0].numel()]

    def hook(_m: nn.Module, _a: Any, out: Any) -> None:
        if isinstance(out, Tensor) and out.dim() > 0:
            numel.append(out[0].numel())

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x[:2])
    finally:
        for h in handles:
            h.remove()
    if len(numel) == 1:  # no leaf modules (an exported program): a conservative batch
        return min(len(x), 256)
    per_sample = x.element_size() * _BACKWARD_FACTOR * sum(numel)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 4
    else:
        budget = _CPU_BUDGET
    return int(min(len(x), max(16, budget // max(per_sample, 1))))


@torch.no_grad()
def _error(model: nn.Module, x: Tensor, y: Tensor, batch: int, device: torch.device, dtype: torch.dtype) -> float:
    """Fraction misclassified (the evaluator's rule: argmax, or score > 0 for one output)."""
    if len(x) == 0:
        return math.nan
    wrong = 0
    for sl in _equal_chunks(len(x), batch):
        logits = model(x[sl].to(device, dtype))
        target = y[sl].to(device)
        if logits.dim() == 1 or logits.shape[-1] == 1:
            score = logits.reshape(logits.shape[0], -1)[:, 0] if logits.dim() > 1 else logits
            wrong += int(((score > 0).long() != target).sum())
        else:
            wrong += int((logits.argmax(dim=-1) != target).sum())
    return wrong / len(x)


def hessian_sharpness(
    model: nn.Module,
    dataset: Dataset | Any,
    iterations: int = 30,
    probes: int = 20,
    samples: int | None = 2048,
    seed: int = 0,
    tolerance: float = 1e-4,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
    *,
    normalized: bool = True,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> HessianSharpness:
    """Top Hessian eigenvalue and Hessian trace of the training loss of the normalized ``model``
    (docs/method.md §6, "Hessian sharpness on the normalized network").

    Parameters
    ----------
    iterations:
        At most this many Lanczos steps (one Hessian-vector product each); fewer when the relative residual of the
        top Ritz pair reaches ``tolerance``.
    probes:
        Rademacher probes of Hutchinson's trace estimate (one product each; 0: no trace).
    samples:
        Training samples in the loss: a stratified subsample of this size (seeded by ``seed``, class proportions
        kept, as the local energy's fast mode); ``None`` or at least the training set's size: all of them.
    seed:
        Seeds the subsample, the Lanczos start vector and the probes (drawn on the CPU, so equal on every device).
    normalized:
        ``True`` (the measure): the Hessian of ``symmetry.normalize(model)``. ``False``: of the raw parameters, for
        comparison only; it changes under the rescalings that leave the network's function unchanged.
    batch_size:
        Samples per batch of a product (default: an activation-memory budget; all samples in one batch when they
        fit, so the gradient's graph is built once).
    dtype:
        Precision of the computation (default: the model's); e.g. ``torch.float64`` for reference values.
    progress:
        ``progress(fraction, info)`` after every Lanczos step (``info["stage"] == "lanczos"``: ``iteration``,
        ``top_eigenvalue``, ``residual``) and every probe (``"trace"``: ``probe``, ``value``, ``trace``).

    Raises ``ValueError`` for binary networks (the sign of a weight has no Hessian) and bad options.
    """
    if is_binary(model):
        raise ValueError("Hessian sharpness needs a continuous network: a binary network computes with the signs of "
                         "its weights, which have no Hessian; measure its flatness with the local energy's flip "
                         "fractions (docs/method.md §6)")
    if not (isinstance(iterations, int) and iterations >= 1):
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    if not (isinstance(probes, int) and probes >= 0):
        raise ValueError(f"probes must be a non-negative integer, got {probes!r}")
    if samples is not None and not (isinstance(samples, int) and samples >= 1):
        raise ValueError(f"samples must be a positive integer or None (all), got {samples!r}")
    if not (isinstance(tolerance, int | float) and tolerance >= 0):
        raise ValueError(f"tolerance must be a non-negative number, got {tolerance!r}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    started = time.perf_counter()
    dev = resolve_device(device)

    net = copy.deepcopy(model)
    if dtype is not None:
        net = net.to(dtype)
    if normalized:
        net = normalize(net)
    net = set_mode(net.to(dev), False)
    x_train, y_train = torch.as_tensor(dataset.x_train), torch.as_tensor(dataset.y_train)
    n_train = len(y_train)
    indices = None
    if samples is not None and samples < n_train:
        indices = stratified_indices(y_train, samples, seed)
        x, y = x_train[indices], y_train[indices]
    else:
        x, y = x_train, y_train
    param_dtype = next(p.dtype for p in net.parameters() if p.is_floating_point())
    x = x.to(dev, param_dtype)
    batch = batch_size or _auto_batch(net, x, dev)
    op = HessianOperator(net, x, y, batch)
    train_loss = op.loss()

    total = iterations + probes

    def lanczos_report(step: int, theta: float, residual: float) -> None:
        if progress is not None:
            progress(step / total, {"stage": "lanczos", "iteration": step, "top_eigenvalue": theta,
                                    "residual": residual})

    gen = torch.Generator().manual_seed(int(seed) * 1_000_003)
    start = torch.randn(op.dimension, generator=gen, dtype=torch.float64).to(dev, op.vector_dtype)
    theta, residual, steps, ritz = lanczos_top(op.matvec, op.dimension, iterations, start, tolerance, lanczos_report)

    probe_gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + 1)
    values: list[float] = []
    for i in range(probes):
        z = (torch.randint(0, 2, (op.dimension,), generator=probe_gen, dtype=torch.int8) * 2 - 1)
        z = z.to(dev, op.vector_dtype)
        values.append(float(torch.dot(z, op.matvec(z))))
        if progress is not None:
            progress((iterations + i + 1) / total, {"stage": "trace", "probe": i + 1, "value": values[-1],
                                                    "trace": float(np.mean(values))})
    trace = float(np.mean(values)) if values else None
    trace_stderr = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None

    error_batch = max(batch, 256)
    base_train = _error(net, x_train, y_train, error_batch, dev, param_dtype)
    base_test = _error(net, torch.as_tensor(dataset.x_test), torch.as_tensor(dataset.y_test), error_batch, dev,
                       param_dtype)
    return HessianSharpness(
        top_eigenvalue=theta,
        residual=residual,
        iterations=steps,
        ritz_values=ritz,
        trace=trace,
        trace_stderr=trace_stderr,
        trace_samples=values,
        probes=len(values),
        samples=len(y),
        parameters=op.dimension,
        train_loss=train_loss,
        base_train_error=base_train,
        base_test_error=base_test,
        normalized=bool(normalized),
        extra={"seed": int(seed), "tolerance": float(tolerance), "products": op.products, "batch_size": batch,
               "dtype": str(param_dtype).removeprefix("torch."), "device": dev.type,
               "seconds": time.perf_counter() - started},
    )
