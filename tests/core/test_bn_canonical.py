"""The canonical form of BatchNorm units (docs/method.md §2, "BatchNorm: option bn_mode"): the default
``normalize`` removes both symmetries of a unit followed by BatchNorm, each with its own factor, in
chains and in residual streams, keeps the function, and the old modes keep their old results."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.core.conftest import inputs, make, randomize_batchnorm
from toroid.worker.landscape import registry
from toroid.worker.landscape.bn_canonical import apply_bn_scales, carries_affine_scale, random_bn_scales
from toroid.worker.landscape.distances import geodesic_distance
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.symmetry import BN_MODES, align, normalize, random_symmetry, unit_graph

BN_NETS = [
    ("vgg", {"depth": 11, "width_scale": 1 / 16}, ((3, 8, 8), 10)),
    ("vgg", {"depth": 16, "width_scale": 1 / 32, "classifier": [12]}, ((3, 16, 16), 10)),
    ("resnet", {"width": 4, "blocks": [2, 1]}, ((3, 8, 8), 10)),
]
KINDS = {"filters": {"affine": None}, "affine": {"filters": None}, "both": {}}


def net_id(case: tuple) -> str:
    name, config, _ = case
    return f"{name}{config.get('depth', '')}"


def max_state_diff(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].is_floating_point())


def positive_factor(y: torch.Tensor, yn: torch.Tensor) -> float:
    return float((yn * y).sum() / (y * y).sum())


def assert_same_function(a: nn.Module, b: nn.Module, x: torch.Tensor, rtol: float) -> None:
    """``b``'s logits are ``a``'s times one positive factor (the last layer's scale), to ``rtol``."""
    with torch.no_grad():
        y, yb = a(x), b(x)
    s = positive_factor(y, yb)
    assert s > 0
    torch.testing.assert_close(yb, s * y, rtol=rtol, atol=rtol * float(yb.abs().max()))
    assert torch.equal(yb.argmax(1), y.argmax(1))


def bn_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


# --------------------------------------------------------------------------------------------------
# the canonical form removes both symmetries


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("case", BN_NETS, ids=net_id)
def test_random_factors_of_both_kinds_give_the_same_canonical_form(case, kind):
    """Float64, so that the comparison sees the algebra, not float32 rounding."""
    name, config, data = case
    model = make(name, config, data).double()
    moved, moves = random_bn_scales(model, seed=3, **KINDS[kind])
    assert moves["filters"] if kind != "affine" else moves["affine"]
    if name == "resnet" and kind != "filters":  # residual streams carry a shared affine scale
        assert any(g.startswith("stream:") for g in moves["affine"])
    assert max_state_diff(model, moved) > 0.1
    x = inputs(data).double()
    # (b) is exact; (a) only up to BatchNorm's eps (the factors reach 5, the variances 25x)
    assert_same_function(model, moved, x, rtol=1e-12 if kind == "affine" else 1e-3)
    canonical, other = normalize(model), normalize(moved)
    assert geodesic_distance(canonical, other) < 1e-6
    assert max_state_diff(canonical, other) < 1e-9
    if kind != "filters":  # the old modes do not fix the affine scale on its own
        assert max_state_diff(normalize(model, bn_mode="push"), normalize(moved, bn_mode="push")) > 0.1


def test_torchvision_resnet18_canonical_form():
    if not registry.library_available("torchvision"):
        pytest.skip("torchvision is not installed")
    data = ((3, 32, 32), 10)
    model = randomize_batchnorm(build_model("torchvision:resnet18", {"num_classes": 10}, data, seed=0), seed=1)
    model = model.double()
    moved, moves = random_bn_scales(model, seed=2)
    assert len(moves["filters"]) == 20  # every conv is followed by its BatchNorm
    assert sorted(g for g in moves["affine"] if g.startswith("stream:")) == [
        "stream:conv1", "stream:layer2.0.conv2", "stream:layer3.0.conv2", "stream:layer4.0.conv2"]
    canonical = normalize(model)
    assert geodesic_distance(canonical, normalize(moved)) < 1e-6
    assert max_state_diff(canonical, normalize(moved)) < 1e-9
    assert_same_function(model, canonical, inputs(data, n=4).double(), rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# the function, the spheres, alignment


@pytest.mark.parametrize("case", BN_NETS, ids=net_id)
def test_canonical_normalize_keeps_the_function_and_is_idempotent(case):
    name, config, data = case
    model = make(name, config, data)  # float32, eval mode, random BatchNorm statistics
    canonical = normalize(model)
    assert_same_function(model, canonical, inputs(data), rtol=1e-5)
    assert max_state_diff(canonical, normalize(canonical)) < 1e-5


@pytest.mark.parametrize("case", BN_NETS, ids=net_id)
def test_canonical_units_lie_on_spheres_and_bn_pairs_have_unit_norm(case):
    name, config, data = case
    model = make(name, config, data)
    canonical = normalize(model)
    graph = unit_graph(model)
    bns = bn_modules(canonical)
    for group in graph.groups:
        if group.output:
            continue
        pairs = torch.zeros(group.size, dtype=torch.float64)
        for p in group.producers:
            w = canonical.get_submodule(p.module).weight.detach().double()
            torch.testing.assert_close(w.flatten(1).norm(dim=1), torch.ones(group.size, dtype=torch.float64))
            if p.bn is None:  # a Linear of VGG's classifier: the paper's unit sphere, nothing else
                assert len(group.producers) == 1
                pairs += 1.0
                continue
            bn = bns[p.bn]
            pairs += bn.weight.detach().double() ** 2 + bn.bias.detach().double() ** 2
        # one writer: ||(gamma_k, beta_k)|| = 1; a residual stream: the root mean square over its writers
        torch.testing.assert_close(pairs / len(group.producers), torch.ones(group.size, dtype=torch.float64))


@pytest.mark.parametrize("case", BN_NETS, ids=net_id)
def test_align_undoes_permutations_of_canonical_bn_networks(case):
    name, config, data = case
    model = make(name, config, data)
    canonical = normalize(model)
    permuted, moves = random_symmetry(canonical, seed=7)
    assert moves["permutations"]
    assert geodesic_distance(canonical, permuted) > 0.1
    assert geodesic_distance(canonical, align(canonical, permuted)) < 1e-5
    # the whole pipeline: every symmetry at once (permutations, the unit scale, both BN scales)
    moved, _ = random_symmetry(model, seed=8, rescale=(0.3, 3.0))
    moved, _ = random_bn_scales(moved, seed=9)
    aligned = align(canonical, normalize(moved))
    assert geodesic_distance(canonical, aligned) < 1e-5
    assert max_state_diff(canonical, aligned) < 1e-4


# --------------------------------------------------------------------------------------------------
# the old modes, and where the moves are not symmetries


def reference_normalize_vgg(model: nn.Sequential, bn_mode: str) -> nn.Module:
    """docs/method.md §2's "push" and "absorb" written out for a VGG chain (conv-BN-ReLU-pool ...,
    flatten, linear layers), independently of the unit graph."""
    new = copy.deepcopy(model)
    layers = list(new.named_children())
    weighted = [(i, m) for i, (_, m) in enumerate(layers) if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for (i, layer), (_, nxt) in zip(weighted, weighted[1:], strict=False):
            n = layer.weight.double().flatten(1).norm(dim=1)
            c = (1.0 / n).to(layer.weight)
            layer.weight.mul_(c.view(-1, *[1] * (layer.weight.dim() - 1)))
            if layer.bias is not None:
                layer.bias.mul_(c)
            bn = layers[i + 1][1] if isinstance(layers[i + 1][1], nn.BatchNorm2d) else None
            out = c
            if bn is not None:
                bn.running_mean.mul_(c)
                bn.running_var.mul_(c * c)
                if bn_mode == "push":
                    bn.weight.mul_(c)
                    bn.bias.mul_(c)
                else:
                    out = torch.ones_like(c)
            block = nxt.weight.shape[1] // c.numel()
            cols = (1.0 / out).repeat_interleave(block)
            nxt.weight.mul_(cols.view(1, -1, *[1] * (nxt.weight.dim() - 2)))
        last = weighted[-1][1]
        factor = last.weight.shape[0] ** 0.5 / last.weight.double().norm()
        last.weight.mul_(float(factor))
        last.bias.mul_(float(factor))
    return new


@pytest.mark.parametrize("bn_mode", ["push", "absorb"])
def test_the_old_modes_keep_their_old_results(bn_mode):
    assert BN_MODES[0] == "canonical" and set(BN_MODES) == {"canonical", "push", "absorb"}
    data = ((3, 16, 16), 10)
    model = make("vgg", {"depth": 16, "width_scale": 1 / 32, "classifier": [12]}, data)
    got, expected = normalize(model, bn_mode=bn_mode), reference_normalize_vgg(model, bn_mode)
    for k, v in expected.state_dict().items():
        torch.testing.assert_close(got.state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)
    canonical = normalize(model)
    assert max_state_diff(canonical, got) > 0.01
    # networks without BatchNorm: the three modes agree
    plain = make("vgg", {"depth": 11, "width_scale": 1 / 16, "batch_norm": False}, ((3, 8, 8), 10))
    assert max_state_diff(normalize(plain), normalize(plain, bn_mode=bn_mode)) == 0.0


class GeluStream(nn.Module):
    """conv -> BN -> GELU (no affine symmetry); a residual stream whose sum passes a GELU; a stream
    with a writer without BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.b, self.bn_b = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c, self.bn_c = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.d = nn.Conv2d(4, 4, 1)
        self.e, self.bn_e = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.bn_a(self.a(x)))
        s = F.relu(self.bn_b(self.b(h)))
        s = F.gelu(s + self.bn_c(self.c(s)))  # stream 1: shared scale stopped by the GELU
        t = F.relu(self.d(s) + self.bn_e(self.e(s)))  # stream 2: writer 'd' has no BatchNorm
        return self.fc(F.adaptive_avg_pool2d(t, 1).flatten(1))


def test_affine_scale_is_moved_only_where_it_is_a_symmetry():
    model = randomize_batchnorm(GeluStream())
    graph = unit_graph(model)
    names = [g.name for g in graph.groups]
    assert names == ["a", "stream:b", "stream:d", "fc"]
    assert [carries_affine_scale(model, graph, g) for g in graph.groups] == [False] * 4
    assert not graph.group("a").shared_scale and not graph.group("stream:b").shared_scale
    assert graph.group("stream:d").shared_scale  # legal in principle, but 'd' has no BatchNorm to carry it
    for group in ("a", "stream:b", "stream:d"):
        with pytest.raises(ValueError, match="affine"):
            apply_bn_scales(model, affine={group: [2.0] * 4})
    with pytest.raises(ValueError, match="filters"):
        apply_bn_scales(model, filters={"d.weight": [2.0] * 4})
    # (a) is a symmetry for every conv followed by its BatchNorm, whatever comes after
    moved, moves = random_bn_scales(model, seed=1)
    assert sorted(moves["filters"]) == ["a.weight", "b.weight", "c.weight", "e.weight"] and not moves["affine"]
    x = inputs(((3, 6, 6), 3))
    assert_same_function(model, normalize(model), x, rtol=1e-5)
    assert max_state_diff(normalize(model), normalize(moved)) < 1e-5
    for p in ("a", "b", "c", "e"):
        w = normalize(model).get_submodule(p).weight.detach()
        torch.testing.assert_close(w.flatten(1).norm(dim=1), torch.ones(4))


def test_exported_resnet_gets_the_same_shared_scales_and_canonical_form():
    data = ((3, 8, 8), 10)
    model = make("resnet", {"width": 4, "blocks": [2, 1]}, data)
    x = inputs(data, n=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(model, (x,)).module()
    traced, aten = unit_graph(model), unit_graph(exported)
    assert [(g.name, g.shared_scale) for g in aten.groups] == [(g.name, g.shared_scale) for g in traced.groups]
    assert [g.name for g in traced.groups if carries_affine_scale(model, traced, g)] == [
        "stream:conv1", "layers.0.0.conv1", "layers.0.1.conv1", "layers.1.0.conv1", "stream:layers.1.0.conv2"]
    canonical, canonical_exported = normalize(model), normalize(exported)
    for k, v in canonical.state_dict().items():
        torch.testing.assert_close(canonical_exported.state_dict()[k], v, msg=k)
    assert_same_function(exported, canonical_exported, x, rtol=1e-5)
