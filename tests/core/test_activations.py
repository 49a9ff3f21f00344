"""Activations, LayerNorm and unknown operations in the module tracer (docs/method.md §1): which
symmetries survive each activation, and that normalize / align keep the function and undo the
moves that are symmetries. ReLU networks behave as before."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toroid.worker.landscape import align, euclidean_distances, geodesic_distance, normalize
from toroid.worker.landscape.graph import describe_symmetries, sphere_blocks, unit_graph
from toroid.worker.landscape.symmetry import apply_symmetry, random_symmetry


def mlp(act: nn.Module, seed: int = 0) -> nn.Module:
    """Linear(6, 10) -> act -> Linear(10, 8) -> act -> Linear(8, 3)."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        fc1=nn.Linear(6, 10), act1=copy.deepcopy(act), fc2=nn.Linear(10, 8), act2=copy.deepcopy(act),
        out=nn.Linear(8, 3),
    )).eval()


X = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))

# activation -> (rescalable, flippable) of the hidden groups feeding it
CASES = [
    (nn.ReLU(), True, False),
    (nn.LeakyReLU(0.1), True, False),  # positively homogeneous for any slope
    (nn.GELU(), False, False),
    (nn.SiLU(), False, False),
    (nn.Sigmoid(), False, False),
    (nn.Tanh(), False, True),  # odd: sign flips are a symmetry
    (nn.ReLU6(), False, False),  # saturates: permutations only
    (nn.Hardtanh(-1.0, 1.0), False, True),  # saturates, odd
]


@pytest.mark.parametrize(("act", "rescalable", "flippable"), CASES, ids=lambda v: type(v).__name__)
def test_activation_decides_which_symmetries_remain(act, rescalable, flippable):
    model = mlp(act)
    graph = unit_graph(model)
    assert [g.name for g in graph.groups] == ["fc1", "fc2", "out"] and not graph.unsupported
    for name in ("fc1", "fc2"):
        g = graph.group(name)
        assert (g.permutable, g.rescalable, g.flippable) == (True, rescalable, flippable), name
    described = describe_symmetries(model)["groups"][0]
    assert (described["permuted"], described["rescaled"], described["flipped"]) == (True, rescalable, flippable)
    if not rescalable:
        assert any("not positively homogeneous" in r for r in described["reasons"])

    # every move the graph allows keeps the function, and align undoes it
    moved, moves = random_symmetry(model, seed=2, rescale=(0.3, 3.0))
    assert bool(moves["scales"]) == rescalable and bool(moves["signs"]) == flippable
    with torch.no_grad():
        torch.testing.assert_close(moved(X), model(X), rtol=1e-5, atol=1e-5)
    if rescalable:  # both normalized: the geodesic distance on the product of spheres (docs/method.md §5)
        na = normalize(model)
        assert geodesic_distance(na, align(na, normalize(moved))) < 1e-5
    else:  # nothing hidden is on a sphere: the aligned per-parameter Euclidean distance (§5)
        assert euclidean_distances(model, moved, variants=["aligned"])["aligned"] < 1e-6
        with pytest.raises(ValueError, match="rescaling is not a symmetry"):
            apply_symmetry(model, scales={"fc1": [2.0] * 10})


def test_functional_activations_are_in_the_table():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.fc3, self.out = nn.Linear(6, 5), nn.Linear(5, 5), nn.Linear(5, 5), nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.leaky_relu(self.fc1(x), 0.2)
            h = torch.tanh(F.gelu(self.fc2(h)))
            return self.out(torch.sigmoid(F.silu(self.fc3(h))))

    graph = unit_graph(Functional())
    assert not graph.unsupported
    assert [(g.name, g.rescalable, g.flippable) for g in graph.groups] == [
        ("fc1", True, False), ("fc2", False, False), ("fc3", False, False), ("out", False, False)]


def test_layernorm_follows_the_units_and_blocks_rescaling():
    torch.manual_seed(0)

    class Normed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.ln1 = nn.Linear(6, 10), nn.LayerNorm(10)
            self.fc2, self.ln2 = nn.Linear(10, 8), nn.LayerNorm(8)
            self.out = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.ln1(self.fc1(x)))
            h = F.relu(F.layer_norm(self.fc2(h), (8,), self.ln2.weight, self.ln2.bias))  # functional form
            return self.out(h)

    model = Normed().eval()
    with torch.no_grad():
        for ln in (model.ln1, model.ln2):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.normal_(0, 0.3)
    graph = unit_graph(model)
    assert not graph.unsupported
    for name, follower in (("fc1", "ln1"), ("fc2", "ln2")):
        g = graph.group(name)
        assert g.followers == [follower] and g.permutable and not g.rescalable and not g.flippable
        assert any("LayerNorm" in n or "layer_norm" in n for n in g.notes)
    assert sphere_blocks(model) == [b for b in sphere_blocks(model) if not b.per_unit]  # only the last layer

    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    moved = apply_symmetry(model, permutations={"fc1": perm.tolist()})
    assert torch.equal(moved.ln1.weight, model.ln1.weight[perm]) and torch.equal(moved.ln1.bias, model.ln1.bias[perm])
    with torch.no_grad():
        torch.testing.assert_close(moved(X), model(X), rtol=1e-5, atol=1e-5)
    shuffled, _ = random_symmetry(model, seed=4)
    assert euclidean_distances(model, shuffled, variants=["aligned"])["aligned"] < 1e-6


def test_relu_networks_still_normalize_and_align_as_before():
    model = mlp(nn.ReLU())
    blocks = sphere_blocks(model)
    assert [(b.param, b.per_unit) for b in blocks] == [
        ("fc1.weight", True), ("fc2.weight", True), ("out.weight", False)]
    summary = describe_symmetries(model)
    assert summary["summary"] == {"hidden_groups": 2, "permuted": 2, "rescaled": 2, "flipped": 0, "unsupported_ops": 0}
    assert all(not g["reasons"] for g in summary["groups"] if not g["output"])
    normalized = normalize(model)
    torch.testing.assert_close(normalized.fc1.weight.norm(dim=1), torch.ones(10))
    moved, _ = random_symmetry(model, seed=7, rescale=(0.2, 5.0))
    assert not moved.fc1.weight.norm(dim=1).allclose(model.fc1.weight.norm(dim=1))
    assert geodesic_distance(normalized, align(normalized, normalize(moved))) < 1e-5


def test_unknown_operation_is_named_and_freezes_its_inputs():
    class Spectral(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.out = nn.Linear(6, 8), nn.Linear(8, 7), nn.Linear(7 + 5, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.fc1(x))
            spectrum = torch.fft.rfft(h, dim=1).abs()
            return self.out(torch.cat([F.relu(self.fc2(h)), spectrum], dim=1))

    torch.manual_seed(0)
    model = Spectral().eval()
    graph = unit_graph(model)  # no exception
    assert any("torch.fft.rfft" in u for u in graph.unsupported)
    assert any("torch.cat" in u for u in graph.unsupported)
    fc1, fc2 = graph.group("fc1"), graph.group("fc2")
    assert not (fc1.permutable or fc1.rescalable or fc1.flippable)
    assert any("unsupported" in n and "rfft" in n for n in fc1.notes)
    assert not fc2.permutable  # the module tracer does not follow torch.cat: its input is frozen too
    with torch.no_grad():
        y = model(X)
        yn = normalize(model)(X)
        ya = align(model, model)(X)
    assert torch.equal(yn.argmax(1), y.argmax(1)) and torch.equal(ya, y)


def test_grouped_convolution_falls_back_instead_of_raising():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3), relu1=nn.ReLU(), conv2=nn.Conv2d(4, 4, 3, groups=2), relu2=nn.ReLU(),
        flatten=nn.Flatten(), out=nn.Linear(4 * 4 * 4, 2),
    )).eval()
    graph = unit_graph(model)
    assert any("conv2" in u and "grouped" in u for u in graph.unsupported)
    assert not graph.group("conv1").permutable
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(normalize(model)(x).argmax(1), model(x).argmax(1))
