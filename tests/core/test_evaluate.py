"""The fast evaluator: exact agreement with direct computation, BN recalibration, factorization."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toroid.worker.landscape.evaluate import (
    CombinationEvaluator,
    Evaluator,
    combine_states,
    load_state,
    recalibrate_bn,
)
from toroid.worker.landscape.nets import build_model

torch.set_num_threads(1)



def _direct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        logits = model.eval()(x)
    return int((logits.argmax(1) != y).sum()) / len(y), float(F.cross_entropy(logits, y))


def _random_pair(name: str, config: dict, dataset) -> tuple[nn.Module, nn.Module]:
    return build_model(name, config, dataset, seed=1), build_model(name, config, dataset, seed=2)


def test_evaluate_state_matches_direct_computation(digits):
    model = build_model("mlp", {"widths": [32]}, digits, seed=0)
    ev = Evaluator(model, digits, "cpu", batch_size=100)  # several unequal batches
    res = ev.evaluate_state(model)
    err, loss = _direct(model, digits.x_train, digits.y_train)
    assert res["train_error"] == pytest.approx(err, abs=0)
    assert res["train_loss"] == pytest.approx(loss, rel=1e-5)
    err, loss = _direct(model, digits.x_test, digits.y_test)
    assert res["test_error"] == pytest.approx(err, abs=0)
    assert res["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert set(ev.evaluate_state(model, "train")) == {"train_error", "train_loss"}


def test_evaluator_reuses_one_model_and_leaves_template_untouched(digits):
    a, b = _random_pair("mlp", {"widths": [16]}, digits)
    before = copy.deepcopy(a.state_dict())
    ev = Evaluator(a, digits, "cpu")
    many = ev.evaluate_many([a, b.state_dict(), a])
    assert many[0] == many[2]
    assert many[1] == Evaluator(b, digits, "cpu").evaluate_state(b)
    for k, v in a.state_dict().items():
        assert torch.equal(v, before[k])


def test_recalibrate_bn_gives_exact_full_batch_statistics(digits):
    model = build_model("vgg", {"depth": 11, "width_scale": 0.05}, digits, seed=0)
    bn = model.bn1
    inputs = {}
    handle = bn.register_forward_pre_hook(lambda m, args: inputs.setdefault("x", args[0].detach()))
    recalibrate_bn(model, digits.x_train)  # batch_size None: one batch, exact statistics
    handle.remove()
    x = inputs["x"]
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=True)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(bn.running_var, var, rtol=1e-4, atol=1e-6)
    assert bn.momentum == 0.1 and not model.training
    again = copy.deepcopy(model)
    recalibrate_bn(again, digits.x_train, batch_size=500)
    recalibrate_bn(model, digits.x_train, batch_size=500)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), "recalibration must be deterministic"


@pytest.mark.parametrize(
    ("name", "config"),
    [("mlp", {"widths": [48, 32]}), ("lenet", {"channels": [6, 8], "hidden": [16]})],
)
def test_factorized_first_layer_equals_plain_evaluation(digits, name, config):
    a, b = _random_pair(name, config, digits)
    ev = Evaluator(a, digits, "cpu", batch_size=600)
    fast = CombinationEvaluator(ev, [a, b])
    plain = CombinationEvaluator(ev, [a, b], factorize=False)
    assert fast.factorized and not plain.factorized
    assert ev.first_layer is not None and ev.first_layer.kind == ("linear" if name == "mlp" else "conv")
    rows = a.state_dict()[ev.first_layer.weight].shape[0]
    for x in (0.0, 0.3, 1.0):
        coefs = {k: torch.tensor([1 - x, x], dtype=torch.float64) for k in a.state_dict()}
        # per-unit coefficients on the first layer, as a geodesic uses them
        coefs[ev.first_layer.weight] = torch.stack(
            [torch.linspace(1 - x, 0.5, rows, dtype=torch.float64), torch.linspace(x, 0.2, rows)]
        )
        r_fast, r_plain = fast.evaluate(coefs), plain.evaluate(coefs)
        direct = ev.evaluate_state(combine_states([a.state_dict(), b.state_dict()], coefs))
        for key in ("train_error", "test_error"):
            assert r_fast[key] == r_plain[key] == direct[key]
        for key in ("train_loss", "test_loss"):
            assert r_fast[key] == pytest.approx(r_plain[key], abs=1e-5)


def test_factorization_with_batchnorm_recompute_equals_plain(digits):
    a, b = _random_pair("vgg", {"depth": 11, "width_scale": 0.05}, digits)
    ev = Evaluator(a, digits, "cpu", batch_size=500)
    assert ev.has_bn and ev.first_layer is not None
    fast, plain = ev.combinations([a, b]), ev.combinations([a, b], factorize=False)
    assert fast.factorized
    coefs = {k: torch.tensor([0.6, 0.4], dtype=torch.float64) for k, v in a.state_dict().items()}
    for bn in ("recompute", "interpolate"):
        r1, r2 = fast.evaluate(coefs, bn=bn), plain.evaluate(coefs, bn=bn)
        assert r1["train_error"] == r2["train_error"] and r1["test_error"] == r2["test_error"]
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], abs=1e-5)
    # recompute really differs from interpolated statistics at an interior point
    assert fast.evaluate(coefs, bn="recompute") != fast.evaluate(coefs, bn="interpolate")


def test_factorization_falls_back_when_first_layer_is_not_plain(digits):
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(2.0))
            self.fc = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1) * self.scale)

    torch.manual_seed(0)
    a, b = Scaled(), Scaled()
    ev = Evaluator(a, digits, "cpu")
    assert ev.first_layer is None
    combos = ev.combinations([a, b])
    assert not combos.factorized
    coefs = {k: torch.tensor([0.5, 0.5], dtype=torch.float64) for k in a.state_dict()}
    mid = Scaled()
    load_state(mid, combine_states([a.state_dict(), b.state_dict()], coefs))
    err, _ = _direct(mid, digits.x_train, digits.y_train)
    assert combos.evaluate(coefs)["train_error"] == pytest.approx(err, abs=0)
    binary = build_model("binary_mlp", {"widths": [16]}, digits, seed=0)
    assert Evaluator(binary, digits, "cpu").first_layer is None  # sign(W) is not linear in W


def test_evaluate_stacked_matches_one_at_a_time(digits):
    a, b = _random_pair("mlp", {"widths": [24]}, digits)
    ev = Evaluator(a, digits, "cpu")
    assert ev.stacking_supported()
    params = {k: torch.stack([a.state_dict()[k], b.state_dict()[k]]) for k, _ in a.named_parameters()}
    stacked = ev.evaluate_stacked(params, "both")
    for res, net in zip(stacked, (a, b), strict=True):
        single = ev.evaluate_state(net)
        assert res["train_error"] == single["train_error"]
        assert res["test_loss"] == pytest.approx(single["test_loss"], abs=1e-5)


def test_single_logit_models_use_the_sign_as_prediction():
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = (x[:, 0] > 0).long()
    data = SimpleNamespace(x_train=x, y_train=y, x_test=x[:50], y_test=y[:50])
    model = nn.Linear(5, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 0] = 3.0
        model.bias.zero_()
    res = Evaluator(model, data, "cpu").evaluate_state(model)
    assert res["train_error"] == 0.0
    with torch.no_grad():
        expected = F.binary_cross_entropy_with_logits(model(x)[:, 0], y.float())
    assert res["train_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_clear_errors_on_bad_input(digits):
    model = build_model("mlp", {"widths": [8]}, digits, seed=0)
    with pytest.raises(ValueError, match="x_train"):
        Evaluator(model, SimpleNamespace(x_test=digits.x_test, y_test=digits.y_test), "cpu")
    bad = SimpleNamespace(x_train=digits.x_train, y_train=digits.y_train[:10], x_test=digits.x_test,
                          y_test=digits.y_test)
    with pytest.raises(ValueError, match="rows"):
        Evaluator(model, bad, "cpu")
    ev = Evaluator(model, digits, "cpu")
    with pytest.raises(ValueError, match="split"):
        ev.evaluate_state(model, "validation")
    state = dict(model.state_dict())
    state.pop("out.bias")
    with pytest.raises(ValueError, match="missing"):
        ev.evaluate_state(state)
    other = build_model("mlp", {"widths": [9]}, digits, seed=0)
    with pytest.raises(ValueError, match="shape"):
        ev.evaluate_state(other)
    with pytest.raises(ValueError, match="shape"):
        ev.combinations([model, model]).evaluate({"out.bias": torch.ones(3)})
