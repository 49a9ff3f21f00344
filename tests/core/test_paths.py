"""Paths and barriers (docs/method.md §7): endpoints, factorization, symmetry, sections."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.core.conftest import quick_sgd
from toroid.worker.landscape.distances import geodesic_distance, unit_angles
from toroid.worker.landscape.evaluate import Evaluator
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.paths import (
    interpolate,
    path_profile,
    prepare_endpoints,
    section_2d,
)
from toroid.worker.landscape.results import BendResult, PathProfile, Section
from toroid.worker.landscape.symmetry import random_symmetry, sphere_blocks

torch.set_num_threads(1)





@pytest.fixture(scope="module")
def nets(digits):
    return [quick_sgd(digits, seed) for seed in (0, 1, 2)]


@pytest.fixture(scope="module")
def errors(digits, nets):
    ev = Evaluator(nets[0], digits, "cpu")
    return [ev.evaluate_state(n) for n in nets]


@pytest.mark.parametrize("kind", ["geodesic", "linear", "linear_aligned"])
def test_endpoints_reproduce_both_networks_errors(digits, nets, errors, kind):
    prof = path_profile(nets[0], nets[1], digits, kind, points=5, device="cpu")
    assert prof.points == 5 and prof.x == [0.0, 0.25, 0.5, 0.75, 1.0] and prof.distance == prof.x
    for end, ref in ((0, errors[0]), (-1, errors[1])):
        assert prof.train_error[end] == ref["train_error"]
        assert prof.test_error[end] == ref["test_error"]
    assert prof.barrier == max(prof.train_error) >= max(errors[0]["train_error"], errors[1]["train_error"])
    assert prof.test_barrier == max(prof.test_error)
    assert prof.bn == "none" and prof.extra["factorized"] is True


@pytest.mark.parametrize("kind", ["geodesic", "linear_aligned"])
def test_factorized_profile_equals_plain_per_point_evaluation(digits, nets, kind):
    fast = path_profile(nets[0], nets[2], digits, kind, points=7, device="cpu")
    plain = path_profile(nets[0], nets[2], digits, kind, points=7, device="cpu", factorize=False)
    assert fast.extra["factorized"] and not plain.extra["factorized"]
    assert fast.train_error == plain.train_error and fast.test_error == plain.test_error
    assert fast.train_loss == pytest.approx(plain.train_loss, abs=1e-5)
    assert fast.test_loss == pytest.approx(plain.test_loss, abs=1e-5)
    # and equals building each point's network with interpolate() and evaluating it
    pa, pb = prepare_endpoints(nets[0], nets[2], kind)
    ev = Evaluator(pa, digits, "cpu")
    for i, x in enumerate(fast.x):
        res = ev.evaluate_state(interpolate(pa, pb, x, kind))
        assert res["train_error"] == fast.train_error[i]
        assert res["test_loss"] == pytest.approx(fast.test_loss[i], abs=1e-5)
    assert fast.barrier > max(fast.train_error[0], fast.train_error[-1])  # an actual barrier was measured


@pytest.mark.parametrize("kind", ["geodesic", "linear", "linear_aligned"])
def test_path_on_identical_endpoints_is_flat(digits, nets, errors, kind):
    prof = path_profile(nets[1], nets[1], digits, kind, points=5, device="cpu")
    assert prof.train_error == [errors[1]["train_error"]] * 5
    assert prof.test_error == [errors[1]["test_error"]] * 5
    assert prof.length == pytest.approx(0.0, abs=1e-6)


def test_linear_aligned_path_to_a_permuted_copy_has_no_barrier(digits, nets, errors):
    shuffled, moves = random_symmetry(nets[0], seed=7)
    assert moves["permutations"]  # the copy really is permuted
    aligned = path_profile(nets[0], shuffled, digits, "linear_aligned", points=9, device="cpu")
    assert aligned.train_error == [errors[0]["train_error"]] * 9
    assert aligned.test_error == [errors[0]["test_error"]] * 9
    assert aligned.barrier == errors[0]["train_error"]
    assert aligned.length == pytest.approx(0.0, abs=1e-5)
    raw = path_profile(nets[0], shuffled, digits, "linear", points=9, device="cpu")
    assert raw.barrier > aligned.barrier + 0.01 and raw.length > 1.0


def test_geodesic_points_lie_on_the_spheres_at_constant_angular_speed(nets):
    pa, pb = prepare_endpoints(nets[0], nets[1], "geodesic")
    x = 0.3
    mid = interpolate(pa, pb, x, "geodesic")
    sa, sb, sm = pa.state_dict(), pb.state_dict(), mid.state_dict()
    blocks = sphere_blocks(pa)
    assert [b.per_unit for b in blocks] == [True, True, False]
    for blk in blocks:
        rows = sa[blk.param].shape[0] if blk.per_unit else 1
        a, b, m = (s[blk.param].reshape(rows, -1) for s in (sa, sb, sm))
        assert torch.allclose(m.norm(dim=1), torch.full((rows,), blk.radius), atol=1e-5)
        phi = unit_angles(a, b)
        assert torch.allclose(unit_angles(a, m), x * phi, atol=1e-5)
        assert torch.allclose(unit_angles(m, b), (1 - x) * phi, atol=1e-5)
    # free parameters (biases) are linear in x
    assert torch.allclose(sm["fc1.bias"], (1 - x) * sa["fc1.bias"] + x * sb["fc1.bias"], atol=1e-6)
    assert geodesic_distance(pa, mid) == pytest.approx(x * geodesic_distance(pa, pb), rel=1e-5)


def test_progress_reports_each_point_and_can_cancel(digits, nets):
    seen = []
    prof = path_profile(nets[0], nets[1], digits, "geodesic", points=4, device="cpu",
                        progress=lambda f, info: seen.append((f, info)))
    assert [f for f, _ in seen] == [0.25, 0.5, 0.75, 1.0]
    assert [info["train_error"] for _, info in seen] == prof.train_error
    assert [info["x"] for _, info in seen] == prof.x
    json.dumps([info for _, info in seen])

    def cancel(fraction: float, info: dict) -> None:
        if info["index"] == 1:
            raise KeyboardInterrupt("job cancelled")

    with pytest.raises(KeyboardInterrupt):
        path_profile(nets[0], nets[1], digits, "linear", points=6, device="cpu", progress=cancel)


def test_result_round_trips_through_json(digits, nets):
    prof = path_profile(nets[0], nets[1], digits, "geodesic", points=3, device="cpu")
    data = json.loads(json.dumps(prof.to_dict()))
    assert PathProfile.from_dict(data) == prof
    bend = BendResult(profiles=[prof, prof], barrier=prof.barrier, kind="geodesic", distance_to_a=1.0,
                      distance_to_b=2.0, bend_train_error=0.0, epochs=3)
    again = BendResult.from_dict(json.loads(json.dumps(bend.to_dict())))
    assert again == bend and isinstance(again.profiles[0], PathProfile)
    with pytest.raises(ValueError, match="unknown keys"):
        PathProfile.from_dict({**data, "barier": 0.1})
    assert prof.length == pytest.approx(geodesic_distance(*prepare_endpoints(nets[0], nets[1], "geodesic")))


def test_conv_and_batchnorm_paths(digits):
    lenet_cfg = {"channels": [6, 8], "hidden": [16]}
    a = quick_sgd(digits, 0, "lenet", lenet_cfg, epochs=3)
    b = quick_sgd(digits, 1, "lenet", lenet_cfg, epochs=3)
    ev = Evaluator(a, digits, "cpu")
    prof = path_profile(a, b, digits, "geodesic", points=3, device="cpu")
    assert prof.extra["factorized"]
    assert prof.train_error[0] == ev.evaluate_state(a)["train_error"]
    assert prof.train_error[-1] == ev.evaluate_state(b)["train_error"]

    vgg_cfg = {"depth": 11, "width_scale": 0.05}
    va, vb = build_model("vgg", vgg_cfg, digits, seed=0), build_model("vgg", vgg_cfg, digits, seed=1)
    pa, pb = prepare_endpoints(va, vb, "geodesic")
    vev = Evaluator(pa, digits, "cpu")
    interp = path_profile(pa, pb, digits, "geodesic", points=3, bn="interpolate", device="cpu", prepared=True)
    assert interp.bn == "interpolate"
    assert interp.train_error[0] == vev.evaluate_state(pa)["train_error"]
    assert interp.train_error[-1] == vev.evaluate_state(pb)["train_error"]
    recomputed = path_profile(pa, pb, digits, "geodesic", points=3, device="cpu", prepared=True)
    assert recomputed.bn == "recompute"
    assert recomputed.train_loss[0] == pytest.approx(
        vev.evaluate_state(pa, recalibrate=True)["train_loss"], abs=1e-5
    )


def test_binary_flip_path(digits):
    cfg = {"widths": [24]}
    a = build_model("binary_mlp", cfg, digits, seed=0)
    b = build_model("binary_mlp", cfg, digits, seed=1)
    ev = Evaluator(a, digits, "cpu")
    prof = path_profile(a, b, digits, "flip", points=5, orders=3, device="cpu")
    assert prof.train_error[0] == ev.evaluate_state(a)["train_error"]
    assert prof.train_error[-1] == ev.evaluate_state(b)["train_error"]  # aligned B computes B's function
    assert prof.extra["orders"] == 3 and len(prof.extra["train_error_per_order"]) == 3
    n = prof.extra["flipped_weights"]
    assert prof.length == n > 0
    assert prof.distance == [round(x * n) / n for x in prof.x]
    for per_order in prof.extra["train_error_per_order"]:
        assert per_order[0] == prof.train_error[0] and per_order[-1] == prof.train_error[-1]
    mean_mid = sum(p[2] for p in prof.extra["train_error_per_order"]) / 3
    assert prof.train_error[2] == pytest.approx(mean_mid)
    pa, pb = prepare_endpoints(a, b, "flip")
    end = interpolate(pa, pb, 1.0, "flip")
    for key in ("fc1.weight", "out.weight"):
        assert torch.equal(end.state_dict()[key] >= 0, pb.state_dict()[key] >= 0)


def test_section_points_reproduce_the_three_networks(digits, nets, errors):
    sec = section_2d(*nets, digits, resolution=4, device="cpu")
    assert len(sec.x) == len(sec.y) == 4
    assert len(sec.train_error) == 4 and all(len(row) == 4 for row in sec.train_error)
    assert sec.points["w1"] == [0.0, 0.0] and sec.points["w2"][1] == 0.0 and sec.points["w3"][1] > 0
    for name, ref in zip(("w1", "w2", "w3"), errors, strict=True):
        assert sec.extra["point_errors"][name] == {"train_error": ref["train_error"], "test_error": ref["test_error"]}
    # the grid spans the points plus the margin
    assert sec.x[0] < min(p[0] for p in sec.points.values()) and sec.x[-1] > sec.points["w2"][0]
    norm = section_2d(*nets, digits, space="normalized", resolution=3, margin=0.0, device="cpu")
    assert norm.space == "normalized"
    for name, ref in zip(("w1", "w2", "w3"), errors, strict=True):
        assert norm.extra["point_errors"][name]["train_error"] == ref["train_error"]
    # with margin 0 the corner (x[0], y[0]) = (0, 0) is w1 when w3 projects inside [0, |u|]
    if 0 <= norm.points["w3"][0] <= norm.points["w2"][0]:
        assert norm.train_error[0][0] == errors[0]["train_error"]
    assert Section.from_dict(json.loads(json.dumps(sec.to_dict()))) == sec


def test_bad_arguments_raise_clear_errors(digits, nets):
    binary = build_model("binary_mlp", {"widths": [8]}, digits, seed=0)
    with pytest.raises(ValueError, match="unknown path kind"):
        path_profile(nets[0], nets[1], digits, "spline")
    with pytest.raises(ValueError, match="flip"):
        path_profile(binary, binary, digits, "geodesic")
    with pytest.raises(ValueError, match="binary"):
        path_profile(nets[0], nets[1], digits, "flip")
    with pytest.raises(ValueError, match="points"):
        path_profile(nets[0], nets[1], digits, "linear", points=1)
    with pytest.raises(ValueError, match="bn"):
        path_profile(nets[0], nets[1], digits, "linear", bn="freeze")
    with pytest.raises(ValueError, match="x must"):
        interpolate(nets[0], nets[1], 1.5, "linear")
    with pytest.raises(ValueError, match="identical"):
        section_2d(nets[0], nets[0], nets[1], digits)
    with pytest.raises(ValueError, match="line"):
        section_2d(nets[0], nets[1], interpolate(nets[0], nets[1], 0.5, "linear"), digits)
    assert not math.isnan(path_profile(nets[0], nets[1], digits, "linear", points=2).barrier)
