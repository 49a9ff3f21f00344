"""The evaluator on small data sets (conv nets: the small-data rule) and its reused Linear outputs
(docs/performance.md, "Small data sets" and "MLP paths"): same results as the plain evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.core.conftest import randomize_batchnorm
from tests.core.test_evaluate_conv import teacher_images
from toroid.worker.landscape import evaluate
from toroid.worker.landscape.data import Dataset
from toroid.worker.landscape.evaluate import SMALL_CONV_BATCH, Evaluator, _plan
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.paths import path_profile

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def images() -> Dataset:
    """Fewer than CALIBRATION_MIN_INPUTS images."""
    return teacher_images(300, 100, seed=1)


# architectures no other test calibrates (the choices are cached per architecture in the process)
@pytest.mark.parametrize(
    ("name", "config", "bn"),
    [
        ("lenet", {"channels": [5, 7], "hidden": [11]}, "interpolate"),
        ("vgg", {"depth": 11, "width_scale": 3 / 64}, "recompute"),
    ],
    ids=["lenet", "vgg-bn-recompute"],
)
def test_small_conv_data_uses_the_rule_and_matches_the_plain_evaluation(images, name, config, bn):
    assert len(images.y_train) + len(images.y_test) < evaluate.CALIBRATION_MIN_INPUTS
    a = randomize_batchnorm(build_model(name, config, images, seed=1), seed=3)
    b = randomize_batchnorm(build_model(name, config, images, seed=2), seed=4)
    fast = Evaluator(a, images, "cpu")
    assert fast.calibration is not None and fast.calibration["source"] == "small-data rule"
    assert fast.batch_size == SMALL_CONV_BATCH and fast.memory_format == torch.channels_last
    plain = Evaluator(a, images, "cpu", calibrate=False)  # the budget rule: NCHW, one batch per split
    assert plain.calibration is None and plain.memory_format == torch.contiguous_format
    assert plain.batch_size == 300 == fast.recalibration_batch_size == plain.recalibration_batch_size
    p1 = path_profile(a, b, images, "linear", 5, bn=bn, prepared=True, evaluator=fast)
    p2 = path_profile(a, b, images, "linear", 5, bn=bn, prepared=True, evaluator=plain, factorize=False)
    assert p1.extra["factorized"]
    assert np.allclose(p1.train_error, p2.train_error, atol=1.5 / 300, rtol=0)
    assert np.allclose(p1.test_error, p2.test_error, atol=1.5 / 100, rtol=0)
    assert np.allclose(p1.train_loss, p2.train_loss, rtol=1e-4, atol=1e-5)
    assert np.allclose(p1.test_loss, p2.test_loss, rtol=1e-4, atol=1e-5)


def test_small_data_rule_leaves_mlps_and_explicit_settings_alone(images):
    mlp = build_model("mlp", {"widths": [24]}, images, seed=0)
    assert Evaluator(mlp, images, "cpu").calibration is None
    lenet = build_model("lenet", {"channels": [3, 5], "hidden": [9]}, images, seed=0)
    given = Evaluator(lenet, images, "cpu", batch_size=50)
    assert given.calibration is None and given.batch_size == 50 and given.memory_format == torch.contiguous_format
    nchw = Evaluator(lenet, images, "cpu", channels_last=False)
    assert nchw.calibration is None and nchw.memory_format == torch.contiguous_format


def test_reused_linear_outputs_equal_the_modules_forward(images):
    model = build_model("mlp", {"widths": [32, 16]}, images, seed=0)
    ev = Evaluator(model, images, "cpu", batch_size=64)
    x = ev.data["train"][0]
    with torch.inference_mode():
        first = ev.forward(ev.model, x[:64])
        plan = ev._plans[ev.model]  # built on the first call, kept for the model
        assert plan is not None and [s.reuse for s in plan].count(True) == 2  # the two hidden Linear + ReLU pairs
        ref = ev.model(x[:64])
        assert torch.equal(first, ref)  # the same kernel (addmm), bit for bit
        buffers = [s.buffer.data_ptr() for s in plan if s.reuse]
        assert torch.equal(ev.forward(ev.model, x[64:127]), ev.model(x[64:127]))  # a smaller batch: same buffers
        assert [s.buffer.data_ptr() for s in plan if s.reuse] == buffers
    errors = ev.evaluate_state(model)
    ev._plans[ev.model] = None  # the plain module forward
    assert ev.evaluate_state(model) == errors

    shared = nn.Linear(8, 8)  # one module called twice: it would overwrite its own input
    relu = nn.ReLU(inplace=True)
    assert _plan(nn.Sequential(nn.Flatten(), nn.Linear(192, 8), relu, shared, relu, shared, relu)) is None
    twice = nn.Sequential(nn.Flatten(), nn.Linear(192, 8), nn.ReLU(inplace=True), shared, nn.ReLU(inplace=True),
                          nn.Sequential(shared, nn.ReLU(inplace=True)), nn.Linear(8, 10))
    steps = _plan(twice)
    assert steps is not None and [s.reuse for s in steps] == [False, True, False, False, False, False, False]

    class Custom(nn.Sequential):  # a subclass may have its own forward: never bypassed
        pass

    assert _plan(Custom(nn.Linear(4, 4), nn.ReLU(inplace=True))) is None
    ev2 = Evaluator(twice, images, "cpu", batch_size=64)
    with torch.inference_mode():
        assert torch.equal(ev2.forward(ev2.model, ev2.data["test"][0]), ev2.model(ev2.data["test"][0]))
