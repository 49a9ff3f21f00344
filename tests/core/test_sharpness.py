"""Hessian sharpness on the normalized network (docs/method.md §6): Lanczos and Hutchinson against the full Hessian
of a linear softmax classifier (closed form and ``torch.autograd.functional.hessian``), Hessian-vector products
against finite differences of the gradient, and invariance to the rescalings that change the raw Hessian."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.core.conftest import make, quick_sgd
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.results import HessianSharpness
from toroid.worker.landscape.sharpness import HessianOperator, hessian_sharpness, lanczos_top
from toroid.worker.landscape.symmetry import normalize, random_symmetry

torch.set_num_threads(1)
F64 = torch.float64


def toy_dataset(n: int = 12, d: int = 5, classes: int = 3, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.arange(n) % classes
    return SimpleNamespace(x_train=x, y_train=y, x_test=x[:4], y_test=y[:4])


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


# --------------------------------------------------------------------------------------------------
# against the full Hessian


def test_lanczos_finds_the_algebraically_largest_eigenvalue():
    values = torch.tensor([-7.0, -1.0, 0.0, 0.5, 2.0, 3.0], dtype=F64)
    start = torch.ones(6, dtype=F64)
    theta, residual, steps, ritz = lanczos_top(lambda v: values * v, 6, 20, start, tolerance=1e-12)
    assert theta == pytest.approx(3.0, rel=1e-12) and residual <= 1e-12 and steps <= 6
    assert ritz[0] == pytest.approx(3.0) and ritz[-1] == pytest.approx(-7.0)  # both ends of the spectrum


def test_linear_softmax_classifier_matches_its_closed_form_hessian():
    data = toy_dataset()
    model = nn.Sequential(nn.Linear(5, 3, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=F64))
    w = normalize(model)[0].weight.detach()  # the last layer scaled to ||W||_F = sqrt(3)
    assert float(w.norm()) == pytest.approx(math.sqrt(3))
    x = data.x_train.double()

    # closed form: H = (1/n) sum_i (diag(p_i) - p_i p_i^T) kron x_i x_i^T, W flattened row by row
    p = torch.softmax(x @ w.T, dim=1)
    closed = sum(torch.kron(torch.diag(pi) - torch.outer(pi, pi), torch.outer(xi, xi)) for pi, xi in zip(p, x,
                                                                                                      strict=True))
    closed = closed / len(x)

    def loss(flat: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(x @ flat.reshape(3, 5).T, data.y_train)

    full = torch.autograd.functional.hessian(loss, w.reshape(-1))
    torch.testing.assert_close(full, closed, rtol=1e-10, atol=1e-12)
    eigenvalues = torch.linalg.eigvalsh(full)

    result = hessian_sharpness(model, data, iterations=15, probes=400, samples=None, device="cpu", tolerance=1e-10)
    assert result.top_eigenvalue == pytest.approx(float(eigenvalues[-1]), rel=1e-9)
    assert result.residual <= 1e-10 and result.iterations <= 15
    assert result.parameters == 15 and result.samples == 12 and result.probes == 400 and result.normalized
    exact_trace = float(torch.trace(full))
    assert abs(result.trace - exact_trace) <= 4 * result.trace_stderr
    assert result.trace_stderr < 0.05 * exact_trace
    assert result.train_loss == pytest.approx(float(loss(w.reshape(-1))), rel=1e-12)


def test_a_biased_linear_classifier_matches_autograd_hessian_and_the_exact_trace():
    """With the bias too (20 parameters): the top eigenvalue exactly; the trace of Hutchinson's estimator is
    unbiased, and with every probe's z^T H z recorded its mean is the reported trace."""
    data = toy_dataset(n=16, d=5, classes=4, seed=2)
    model = nn.Sequential(nn.Linear(5, 4)).double()
    normal = normalize(model)
    weight, bias = normal[0].weight.detach(), normal[0].bias.detach()
    x = data.x_train.double()

    def loss(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(x @ w.T + b, data.y_train)

    blocks = torch.autograd.functional.hessian(loss, (weight, bias))
    full = torch.cat([torch.cat([blocks[0][0].reshape(20, 20), blocks[0][1].reshape(20, 4)], 1),
                      torch.cat([blocks[1][0].reshape(4, 20), blocks[1][1].reshape(4, 4)], 1)], 0)
    result = hessian_sharpness(model, data, iterations=24, probes=200, samples=None, device="cpu", tolerance=1e-10,
                               seed=3)
    assert result.top_eigenvalue == pytest.approx(float(torch.linalg.eigvalsh(full)[-1]), rel=1e-9)
    assert abs(result.trace - float(torch.trace(full))) <= 4 * result.trace_stderr
    assert result.trace == pytest.approx(float(np.mean(result.trace_samples)))
    assert result.trace_stderr == pytest.approx(float(np.std(result.trace_samples, ddof=1) / math.sqrt(200)))
    assert result.ritz_values[0] == result.top_eigenvalue
    assert HessianSharpness.from_dict(result.to_dict()) == result


# --------------------------------------------------------------------------------------------------
# Hessian-vector products


def mlp(data, seed: int = 0, widths=(8, 6)) -> nn.Module:
    return build_model("mlp", {"widths": list(widths)}, data, seed=seed).double().eval()


def test_hessian_vector_product_matches_finite_differences_of_the_gradient(digits):
    model = mlp(digits)
    x, y = digits.x_train[:64].double(), digits.y_train[:64]
    op = HessianOperator(model, x, y)
    v = torch.randn(op.dimension, generator=torch.Generator().manual_seed(5), dtype=F64)
    hv = op.matvec(v)

    eps = 1e-5
    base = torch.nn.utils.parameters_to_vector(model.parameters()).detach()

    def gradient_at(point: torch.Tensor) -> torch.Tensor:
        shifted = mlp(digits)
        torch.nn.utils.vector_to_parameters(point, shifted.parameters())
        return HessianOperator(shifted, x, y).gradient()

    finite = (gradient_at(base + eps * v) - gradient_at(base - eps * v)) / (2 * eps)
    assert float((hv - finite).norm() / finite.norm()) < 1e-6
    # batches: the same product summed over four batches (the gradient's graph rebuilt per batch)
    batched = HessianOperator(mlp(digits), x, y, batch_size=16)
    assert len(batched.slices) == 4
    torch.testing.assert_close(batched.matvec(v), hv, rtol=1e-10, atol=1e-12)
    assert op.products == 1


# --------------------------------------------------------------------------------------------------
# invariance (Dinh et al. 2017: the raw Hessian is not a property of the function)


@pytest.fixture(scope="module")
def trained(digits):
    return quick_sgd(digits, 0, config={"widths": [16, 12]}, epochs=6).double()


def test_normalized_sharpness_is_invariant_to_rescaling_while_the_raw_hessian_is_not(trained, digits):
    rescaled, moves = random_symmetry(trained, seed=4, permute=False, flip=False, rescale=(0.1, 10.0))
    assert set(moves["scales"]) == {"fc1", "fc2"}
    with torch.no_grad():  # the same function
        torch.testing.assert_close(rescaled(digits.x_test.double()), trained(digits.x_test.double()))
    options = {"iterations": 40, "probes": 8, "samples": 512, "device": "cpu", "tolerance": 1e-8}
    a, b = hessian_sharpness(trained, digits, **options), hessian_sharpness(rescaled, digits, **options)
    assert relative(a.top_eigenvalue, b.top_eigenvalue) < 1e-6
    assert relative(a.trace, b.trace) < 1e-6 and relative(a.train_loss, b.train_loss) < 1e-9
    assert all(relative(s, t) < 1e-6 for s, t in zip(a.trace_samples, b.trace_samples, strict=True))
    assert a.top_eigenvalue > 0 and a.residual <= 1e-8

    raw_a = hessian_sharpness(trained, digits, **options, normalized=False)
    raw_b = hessian_sharpness(rescaled, digits, **options, normalized=False)
    assert not raw_a.normalized and raw_a.train_loss == pytest.approx(raw_b.train_loss, rel=1e-9)  # same function
    ratio = raw_b.top_eigenvalue / raw_a.top_eigenvalue
    assert ratio > 2 or ratio < 0.5, (raw_a.top_eigenvalue, raw_b.top_eigenvalue)  # ... and a different Hessian


def test_a_permutation_leaves_the_converged_top_eigenvalue_unchanged(trained, digits):
    permuted, _ = random_symmetry(trained, seed=6, permute=True, flip=False, rescale=(0.5, 2.0))
    options = {"iterations": 60, "probes": 0, "samples": 256, "device": "cpu", "tolerance": 1e-9}
    a, b = hessian_sharpness(trained, digits, **options), hessian_sharpness(permuted, digits, **options)
    assert a.trace is None and a.trace_stderr is None and a.probes == 0
    assert relative(a.top_eigenvalue, b.top_eigenvalue) < 1e-7


def test_batchnorm_networks_are_measured_in_eval_mode_and_invariantly():
    data = ((3, 8, 8), 10)
    model = make("vgg", {"depth": 11, "width_scale": 1 / 16}, data).double()
    g = torch.Generator().manual_seed(0)
    dataset = SimpleNamespace(x_train=torch.randn(48, 3, 8, 8, generator=g), y_train=torch.arange(48) % 10,
                              x_test=torch.randn(8, 3, 8, 8, generator=g), y_test=torch.arange(8) % 10)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    rescaled, _ = random_symmetry(model, seed=1, permute=False, flip=False, rescale=(0.3, 3.0))
    options = {"iterations": 30, "probes": 3, "samples": None, "device": "cpu", "tolerance": 1e-8}
    a, b = hessian_sharpness(model, dataset, **options), hessian_sharpness(rescaled, dataset, **options)
    assert math.isfinite(a.top_eigenvalue) and a.samples == 48
    assert relative(a.top_eigenvalue, b.top_eigenvalue) < 1e-6 and relative(a.trace, b.trace) < 1e-6
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stats.items())  # the input is never modified


# --------------------------------------------------------------------------------------------------
# options, progress, refusals


def test_progress_subsample_and_record(digits):
    model = quick_sgd(digits, 1, config={"widths": [16]}, epochs=2)
    reports: list[tuple[float, dict]] = []
    result = hessian_sharpness(model, digits, iterations=5, probes=3, samples=300, seed=2, device="cpu",
                               tolerance=0.0, progress=lambda f, info: reports.append((f, info)))
    assert result.samples == 300 and result.iterations == 5 and result.probes == 3
    assert [info["stage"] for _, info in reports] == ["lanczos"] * 5 + ["trace"] * 3
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert reports[4][1]["top_eigenvalue"] == result.top_eigenvalue and reports[-1][1]["trace"] == result.trace
    assert result.extra["products"] == 8 and result.extra["dtype"] == "float32"
    assert 0.0 <= result.base_train_error <= 1.0 and 0.0 <= result.base_test_error <= 1.0
    again = hessian_sharpness(model, digits, iterations=5, probes=3, samples=300, seed=2, device="cpu", tolerance=0.0)
    assert again.top_eigenvalue == result.top_eigenvalue and again.trace_samples == result.trace_samples


def test_binary_networks_and_bad_options_are_refused(digits):
    binary = build_model("binary_mlp", {"widths": [15, 17]}, digits, seed=0)
    with pytest.raises(ValueError, match="binary network"):
        hessian_sharpness(binary, digits, device="cpu")
    model = build_model("mlp", {"widths": [8]}, digits, seed=0)
    for bad in ({"iterations": 0}, {"probes": -1}, {"samples": 0}, {"tolerance": -1.0}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            hessian_sharpness(model, digits, device="cpu", **bad)
