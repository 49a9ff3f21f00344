"""Torus slices through normalized, aligned minima (construction in docs/method.md §7)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.core.conftest import quick_sgd
from toroid.worker.landscape.distances import unit_angles
from toroid.worker.landscape.evaluate import Evaluator
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.paths import interpolate, prepare_endpoints, torus_point, torus_slice
from toroid.worker.landscape.results import TorusSlice
from toroid.worker.landscape.symmetry import align, normalize, sphere_blocks

torch.set_num_threads(1)
TWO_PI = 2 * math.pi





@pytest.fixture(scope="module")
def prepared(digits):
    """Normalized A, and B, C normalized and aligned to A."""
    a, b, c = (normalize(quick_sgd(digits, s, config={"widths": [24, 24]}, epochs=6)) for s in (0, 1, 2))
    return a, align(a, b), align(a, c)


def _close(m1: torch.nn.Module, m2: torch.nn.Module, atol: float = 1e-5) -> bool:
    s1, s2 = m1.state_dict(), m2.state_dict()
    return all(torch.allclose(s1[k].float(), s2[k].float(), atol=atol) for k in s1)


def test_minima_sit_at_their_coordinates_and_reproduce_errors(digits, prepared):
    a, b, _ = prepared
    res = torus_slice(a, b, digits, resolution=5, device="cpu", prepared=True)
    ev = Evaluator(a, digits, "cpu")
    phi1, phi2 = res.minima["B"]
    assert res.minima["A"] == [0.0, 0.0] and 0 < phi1 < math.pi and 0 < phi2 < math.pi
    for name, net in (("A", a), ("B", b)):
        ref = ev.evaluate_state(net)
        assert res.extra["minima_errors"][name] == {"train_error": ref["train_error"], "test_error": ref["test_error"]}
    assert res.train_error[0][0] == ev.evaluate_state(a)["train_error"]  # grid point (0, 0) is A
    assert torch.equal(torus_point(a, b, 0.0, 0.0).state_dict()["fc1.weight"], a.state_dict()["fc1.weight"])
    assert _close(torus_point(a, b, phi1, phi2), b)
    # Phi_g is the mean unit angle of the group: first hidden layer vs. the rest
    blocks = sphere_blocks(a)
    sa, sb = a.state_dict(), b.state_dict()
    first = unit_angles(sa[blocks[0].param], sb[blocks[0].param])
    assert phi1 == pytest.approx(float(first.mean()), rel=1e-9)
    assert TorusSlice.from_dict(json.loads(json.dumps(res.to_dict()))) == res


def test_torus_is_periodic(digits, prepared):
    a, b, _ = prepared
    wrap = TWO_PI - 1e-9  # just before the wrap: continuity, not the modulo, is tested
    for x, y in ((0.0, 1.3), (2.1, 0.0), (0.0, 0.0), (4.0, 5.5)):
        base = torus_point(a, b, x, y)
        assert _close(torus_point(a, b, x + TWO_PI, y), base, atol=1e-6)
        assert _close(torus_point(a, b, x, y + TWO_PI), base, atol=1e-6)
        if x == 0.0:
            assert _close(torus_point(a, b, wrap, y), base, atol=1e-6)
        if y == 0.0:
            assert _close(torus_point(a, b, x, wrap), base, atol=1e-6)
    # the grid samples [0, 2 pi); the wrap of every row equals its first column
    res = torus_slice(a, b, digits, resolution=4, device="cpu", prepared=True)
    assert res.phi1 == pytest.approx([0.0, math.pi / 2, math.pi, 3 * math.pi / 2])
    ev = Evaluator(a, digits, "cpu")
    for j, y in enumerate(res.phi2):
        assert ev.evaluate_state(torus_point(a, b, wrap, y))["train_error"] == res.train_error[j][0]
    for i, x in enumerate(res.phi1):
        assert ev.evaluate_state(torus_point(a, b, x, wrap))["train_error"] == res.train_error[0][i]
    assert len({res.train_error[j][i] for j in range(4) for i in range(4)}) > 2  # not a flat slice


def test_geodesic_is_the_straight_segment(digits, prepared):
    a, b, _ = prepared
    res = torus_slice(a, b, digits, resolution=3, device="cpu", prepared=True)
    phi1, phi2 = res.minima["B"]
    assert res.geodesic[0] == [0.0, 0.0] and res.geodesic[-1] == pytest.approx([phi1, phi2])
    for t in (0.2, 0.5, 0.85):
        assert _close(torus_point(a, b, t * phi1, t * phi2), interpolate(a, b, t, "geodesic"), atol=2e-6)
    # and the slice's segment points are exactly those fractions
    for (x, y), t in zip(res.geodesic, [i / 16 for i in range(17)], strict=True):
        assert x == pytest.approx(t * phi1) and y == pytest.approx(t * phi2)


def test_every_torus_point_lies_on_the_product_of_spheres(prepared):
    a, b, c = prepared
    for point in (torus_point(a, b, 2.5, 4.0), torus_point(a, b, 1.0, 5.0, c=c)):
        state = point.state_dict()
        for blk in sphere_blocks(a):
            w = state[blk.param]
            norms = w.flatten(1).norm(dim=1) if blk.per_unit else w.norm().reshape(1)
            assert torch.allclose(norms, torch.full_like(norms, blk.radius), atol=1e-5)


def test_three_minima_torus(digits, prepared):
    a, b, c = prepared
    res = torus_slice(a, b, digits, c=c, resolution=3, device="cpu", prepared=True)
    phi_b, phi_c = res.minima["B"][0], res.minima["C"][1]
    assert res.minima == {"A": [0.0, 0.0], "B": [phi_b, 0.0], "C": [0.0, phi_c]}
    assert _close(torus_point(a, b, 0.0, 0.0, c=c), a, atol=1e-7)
    assert _close(torus_point(a, b, phi_b, 0.0, c=c), b)
    assert _close(torus_point(a, b, 0.0, phi_c, c=c), c)
    ev = Evaluator(a, digits, "cpu")
    for name, net in (("A", a), ("B", b), ("C", c)):
        assert res.extra["minima_errors"][name]["train_error"] == ev.evaluate_state(net)["train_error"]
    # the A->B and A->C geodesics are the coordinate axes
    assert _close(torus_point(a, b, 0.4 * phi_b, 0.0, c=c), interpolate(a, b, 0.4, "geodesic"), atol=2e-6)
    assert _close(torus_point(a, b, 0.0, 0.7 * phi_c, c=c), interpolate(a, c, 0.7, "geodesic"), atol=2e-6)
    assert _close(torus_point(a, b, 1.0 + TWO_PI, 2.0, c=c), torus_point(a, b, 1.0, 2.0 + TWO_PI, c=c), atol=1e-6)
    wrap = TWO_PI - 1e-9
    assert _close(torus_point(a, b, wrap, 2.0, c=c), torus_point(a, b, 0.0, 2.0, c=c), atol=1e-6)
    assert _close(torus_point(a, b, 1.0, wrap, c=c), torus_point(a, b, 1.0, 0.0, c=c), atol=1e-6)


def test_unprepared_inputs_groups_and_errors(digits, prepared):
    tiny = {"widths": [24, 24]}
    raw_a, raw_b = quick_sgd(digits, 3, config=tiny, epochs=2), quick_sgd(digits, 4, config=tiny, epochs=2)
    seen = []
    res = torus_slice(raw_a, raw_b, digits, resolution=2, device="cpu", progress=lambda f, i: seen.append(f))
    assert seen == [0.25, 0.5, 0.75, 1.0]
    pa, pb = prepare_endpoints(raw_a, raw_b, "geodesic")
    same = torus_slice(pa, pb, digits, resolution=2, device="cpu", prepared=True)
    assert res.train_error == same.train_error
    a, b, _ = prepared
    last = torus_slice(a, b, digits, resolution=2, device="cpu", prepared=True, groups="last_layer")
    explicit = torus_slice(a, b, digits, resolution=2, device="cpu", prepared=True, groups=["fc1", "fc2"])
    assert last.minima == explicit.minima and last.train_error == explicit.train_error
    with pytest.raises(ValueError, match="groups"):
        torus_slice(a, b, digits, resolution=2, prepared=True, groups="middle")
    with pytest.raises(ValueError, match="unknown unit groups"):
        torus_slice(a, b, digits, resolution=2, prepared=True, groups=["fc9"])
    with pytest.raises(ValueError, match="one group"):
        torus_slice(a, b, digits, resolution=2, prepared=True, groups=["fc1", "fc2", "out"])
    with pytest.raises(ValueError, match="resolution"):
        torus_slice(a, b, digits, resolution=1)
    binary = build_model("binary_mlp", {"widths": [8]}, digits, seed=0)
    with pytest.raises(ValueError, match="binary"):
        torus_slice(binary, binary, digits)
