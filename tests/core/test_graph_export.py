"""The unit graph of programs exported with torch.export (docs/method.md §1, "Exported programs"):
the ATen-graph builder finds the same groups as the module tracer, and normalize / align work on
exported modules as on the nn.Modules they came from."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.core.conftest import randomize_batchnorm
from toroid.worker.landscape import align, euclidean_distances, geodesic_distance, normalize
from toroid.worker.landscape.graph import describe_symmetries, is_exported, unit_graph
from toroid.worker.landscape.symmetry import apply_symmetry, random_symmetry

# torch.export's pytree specs warn (FutureWarning) when an exported module is deep-copied
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def export(model: nn.Module, x: torch.Tensor, *, dynamic_batch: bool = False) -> nn.Module:
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(model.eval(), (x,), dynamic_shapes=shapes).module()


def signature(graph) -> list[tuple]:
    """What a unit graph says about each group, names included."""
    return [
        (g.name, g.size, g.permutable, g.rescalable, g.flippable, g.residual, g.output,
         [(p.weight_name, p.bias_name, p.bn) for p in g.producers], sorted(g.followers),
         sorted((c.weight_name, c.offset, c.flattened, c.fixed) for c in g.consumers))
        for g in graph.groups
    ]


def positive_factor(y: torch.Tensor, yn: torch.Tensor) -> float:
    return float((yn * y).sum() / (y * y).sum())


# --------------------------------------------------------------------------------------------------
# a residual CNN with BatchNorm


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + x)


class ResCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.block = Residual(6)
        self.pool = nn.MaxPool2d(2)
        self.conv3, self.bn3 = nn.Conv2d(6, 5, 3, padding=1), nn.BatchNorm2d(5)
        self.fc = nn.Linear(5 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(F.relu(self.bn1(self.conv1(x))))
        x = F.relu(self.bn3(self.conv3(self.pool(x))))
        return self.fc(torch.flatten(x, 1))


@pytest.fixture(scope="module")
def cnn() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return randomize_batchnorm(ResCNN(), seed=3), torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_exported_cnn_has_the_module_tracers_unit_graph(cnn):
    model, x = cnn
    gm = export(model, x)
    assert is_exported(gm) and not is_exported(model)
    exported, traced = unit_graph(gm), unit_graph(model)
    assert signature(exported) == signature(traced)
    assert exported.tracer == "torch.export" and traced.tracer == "torch.fx" and not exported.unsupported
    assert [g.name for g in exported.groups] == ["stream:conv1", "block.conv1", "conv3", "fc"]
    stream = exported.group("stream:conv1")
    assert stream.residual and stream.permutable and not stream.rescalable
    assert stream.followers == ["bn1", "block.bn2"]
    assert exported.group("conv3").rescalable and exported.group("block.conv1").rescalable
    # the head reads conv3's 5 channels as blocks of 4 x 4 columns
    assert [(c.module, c.block) for c in exported.group("conv3").consumers] == [("fc", 16)]


def test_normalize_and_align_on_an_exported_cnn(cnn):
    model, x = cnn
    a = export(model, x)
    with torch.no_grad():
        y = a(x)
        yn = normalize(a)(x)
    s = positive_factor(y, yn)
    torch.testing.assert_close(yn, s * y, rtol=1e-4, atol=1e-4 * float(yn.abs().max()))
    assert torch.equal(yn.argmax(1), y.argmax(1))

    # b: the original module moved by a random permutation and positive rescaling, then exported
    # with a dynamic batch size (symbolic shapes); c: the same moves applied to the exported module
    moved, moves = random_symmetry(model, seed=4, rescale=(0.3, 3.0))
    assert set(moves["permutations"]) == {"stream:conv1", "block.conv1", "conv3"}
    assert set(moves["scales"]) == {"block.conv1", "conv3"}
    b = export(moved, x, dynamic_batch=True)
    c, _ = random_symmetry(a, seed=5, rescale=(0.3, 3.0))
    assert is_exported(c)
    na = normalize(a)
    for other in (b, c):
        with torch.no_grad():
            torch.testing.assert_close(other(x), y, rtol=1e-4, atol=1e-4)
        assert geodesic_distance(na, normalize(other)) > 0.1  # the moves are visible before alignment
        assert geodesic_distance(na, align(na, normalize(other))) < 1e-5
    assert geodesic_distance(na, align(na, normalize(b))) == pytest.approx(0.0, abs=1e-5)


def test_graph_cache_tells_exported_graphs_apart():
    """Same parameter names and shapes, different graphs: never one cached unit graph."""

    class Act(nn.Module):
        def __init__(self, act: nn.Module) -> None:
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(4, 6), act, nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.act(self.fc1(x)))

    x = torch.randn(3, 4)
    relu, gelu = unit_graph(export(Act(nn.ReLU()), x)), unit_graph(export(Act(nn.GELU()), x))
    assert relu.group("fc1").rescalable and not gelu.group("fc1").rescalable


# --------------------------------------------------------------------------------------------------
# decompositions, bare parameters


class BareMLP(nn.Module):
    """Linear layers and one layer written as ``x @ w.t() + b`` with bare parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 9)
        self.w = nn.Parameter(torch.randn(7, 9) / 3)
        self.b = nn.Parameter(torch.randn(7) / 3)
        self.out = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x))
        h = F.relu(h @ self.w.t() + self.b)
        return self.out(h)


def test_decomposed_export_has_the_same_unit_graph():
    torch.manual_seed(0)
    model, x = BareMLP(), torch.randn(5, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model.eval(), (x,))
        decomposed = program.run_decompositions().module()
    plain = program.module()
    ops = {str(n.target) for n in decomposed.graph.nodes if n.op == "call_function"}
    assert "aten.addmm.default" in ops and "aten.linear.default" not in ops
    assert signature(unit_graph(decomposed)) == signature(unit_graph(plain))
    graph = unit_graph(plain)
    assert [g.name for g in graph.groups] == ["fc1", "w", "out"]
    bare = graph.group("w")
    assert (bare.producers[0].module, bare.producers[0].weight, bare.producers[0].bias) == ("", "w", "b")
    assert bare.rescalable and [c.weight_name for c in bare.consumers] == ["out.weight"]
    assert [c.weight_name for c in graph.group("fc1").consumers] == ["w"]

    moved, _ = random_symmetry(decomposed, seed=2, rescale=(0.5, 2.0))
    with torch.no_grad():
        torch.testing.assert_close(moved(x), model(x), rtol=1e-5, atol=1e-5)
    na = normalize(plain)
    assert geodesic_distance(na, align(na, normalize(moved))) < 1e-5


# --------------------------------------------------------------------------------------------------
# activations that are not positively homogeneous; a transformer-like block


def test_gelu_mlp_is_permutation_only_and_aligns_back():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.GELU(), nn.Linear(10, 8), nn.GELU(), nn.Linear(8, 3))
    x = torch.randn(12, 6)
    gm = export(model, x)
    summary = describe_symmetries(gm)
    hidden = [g for g in summary["groups"] if not g["output"]]
    assert [(g["name"], g["permuted"], g["rescaled"], g["flipped"]) for g in hidden] == [
        ("0", True, False, False), ("2", True, False, False)]
    assert all(any("gelu" in r and "not positively homogeneous" in r for r in g["reasons"]) for g in hidden)
    assert summary["summary"] == {"hidden_groups": 2, "permuted": 2, "rescaled": 0, "flipped": 0,
                                  "unsupported_ops": 0}
    with pytest.raises(ValueError, match="rescaling is not a symmetry"):
        apply_symmetry(gm, scales={"0": [2.0] * 10})

    moved, moves = random_symmetry(gm, seed=3)
    assert set(moves["permutations"]) == {"0", "2"} and not moves["signs"]
    with torch.no_grad():
        torch.testing.assert_close(moved(x), gm(x), rtol=1e-5, atol=1e-6)
    # Nothing hidden is normalized (GELU units keep their scale), so the geodesic distance would
    # only see the last layer: the per-parameter Euclidean distance after alignment measures the
    # whole network, and a permuted copy must be at 0 from the reference (docs/method.md §5).
    dist = euclidean_distances(gm, moved, variants=["raw", "aligned"])
    assert dist["raw"] > 0.05 and dist["aligned"] < 1e-7


class TokenBlock(nn.Module):
    """Embedding, a pre-LayerNorm GELU MLP with a residual add on (B, T, D) tokens, mean over T."""

    def __init__(self, d_in: int = 5, d: int = 8, hidden: int = 12, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(d_in, d)
        self.ln = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h + self.fc2(F.gelu(self.fc1(self.ln(h))))
        return self.head(self.ln_f(h).mean(dim=1))


def test_transformer_block_layernorm_follows_the_residual_stream():
    torch.manual_seed(0)
    model = TokenBlock()
    with torch.no_grad():
        for ln in (model.ln, model.ln_f):  # LayerNorm weights that are not all ones
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.normal_(0, 0.3)
    x = torch.randn(4, 7, 5)
    gm = export(model, x)
    graph = unit_graph(gm)
    assert [g.name for g in graph.groups] == ["stream:embed", "fc1", "head"]
    stream = graph.group("stream:embed")
    assert stream.residual and stream.permutable and not stream.rescalable and not stream.flippable
    assert [p.module for p in stream.producers] == ["embed", "fc2"]
    assert sorted(stream.followers) == ["ln", "ln_f"]
    assert sorted(c.module for c in stream.consumers) == ["fc1", "head"]
    assert graph.group("fc1").permutable and not graph.group("fc1").rescalable

    perm = torch.randperm(8, generator=torch.Generator().manual_seed(5))
    moved = apply_symmetry(gm, permutations={"stream:embed": perm.tolist()})
    state, before = moved.state_dict(), gm.state_dict()
    for key in ("ln.weight", "ln.bias", "ln_f.weight", "embed.weight", "fc2.bias"):
        assert torch.equal(state[key], before[key][perm]), key
    assert torch.equal(state["fc1.weight"], before["fc1.weight"][:, perm])
    with torch.no_grad():
        torch.testing.assert_close(moved(x), gm(x), rtol=1e-5, atol=1e-5)
    shuffled, _ = random_symmetry(gm, seed=1)
    assert euclidean_distances(gm, shuffled, variants=["aligned"])["aligned"] < 1e-7


# --------------------------------------------------------------------------------------------------
# an operation outside the table


class Spectral(nn.Module):
    """fc1's units feed an FFT (unknown to the table) and fc2; the head reads cat([fc2, |fft|])."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 7)
        self.head = nn.Linear(7 + 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x))
        spectrum = torch.fft.rfft(h, dim=1).abs()
        return self.head(torch.cat([F.relu(self.fc2(h)), spectrum], dim=1))


def test_unsupported_operation_freezes_its_inputs_and_is_named():
    torch.manual_seed(0)
    model, x = Spectral(), torch.randn(10, 6)
    gm = export(model, x)
    summary = describe_symmetries(gm)  # no exception
    assert len(summary["unsupported"]) == 1 and "fft_rfft" in summary["unsupported"][0]
    fc1, fc2 = summary["groups"][0], summary["groups"][1]
    assert (fc1["name"], fc1["permuted"], fc1["rescaled"]) == ("fc1", False, False)
    assert any("unsupported" in r and "fft_rfft" in r for r in fc1["reasons"])
    assert (fc2["name"], fc2["permuted"], fc2["rescaled"]) == ("fc2", True, True)
    # the head reads fc2's 7 units in its first 7 columns, the spectrum's 5 after them
    assert [(c.module, c.offset) for c in unit_graph(gm).group("fc2").consumers] == [("head", 0)]

    moved, moves = random_symmetry(gm, seed=2, rescale=(0.5, 2.0))
    assert set(moves["permutations"]) == {"fc2"}
    with torch.no_grad():
        y = gm(x)
        torch.testing.assert_close(moved(x), y, rtol=1e-5, atol=1e-5)
        yn = normalize(gm)(x)
    assert torch.equal(yn.argmax(1), y.argmax(1))
    na = normalize(gm)
    assert geodesic_distance(na, align(na, normalize(moved))) < 1e-5
