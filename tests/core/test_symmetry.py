"""Symmetry removal (docs/method.md §2-4): normalize keeps the function and puts units on spheres,
align undoes any permutation (and, for binary networks, sign flips) exactly."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tests.core.conftest import SMALL_BINARY, SMALL_CONTINUOUS, case_id, inputs, make
from toroid.worker.landscape.distances import geodesic_distance, hamming_distance
from toroid.worker.landscape.nets import BinaryConv2d, BinaryLinear, Sign, build_model
from toroid.worker.landscape.symmetry import (
    align,
    align_permutations,
    apply_symmetry,
    is_binary,
    normalize,
    random_symmetry,
    sphere_blocks,
    unit_graph,
)


def positive_factor(y: torch.Tensor, yn: torch.Tensor) -> float:
    """The s > 0 with yn ~ s * y (least squares)."""
    return float((yn * y).sum() / (y * y).sum())


def assert_same_state(a: nn.Module, b: nn.Module, atol: float = 0.0) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], atol=atol, rtol=1e-5 if atol else 0.0, msg=k)


def max_param_change(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].is_floating_point())


# --------------------------------------------------------------------------------------------------
# normalize


@pytest.mark.parametrize("case", SMALL_CONTINUOUS, ids=case_id)
def test_normalize_keeps_predictions_and_scales_logits_by_one_positive_factor(case):
    name, config, data = case
    model = make(name, config, data)
    x = inputs(data)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        y = model(x)
        yn = normalize(model)(x)
    s = positive_factor(y, yn)
    assert s > 0
    torch.testing.assert_close(yn, s * y, rtol=1e-4, atol=1e-4 * float(yn.abs().max()))
    assert torch.equal(yn.argmax(1), y.argmax(1))
    for k, v in model.state_dict().items():  # input untouched
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("case", SMALL_CONTINUOUS, ids=case_id)
def test_normalize_puts_hidden_units_on_unit_spheres_and_last_layer_on_radius_sqrt_HL(case):
    name, config, data = case
    normalized = normalize(make(name, config, data)).state_dict()
    blocks = sphere_blocks(make(name, config, data))
    assert sum(not b.per_unit for b in blocks) == 1
    assert sum(b.per_unit for b in blocks) >= 2
    for block in blocks:
        w = normalized[block.param].double()
        if block.per_unit:
            torch.testing.assert_close(w.flatten(1).norm(dim=1), torch.ones(w.shape[0], dtype=torch.float64))
        else:
            num_classes = data[1]
            assert block.radius == pytest.approx(math.sqrt(num_classes))
            assert float(w.norm()) == pytest.approx(math.sqrt(num_classes), rel=1e-6)


@pytest.mark.parametrize("case", SMALL_CONTINUOUS, ids=case_id)
def test_normalize_removes_any_positive_rescaling(case):
    """normalize(rescaled copy) == normalize(original): the canonical representative of docs/method.md §2."""
    name, config, data = case
    model = make(name, config, data)
    rescaled, moves = random_symmetry(model, seed=5, permute=False, rescale=(0.2, 5.0))
    assert moves["scales"]
    assert max_param_change(model, rescaled) > 0.05
    x = inputs(data)
    with torch.no_grad():
        torch.testing.assert_close(rescaled(x), model(x), rtol=1e-4, atol=1e-4)
    assert_same_state(normalize(model), normalize(rescaled), atol=1e-5)


def test_normalize_is_idempotent_and_binary_networks_are_untouched(make_model):
    model = make_model("vgg", {"depth": 11, "width_scale": 1 / 16}, ((3, 8, 8), 10))
    once = normalize(model)
    assert_same_state(once, normalize(once), atol=1e-5)
    binary = make_model("binary_mlp", {"widths": [9, 9]}, ((1, 8, 8), 10))
    assert_same_state(binary, normalize(binary))
    assert sphere_blocks(binary) == []


def test_normalize_bn_modes(make_model):
    """'push' (paper) scales BN affine with the unit and pushes n_k forward; 'absorb' leaves BN affine
    and the next layer alone. Both keep the function."""
    data = ((3, 8, 8), 10)
    model = make_model("vgg", {"depth": 11, "width_scale": 1 / 16}, data)
    x = inputs(data)
    pushed, absorbed = normalize(model, bn_mode="push"), normalize(model, bn_mode="absorb")
    with torch.no_grad():
        y = model(x)
        for variant in (pushed, absorbed):
            yv = variant(x)
            torch.testing.assert_close(yv, positive_factor(y, yv) * y, rtol=1e-4, atol=1e-4 * float(yv.abs().max()))
    torch.testing.assert_close(absorbed.state_dict()["bn1.weight"], model.state_dict()["bn1.weight"])
    torch.testing.assert_close(absorbed.state_dict()["conv2.weight"].flatten(1).norm(dim=1), torch.ones(8))
    assert not torch.allclose(pushed.state_dict()["bn1.weight"], model.state_dict()["bn1.weight"])
    with pytest.raises(ValueError, match="bn_mode"):
        normalize(model, bn_mode="bogus")


# --------------------------------------------------------------------------------------------------
# the unit graph


def test_unit_graph_of_lenet_follows_the_flatten_in_channel_blocks(make_model):
    graph = unit_graph(make_model("lenet", {"channels": [4, 6], "hidden": [10]}, ((1, 8, 8), 10)))
    names = [g.name for g in graph.groups]
    assert names == ["conv1", "conv2", "fc1", "out"]
    conv2 = graph.group("conv2")
    assert [(c.module, c.flattened) for c in conv2.consumers] == [("fc1", True)]
    assert graph.group("out").output and not graph.group("out").permutable
    assert all(graph.group(n).rescalable for n in ("conv1", "conv2", "fc1"))


def test_unit_graph_of_resnet_shares_one_group_per_residual_stream(make_model):
    graph = unit_graph(make_model("resnet", {"width": 4, "blocks": [2, 1]}, ((3, 8, 8), 10)))
    streams = [g for g in graph.groups if g.residual]
    assert [sorted(p.module for p in g.producers) for g in streams] == [
        ["conv1", "layers.0.0.conv2", "layers.0.1.conv2"],
        ["layers.1.0.conv2", "layers.1.0.shortcut.conv"],
    ]
    assert all(not g.rescalable and g.permutable for g in streams)
    inner = [g.name for g in graph.groups if g.rescalable]
    assert inner == ["layers.0.0.conv1", "layers.0.1.conv1", "layers.1.0.conv1"]
    blocks = sphere_blocks(make_model("resnet", {"width": 4, "blocks": [2, 1]}, ((3, 8, 8), 10)))
    assert [b.param for b in blocks] == [f"{n}.weight" for n in inner] + ["fc.weight"]


def test_breaking_a_residual_stream_changes_the_function(make_model):
    """Permuting only one writer of a stream is not a symmetry: this is why streams share one permutation."""
    data = ((3, 8, 8), 10)
    model = make_model("resnet", {"width": 4, "blocks": [2, 1]}, data)
    broken = {k: v.clone() for k, v in model.state_dict().items()}
    perm = torch.tensor([1, 0, 3, 2])
    for key in ("layers.0.0.conv2.weight", "layers.0.0.bn2.weight", "layers.0.0.bn2.bias"):
        broken[key] = broken[key][perm]
    other = make_model("resnet", {"width": 4, "blocks": [2, 1]}, data)
    other.load_state_dict(broken)
    x = inputs(data)
    with torch.no_grad():
        assert not torch.allclose(other(x), model(x), atol=1e-3)


def test_sign_flips_are_symmetries_only_through_odd_operations():
    committee = build_model("committee", {"hidden": 5}, ((11,), 2), seed=0)
    assert not unit_graph(committee).group("hidden").flippable  # fixed +1 read-out
    with pytest.raises(ValueError, match="sign flips are not a symmetry"):
        apply_symmetry(committee, signs={"hidden": [1, -1, 1, 1, 1]})
    maxpooled = nn.Sequential(
        OrderedDict(
            conv=BinaryConv2d(1, 3, 3, padding=1),
            pool=nn.MaxPool2d(2),
            sign=Sign(),
            flatten=nn.Flatten(),
            out=BinaryLinear(3 * 16, 2),
        )
    )
    assert is_binary(maxpooled)
    assert not unit_graph(maxpooled).group("conv").flippable
    avgpooled = build_model("binary_conv", {"channels": [3]}, ((1, 8, 8), 2), seed=0)
    assert unit_graph(avgpooled).group("conv1").flippable


def test_tanh_is_permutation_only_and_an_unknown_op_is_named_and_frozen_not_fatal():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    group = unit_graph(model).group("1")
    assert group.permutable and not group.rescalable and group.flippable  # tanh is odd, not homogeneous
    x = torch.randn(8, 4)
    torch.testing.assert_close(normalize(model)(x).argmax(1), model(x).argmax(1))

    class Concat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.cat([self.a(x), self.b(x)], dim=1))

    graph = unit_graph(Concat())
    assert any("cat" in op for op in graph.unsupported), graph.unsupported
    assert not graph.group("a").permutable and not graph.group("b").permutable  # frozen: inputs of the unknown op
    a, b = Concat(), Concat()
    torch.testing.assert_close(align(a, b)(x), b(x))  # nothing moved that the op would see


def test_apply_symmetry_rejects_moves_that_are_not_symmetries(make_model):
    model = make_model("resnet", {"width": 4, "blocks": [1]}, ((3, 8, 8), 10))
    stream = next(g.name for g in unit_graph(model).groups if g.residual)
    with pytest.raises(ValueError, match="rescaling is not a symmetry"):
        apply_symmetry(model, scales={stream: [1.0, 2.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match="cannot be permuted"):
        apply_symmetry(model, permutations={"fc": list(range(10))})
    with pytest.raises(ValueError, match="not a permutation"):
        apply_symmetry(model, permutations={stream: [0, 0, 1, 2]})
    with pytest.raises(ValueError, match="no unit group"):
        apply_symmetry(model, permutations={"nope": [0]})


# --------------------------------------------------------------------------------------------------
# align


@pytest.mark.parametrize("case", SMALL_CONTINUOUS, ids=case_id)
def test_a_shuffled_copy_aligns_back_exactly(case):
    """docs/method.md §3: permute every hidden layer (ResNet: consistently per stream) -> same function;
    normalize + align brings it back to geodesic distance 0 and identical predictions."""
    name, config, data = case
    model = make(name, config, data)
    shuffled, moves = random_symmetry(model, seed=11)
    assert moves["permutations"]
    assert max_param_change(model, shuffled) > 0.01
    x = inputs(data)
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(shuffled(x), y, rtol=1e-5, atol=1e-5)
    a, b = normalize(model), normalize(shuffled)
    assert geodesic_distance(a, b) > 0.5
    aligned = align(a, b)
    assert geodesic_distance(a, aligned) < 1e-5
    assert_same_state(a, aligned, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(aligned(x).argmax(1), y.argmax(1))


@pytest.mark.parametrize("case", SMALL_BINARY, ids=case_id)
def test_a_shuffled_and_flipped_binary_copy_aligns_back_to_hamming_zero(case):
    """docs/method.md §4: random permutations and sign flips are undone by align (Hamming 0)."""
    name, config, data = case
    model = make(name, config, data)
    shuffled, moves = random_symmetry(model, seed=3)
    if name != "committee":
        assert moves["signs"]
    x = inputs(data)
    with torch.no_grad():
        assert torch.equal(shuffled(x), model(x))
    assert hamming_distance(model, shuffled) > 0.1
    aligned, matches = align_permutations(model, shuffled)
    assert hamming_distance(model, aligned) == 0.0
    assert_same_state(model, aligned)
    for group, perm in moves["permutations"].items():  # the recovered permutation is the inverse move
        assert matches[group].perm.tolist() == np.argsort(perm).tolist()
    with torch.no_grad():
        assert torch.equal(aligned(x), model(x))


@pytest.mark.parametrize("case", SMALL_CONTINUOUS + SMALL_BINARY, ids=case_id)
def test_align_is_a_symmetry_of_independent_networks(case):
    """Aligning an independently initialized network changes its parameters but not its function,
    and never lowers the matched similarity of the first hidden layer."""
    name, config, data = case
    a, b = make(name, config, data, seed=0), make(name, config, data, seed=1)
    before = {k: v.clone() for k, v in b.state_dict().items()}
    aligned, matches = align_permutations(a, b)
    assert max_param_change(b, aligned) > 0
    x = inputs(data)
    with torch.no_grad():
        torch.testing.assert_close(aligned(x), b(x), rtol=1e-5, atol=1e-5)
    for k, v in b.state_dict().items():
        assert torch.equal(v, before[k]), k
    first = unit_graph(a).groups[0]
    if first.residual:  # the stem shares its permutation with later writers: no one-layer comparison
        return
    wa = a.get_submodule(first.producers[0].module).weight.detach().flatten(1)
    wb = b.get_submodule(first.producers[0].module).weight.detach().flatten(1)
    if is_binary(a):
        wa, wb = torch.where(wa >= 0, 1.0, -1.0), torch.where(wb >= 0, 1.0, -1.0)
    cos = (wa / wa.norm(dim=1, keepdim=True)) @ (wb / wb.norm(dim=1, keepdim=True)).T
    unaligned = float(cos.diagonal().abs().mean() if is_binary(a) and first.flippable else cos.diagonal().mean())
    assert matches[first.name].similarity >= unaligned - 1e-6


def test_manual_permutation_of_an_mlp_is_recovered():
    """An MLP permuted by hand (independently of apply_symmetry) aligns back to the original."""
    model = build_model("mlp", {"widths": [20, 30]}, ((6,), 3), seed=4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    p1, p2 = torch.randperm(20), torch.randperm(30)
    state["fc1.weight"], state["fc1.bias"] = state["fc1.weight"][p1], state["fc1.bias"][p1]
    state["fc2.weight"] = state["fc2.weight"][p2][:, p1]
    state["fc2.bias"] = state["fc2.bias"][p2]
    state["out.weight"] = state["out.weight"][:, p2]
    shuffled = build_model("mlp", {"widths": [20, 30]}, ((6,), 3))
    shuffled.load_state_dict(state)
    aligned, matches = align_permutations(model, shuffled)
    assert_same_state(model, aligned)
    assert matches["fc1"].perm.tolist() == torch.argsort(p1).tolist()
    assert matches["fc2"].perm.tolist() == torch.argsort(p2).tolist()


def test_manual_channel_permutation_through_flatten_is_recovered():
    """LeNet: permuting conv2's channels moves whole blocks of fc1's input columns."""
    data = ((1, 8, 8), 10)
    model = build_model("lenet", {"channels": [4, 6], "hidden": [10]}, data, seed=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    perm = torch.randperm(6)
    state["conv2.weight"], state["conv2.bias"] = state["conv2.weight"][perm], state["conv2.bias"][perm]
    block = state["fc1.weight"].shape[1] // 6
    cols = (perm[:, None] * block + torch.arange(block)).reshape(-1)
    state["fc1.weight"] = state["fc1.weight"][:, cols]
    shuffled = build_model("lenet", {"channels": [4, 6], "hidden": [10]}, data)
    shuffled.load_state_dict(state)
    x = inputs(data)
    with torch.no_grad():
        torch.testing.assert_close(shuffled(x), model(x), rtol=1e-5, atol=1e-5)
    assert_same_state(model, align(model, shuffled))


def test_align_rejects_different_architectures():
    a = build_model("mlp", {"widths": [4]}, ((3,), 2), seed=0)
    b = build_model("mlp", {"widths": [5]}, ((3,), 2), seed=0)
    with pytest.raises(ValueError, match="different architectures"):
        align(a, b)


# --------------------------------------------------------------------------------------------------
# property-based tests


@settings(max_examples=12, deadline=None)
@given(
    widths=st.lists(st.integers(2, 12), min_size=1, max_size=3),
    seed=st.integers(0, 10_000),
    low=st.floats(0.05, 1.0),
    spread=st.floats(1.0, 20.0),
)
def test_property_mlp_any_scale_and_permutation_is_removed(widths, seed, low, spread):
    data = ((5,), 3)
    model = build_model("mlp", {"widths": widths}, data, seed=seed)
    moved, _ = random_symmetry(model, seed=seed + 1, rescale=(low, low * spread))
    x = inputs(data, seed=seed)
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(moved(x), y, rtol=1e-4, atol=1e-4)
        a, b = normalize(model), normalize(moved)
        assert torch.equal(a(x).argmax(1), y.argmax(1))
    assert geodesic_distance(a, align(a, b)) < 1e-5


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), channels=st.lists(st.integers(2, 6), min_size=1, max_size=2))
def test_property_vgg_bn_shuffle_and_rescale_are_removed(seed, channels):
    """Small BN conv nets with random BN statistics: normalize + align removes rescaling and permutation."""
    data = ((2, 4, 4), 3)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c = 2
    for i, ch in enumerate(channels, start=1):
        layers[f"conv{i}"] = nn.Conv2d(c, ch, 3, padding=1, bias=False)
        layers[f"bn{i}"] = nn.BatchNorm2d(ch)
        layers[f"relu{i}"] = nn.ReLU()
        c = ch
    layers["pool"] = nn.MaxPool2d(2)
    layers["flatten"] = nn.Flatten()
    layers["out"] = nn.Linear(c * 4, 3)
    torch.manual_seed(seed)
    from tests.core.conftest import randomize_batchnorm

    model = randomize_batchnorm(nn.Sequential(layers), seed)
    moved, _ = random_symmetry(model, seed=seed + 1, rescale=(0.3, 3.0))
    x = inputs(data, seed=seed)
    with torch.no_grad():
        torch.testing.assert_close(moved(x), model(x), rtol=1e-4, atol=1e-4)
    a, b = normalize(model), normalize(moved)
    assert geodesic_distance(a, align(a, b)) < 1e-5


@settings(max_examples=10, deadline=None)
@given(widths=st.lists(st.integers(20, 40), min_size=1, max_size=3), seed=st.integers(0, 10_000))
def test_property_binary_mlp_any_permutation_and_flip_is_removed(widths, seed):
    """Fan-ins >= 20 make two units with equal +-1 weights (a true tie of docs/method.md §4's matching) unlikely."""
    data = ((30,), 4)
    model = build_model("binary_mlp", {"widths": widths}, data, seed=seed)
    moved, _ = random_symmetry(model, seed=seed + 1)
    x = inputs(data, seed=seed)
    with torch.no_grad():
        assert torch.equal(moved(x), model(x))
    aligned = align(model, moved)
    assert hamming_distance(model, aligned) == 0.0
