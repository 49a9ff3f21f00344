"""The conv evaluator's optimisations (calibrated batch size, channels-last, in-place ReLUs, conv factorization)
give the same profiles as the straightforward evaluation (docs/performance.md, "Evaluator calibration")."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.core.conftest import randomize_batchnorm
from toroid.worker.landscape.data import Dataset
from toroid.worker.landscape.evaluate import Evaluator, _inplace_relus
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.paths import interpolate, path_profile, prepare_endpoints

torch.set_num_threads(1)

CONV_NETS = [
    ("lenet", {"channels": [4, 6], "hidden": [10]}),
    ("vgg", {"depth": 11, "width_scale": 1 / 16, "batch_norm": False}),  # LeNet-like with padding, no BN
    ("vgg", {"depth": 11, "width_scale": 1 / 16}),  # small VGG-style with BatchNorm
]


def teacher_images(n_train: int, n_test: int, seed: int) -> Dataset:
    """Random 3 x 8 x 8 images labelled by a random linear teacher."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 3, 8, 8, generator=gen)
    y = (x.reshape(len(x), -1) @ torch.randn(3 * 64, 10, generator=gen)).argmax(1)
    return Dataset(
        name="images", options={}, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
        y_test=y[n_train:], input_shape=(3, 8, 8), num_classes=10,
    )


@pytest.fixture(scope="module")
def images() -> Dataset:
    return teacher_images(240, 120, seed=0)


def _pair(name: str, config: dict, data: Dataset) -> tuple[nn.Module, nn.Module]:
    a = randomize_batchnorm(build_model(name, config, data, seed=1), seed=3)
    b = randomize_batchnorm(build_model(name, config, data, seed=2), seed=4)
    return a, b


def _straightforward(model: nn.Module, data: Dataset) -> dict[str, float]:
    """One plain forward pass per split, NCHW, no evaluator."""
    out = {}
    with torch.no_grad():
        for split in ("train", "test"):
            x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
            logits = model.eval()(x)
            out[f"{split}_error"] = int((logits.argmax(1) != y).sum()) / len(y)
            out[f"{split}_loss"] = float(F.cross_entropy(logits, y))
    return out


@pytest.mark.parametrize("name, config", CONV_NETS, ids=["lenet", "vgg-nobn", "vgg-bn"])
@pytest.mark.parametrize("kind", ["linear", "linear_aligned", "geodesic"])
def test_optimised_profile_equals_straightforward_evaluation(images, name, config, kind):
    a, b = _pair(name, config, images)
    pa, pb = prepare_endpoints(a, b, kind)
    ev = Evaluator(pa, images, "cpu", calibrate=True, channels_last=True)
    assert ev.memory_format == torch.channels_last and ev.calibration["channels_last"]
    prof = path_profile(pa, pb, images, kind, 4, bn="interpolate", prepared=True, evaluator=ev)
    assert prof.extra["factorized"]
    for i, x in enumerate(prof.x):
        ref = _straightforward(interpolate(pa, pb, x, kind), images)
        assert prof.train_error[i] == pytest.approx(ref["train_error"], abs=1.5 / len(images.y_train))
        assert prof.test_error[i] == pytest.approx(ref["test_error"], abs=1.5 / len(images.y_test))
        assert prof.train_loss[i] == pytest.approx(ref["train_loss"], rel=1e-4, abs=1e-5)
        assert prof.test_loss[i] == pytest.approx(ref["test_loss"], rel=1e-4, abs=1e-5)


def test_batchnorm_recompute_is_layout_independent(images):
    """bn='recompute' with channels-last, calibrated batches and the factorization = plain NCHW evaluation."""
    name, config = CONV_NETS[2]
    a, b = _pair(name, config, images)
    fast = Evaluator(a, images, "cpu", calibrate=True, channels_last=True)
    plain = Evaluator(a, images, "cpu", batch_size=len(images.y_train), calibrate=False)
    assert plain.memory_format == torch.contiguous_format
    # evaluation runs in the calibrated batches, BN statistics in the budget's (here: one batch of 240)
    assert fast.recalibration_batch_size == plain.recalibration_batch_size == 240
    p1 = path_profile(a, b, images, "geodesic", 3, evaluator=fast)
    p2 = path_profile(a, b, images, "geodesic", 3, evaluator=plain, factorize=False)
    assert p1.extra["factorized"] and not p2.extra["factorized"]
    assert np.allclose(p1.train_loss, p2.train_loss, rtol=1e-4, atol=1e-5)
    assert np.allclose(p1.test_loss, p2.test_loss, rtol=1e-4, atol=1e-5)
    assert np.allclose(p1.train_error, p2.train_error, atol=1.5 / len(images.y_train))


def test_calibration_is_cached_and_respects_a_given_batch_size(images):
    model = build_model("lenet", CONV_NETS[0][1], images, seed=0)
    first = Evaluator(model, images, "cpu", calibrate=True)
    timed = {int(k.split()[0]) for k in first.calibration["seconds_per_input"]}
    assert timed == {64, 128, 240} and first.calibration["batch_size"] in timed  # candidates below the cap, the cap
    assert set(first.calibration["seconds_per_input"]) >= {"64", "64 channels_last"}
    again = Evaluator(build_model("lenet", CONV_NETS[0][1], images, seed=5), images, "cpu", calibrate=True)
    assert again.calibration == first.calibration  # same architecture, shape, device, threads: measured once
    fixed = Evaluator(model, images, "cpu", batch_size=100, calibrate=True)
    assert fixed.batch_size == 100 and list(fixed.calibration["seconds_per_input"]) == ["100", "100 channels_last"]
    # 360 inputs: too few to calibrate (CALIBRATION_MIN_INPUTS); the choice measured above for this architecture
    small = Evaluator(model, images, "cpu")
    assert small.calibration["source"] == "earlier calibration"
    assert small.batch_size == first.calibration["batch_size"]
    layout = torch.channels_last if first.calibration["channels_last"] else torch.contiguous_format
    assert small.memory_format == layout and small.recalibration_batch_size == 240


def test_mlp_is_never_channels_last_and_evaluates_exactly(images):
    model = build_model("mlp", {"widths": [24]}, images, seed=0)
    ev = Evaluator(model, images, "cpu", calibrate=True, channels_last=True)
    assert ev.memory_format == torch.contiguous_format and not ev.calibration["channels_last"]
    assert ev.evaluate_state(model) == pytest.approx(_straightforward(model, images), rel=1e-5)


def test_inplace_relus_only_where_the_input_is_fresh():
    flat_first = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Identity(), nn.ReLU())
    assert _inplace_relus(flat_first) == 1
    assert [m.inplace for m in flat_first if isinstance(m, nn.ReLU)] == [False, True, False]
    x = -torch.ones(2, 4)
    before = x.clone()
    ref = copy.deepcopy(flat_first)
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    with torch.inference_mode():
        assert torch.equal(flat_first(x), ref(x))
    assert torch.equal(x, before), "the caller's input must never be modified"
    template = build_model("vgg", CONV_NETS[2][1], ((3, 12, 12), 10), seed=0)
    # the evaluator's private copy gets the in-place ReLUs, its template keeps its own
    tiny = Dataset(
        name="tiny", options={}, x_train=torch.zeros(4, 3, 12, 12), y_train=torch.zeros(4, dtype=torch.long),
        x_test=torch.zeros(2, 3, 12, 12), y_test=torch.zeros(2, dtype=torch.long), input_shape=(3, 12, 12),
        num_classes=10,
    )
    Evaluator(template, tiny, "cpu", channels_last=True)
    assert not any(m.inplace for m in template.modules() if isinstance(m, nn.ReLU)), "the template is untouched"
