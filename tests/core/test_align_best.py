"""``align`` keeps the best of identity, the paper's greedy matching and its refinement
(docs/method.md §3, §4): the distance after alignment is never larger than with the identity
permutation, a permuted copy still aligns back to zero, and the record says which candidate won."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tests.core.conftest import SMALL_BINARY, case_id, inputs, make
from toroid.worker.landscape import (
    align_report,
    euclidean_distances,
    load_dataset,
    one_bend,
    path_profile,
    section_2d,
    torus_slice,
    train_minimum,
)
from toroid.worker.landscape.alignment import CANDIDATES
from toroid.worker.landscape.distances import geodesic_distance, hamming_distance
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.symmetry import align, align_permutations, normalize, random_symmetry

CONTINUOUS = [
    ("mlp", {"widths": [16, 12]}, ((1, 8, 8), 10)),
    ("lenet", {"channels": [4, 6], "hidden": [10]}, ((1, 8, 8), 10)),
    ("resnet", {"width": 4, "blocks": [2, 1]}, ((3, 8, 8), 10)),
]


def perturbed(model: nn.Module, eps: float, seed: int) -> nn.Module:
    """The same network with every floating parameter moved by ``eps`` times its RMS, independently:
    a second network sharing the first one's initialization (identity is near-optimal)."""
    new = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in new.parameters():
            scale = float(p.detach().pow(2).mean().sqrt()) or 1.0
            p.add_(eps * scale * torch.randn(p.shape, generator=g))
    return new


def check_report(reference: nn.Module, model: nn.Module, data: tuple, score: str = "auto") -> tuple[nn.Module, dict]:
    """Align, then check the record against the distances measured here: identity's is the raw
    distance, the chosen one is the smallest (ties: the simpler), the returned model has it."""
    aligned, report = align_report(reference, model, score=score)
    binary = report.score == "hamming"
    measure = hamming_distance if binary else geodesic_distance
    if report.score == "euclidean":
        def measure(a, b):
            return euclidean_distances(a, b, variants=["raw"])["raw"]
    d = report.distances
    assert list(d) == list(CANDIDATES)
    assert d["identity"] == pytest.approx(measure(reference, model), rel=1e-9, abs=1e-12)
    assert d[report.chosen] == pytest.approx(measure(reference, aligned), rel=1e-9, abs=1e-12)
    assert d[report.chosen] == min(d.values())
    simpler = CANDIDATES[: CANDIDATES.index(report.chosen)]
    assert all(d[c] > d[report.chosen] for c in simpler)  # a tie would have kept the simpler one
    assert d["refined"] <= d["greedy"] * (1 + 1e-6) + 1e-12  # refinement steps are kept only when the distance drops
    assert measure(reference, aligned) <= measure(reference, model) + 1e-9
    x = inputs(data)
    with torch.no_grad():  # a symmetry: the function is unchanged
        torch.testing.assert_close(aligned(x), model(x), rtol=1e-4, atol=1e-4)
    return aligned, report.summary()


# --------------------------------------------------------------------------------------------------
# never farther than the identity; permuted copies still align back to zero


@settings(max_examples=10, deadline=None)
@given(
    widths=st.lists(st.integers(3, 24), min_size=1, max_size=3),
    seed=st.integers(0, 10_000),
    eps=st.sampled_from([0.02, 0.1, 0.3, 1.0, None]),  # None: an independent initialization
)
def test_property_mlp_align_is_never_worse_than_identity(widths, seed, eps):
    data = ((7,), 4)
    a = build_model("mlp", {"widths": widths}, data, seed=seed)
    b = build_model("mlp", {"widths": widths}, data, seed=seed + 1) if eps is None else perturbed(a, eps, seed)
    na, nb = normalize(a), normalize(b)
    check_report(na, nb, data)
    check_report(a, b, data, score="euclidean")
    moved, _ = random_symmetry(na, seed=seed + 2)
    assert geodesic_distance(na, align(na, moved)) < 1e-5


@settings(max_examples=8, deadline=None)
@given(
    widths=st.lists(st.integers(20, 40), min_size=1, max_size=3),
    seed=st.integers(0, 10_000),
    flips=st.sampled_from([0.02, 0.1, 0.3, None]),  # fraction of latent signs flipped; None: independent
)
def test_property_binary_mlp_align_is_never_worse_than_identity(widths, seed, flips):
    data = ((30,), 4)
    a = build_model("binary_mlp", {"widths": widths}, data, seed=seed)
    if flips is None:
        b = build_model("binary_mlp", {"widths": widths}, data, seed=seed + 1)
    else:
        b = copy.deepcopy(a)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in b.parameters():
                p.mul_(torch.where(torch.rand(p.shape, generator=g) < flips, -1.0, 1.0))
    check_report(a, b, data)
    moved, _ = random_symmetry(a, seed=seed + 2)
    assert hamming_distance(a, align(a, moved)) == 0.0


@pytest.mark.parametrize("case", CONTINUOUS, ids=case_id)
@pytest.mark.parametrize("eps", [0.05, 0.5, None])
def test_conv_and_residual_nets_are_never_worse_than_identity(case, eps):
    name, config, data = case
    a = make(name, config, data, seed=0)
    b = make(name, config, data, seed=1) if eps is None else perturbed(a, eps, seed=3)
    na, nb = normalize(a), normalize(b)
    _, summary = check_report(na, nb, data)
    if eps == 0.05:  # a small perturbation of one initialization: nothing beats the identity
        assert summary["chosen"] == "identity"
    moved, _ = random_symmetry(na, seed=5)
    assert geodesic_distance(na, align(na, moved)) < 1e-5


@pytest.mark.parametrize("case", SMALL_BINARY, ids=case_id)
@pytest.mark.parametrize("flips", [0.05, None])
def test_binary_nets_are_never_worse_than_identity(case, flips):
    name, config, data = case
    a = make(name, config, data, seed=0)
    b = make(name, config, data, seed=1)
    if flips is not None:
        b = copy.deepcopy(a)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in b.parameters():
                p.mul_(torch.where(torch.rand(p.shape, generator=g) < flips, -1.0, 1.0))
    check_report(a, b, data)
    moved, _ = random_symmetry(a, seed=4)
    aligned, report = align_report(a, moved)
    assert hamming_distance(a, aligned) == 0.0 and report.distances[report.chosen] == 0.0


def test_odd_activations_refine_signs_too():
    """tanh units: flips are symmetries of continuous units too (docs/method.md §1)."""
    def tanh_mlp(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(OrderedDict(fc1=nn.Linear(6, 12), act1=nn.Tanh(), fc2=nn.Linear(12, 9),
                                         act2=nn.Tanh(), out=nn.Linear(9, 3))).eval()

    a = tanh_mlp(0)
    for b in (tanh_mlp(1), perturbed(a, 0.2, seed=1)):
        aligned, report = align_report(a, b)
        assert geodesic_distance(a, aligned) <= geodesic_distance(a, b) + 1e-9
        assert report.distances["refined"] <= report.distances["greedy"] * (1 + 1e-6)
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(aligned(x), b(x), rtol=1e-5, atol=1e-5)
    moved, _ = random_symmetry(a, seed=3)
    assert moved.fc1.weight.ne(a.fc1.weight).any()
    assert geodesic_distance(a, align(a, moved)) < 1e-5


# --------------------------------------------------------------------------------------------------
# the methods and the record


def test_methods_greedy_and_refine_return_their_candidate_and_options_are_checked():
    data = ((7,), 4)
    a = normalize(build_model("mlp", {"widths": [20, 20]}, data, seed=0))
    b = normalize(build_model("mlp", {"widths": [20, 20]}, data, seed=1))
    greedy, report = align_report(a, b, method="greedy")
    assert report.chosen == "greedy" and report.sweeps == 0 and set(report.distances) == {"identity", "greedy"}
    assert geodesic_distance(a, greedy) == pytest.approx(report.distances["greedy"])
    refined, report = align_report(a, b, method="refine")
    assert report.chosen == "refined" and report.sweeps >= 1
    assert geodesic_distance(a, refined) == pytest.approx(report.distances["refined"])
    best, matches = align_permutations(a, b)
    _, report = align_report(a, b)
    assert matches.keys() == report.matches.keys() == {"fc1", "fc2"}
    record = report.to_dict()
    assert record["chosen"] in CANDIDATES and record["score"] == "geodesic"
    assert len(record["matches"]["fc1"]["perm"]) == 20 and "matches" not in report.summary()
    with pytest.raises(ValueError, match="method"):
        align(a, b, method="fastest")
    with pytest.raises(ValueError, match="score"):
        align(a, b, score="cosine")
    with pytest.raises(ValueError, match="needs binary"):
        align(a, b, score="hamming")


def test_distances_and_paths_carry_the_record():
    digits = load_dataset("digits")
    a = build_model("mlp", {"widths": [12]}, digits, seed=0).eval()
    b = perturbed(a, 0.05, seed=1).eval()
    d = euclidean_distances(a, b)
    assert d["aligned"] <= d["raw"] + 1e-12 and d["normalized_aligned"] <= d["normalized"] + 1e-12
    for kind in ("geodesic", "linear_aligned"):
        prof = path_profile(a, b, digits, kind=kind, points=2)
        record = prof.extra["alignment"]
        assert record["chosen"] == "identity" and record["score"] == ("geodesic" if kind == "geodesic" else "euclidean")
        assert prof.to_dict()["extra"]["alignment"] == record
    assert "alignment" not in path_profile(a, b, digits, kind="linear", points=2).extra
    c = perturbed(a, 0.05, seed=2).eval()
    torus = torus_slice(a, b, digits, c, resolution=2)
    assert set(torus.extra["alignment"]) == {"B", "C"} and torus.extra["alignment"]["C"]["chosen"] in CANDIDATES
    section = section_2d(a, b, c, digits, space="normalized", resolution=2)
    assert set(section.extra["alignment"]) == {"w2", "w3"}
    bend = one_bend(a, b, digits, kind="linear_aligned", points=2, epochs=1)
    assert bend.extra["alignment"]["score"] == "euclidean" and bend.to_dict()["extra"]["alignment"]["chosen"]


# --------------------------------------------------------------------------------------------------
# the finding (issue 16, finding 4): greedy matching of minima with overlapping initializations


def test_greedy_worse_than_identity_on_overlapping_inits_and_align_is_not():
    """sgd and rsgd with seed 3 start from one initialization; after a short training the paper's
    greedy matching lands farther away than the identity, and ``align`` keeps the identity."""
    digits = load_dataset("digits")
    config = {"widths": [128, 128]}
    a, _ = train_minimum("mlp", config, digits, sampler="sgd", seed=3, epochs=3)
    b, _ = train_minimum("mlp", config, digits, sampler="rsgd", seed=3, epochs=3)
    na, nb = normalize(a), normalize(b)
    identity = geodesic_distance(na, nb)
    greedy = geodesic_distance(na, align(na, nb, method="greedy"))
    assert greedy > identity  # the finding
    aligned, report = align_report(na, nb)
    assert geodesic_distance(na, aligned) <= identity
    assert report.chosen == "identity" and report.distances["greedy"] == pytest.approx(greedy)


def test_binary_greedy_worse_than_identity_on_overlapping_inits_and_align_is_not():
    digits = load_dataset("digits")
    config = {"widths": [201, 201]}
    a, _ = train_minimum("binary_mlp", config, digits, sampler="binary", hparams={"variant": "sgd"}, seed=1, epochs=2)
    b, _ = train_minimum("binary_mlp", config, digits, sampler="binary", hparams={"variant": "rsgd"}, seed=1, epochs=2)
    identity = hamming_distance(a, b)
    assert hamming_distance(a, align(a, b, method="greedy")) > identity  # the finding
    aligned, report = align_report(a, b)
    assert hamming_distance(a, aligned) <= identity and report.chosen == "identity"
