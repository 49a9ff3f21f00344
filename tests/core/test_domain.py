"""The domain facts' one home: path kinds and the binary rule (docs/method.md §4, §7), binary architectures,
the local energy at the largest sigma (§6), and the conversion of results to strict JSON."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from toroid.worker.landscape.bend import one_bend
from toroid.worker.landscape.kinds import (
    ALL_PATH_KINDS,
    BEND_KINDS,
    PATH_KINDS,
    bend_kinds,
    check_bend_kind,
    check_path_kind,
    path_kinds,
)
from toroid.worker.landscape.nets import ARCHITECTURES, build_model, is_binary_architecture
from toroid.worker.landscape.paths import prepare_endpoints
from toroid.worker.landscape.results import (
    LocalEnergy,
    PathProfile,
    jsonable,
    local_energy_at_largest_sigma,
    to_json,
)
from toroid.worker.landscape.symmetry import UnitMatch


def test_path_kinds_follow_the_binary_rule():
    assert path_kinds(False) == ("linear", "linear_aligned", "geodesic", "one_bend")
    assert path_kinds(True) == ("linear", "linear_aligned", "flip", "one_bend")
    assert path_kinds(False, one_bend=False) == ("linear", "linear_aligned", "geodesic")
    assert path_kinds(True, one_bend=False) == ("linear", "linear_aligned", "flip")
    assert set(ALL_PATH_KINDS) == set(path_kinds(False)) | set(path_kinds(True)) == {*PATH_KINDS, "one_bend"}
    assert bend_kinds(False) == ("geodesic", "linear_aligned", "linear") and bend_kinds(True) == ("flip",)
    assert set(BEND_KINDS) == set(bend_kinds(False)) | set(bend_kinds(True))


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("kind", [*ALL_PATH_KINDS, "spline"])
def test_check_path_kind_says_what_is_wrong_and_which_kinds_fit(kind, binary):
    fits = path_kinds(binary)
    if kind in fits:
        check_path_kind(kind, binary)
        return
    with pytest.raises(ValueError) as info:
        check_path_kind(kind, binary)
    message = str(info.value)
    assert ("binary" if binary else "continuous") in message and str(list(fits)) in message
    assert {"geodesic": "need continuous networks", "flip": "are for binary networks"}.get(kind, kind) in message


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("kind", [*BEND_KINDS, "one_bend"])
def test_check_bend_kind_says_which_kinds_fit(kind, binary):
    fits = bend_kinds(binary)
    if kind in fits:
        check_bend_kind(kind, binary)
        return
    with pytest.raises(ValueError, match="the kind must be one of") as info:
        check_bend_kind(kind, binary)
    assert str(list(fits)) in str(info.value)


def test_the_core_accepts_exactly_the_kinds_that_fit(digits):
    for name, binary in (("mlp", False), ("binary_mlp", True)):
        a, b = (build_model(name, {"widths": [6]}, digits, seed=s) for s in (0, 1))
        for kind in PATH_KINDS:
            if kind in path_kinds(binary):
                prepare_endpoints(a, b, kind)
            else:
                with pytest.raises(ValueError, match=re.escape(str(list(path_kinds(binary, one_bend=False))))):
                    prepare_endpoints(a, b, kind)
        with pytest.raises(ValueError, match="not a profiled path kind"):
            prepare_endpoints(a, b, "one_bend")
        for kind in BEND_KINDS:
            if kind not in bend_kinds(binary):  # rejected before any retraining
                with pytest.raises(ValueError, match="the kind must be one of"):
                    one_bend(a, b, digits, kind)


def test_is_binary_architecture():
    for name, spec in ARCHITECTURES.items():
        assert is_binary_architecture(name) is spec.binary
    assert is_binary_architecture("binary_mlp") and not is_binary_architecture("mlp")
    assert is_binary_architecture("no_such_architecture") is False


def _local_energy(sigmas, mean):
    n = len(sigmas)
    return LocalEnergy(sigmas=sigmas, mean=mean, std=[0.0] * n, stderr=[0.0] * n, samples=[1] * n,
                       base_train_error=0.0, base_test_error=0.1, noise_on="all", mode="fast", subsample=None,
                       binary=False)


def test_local_energy_at_largest_sigma():
    assert local_energy_at_largest_sigma(_local_energy([0.0, 0.5, 0.2], [0.0, 0.3, 0.1]).to_dict()) == 0.3
    assert local_energy_at_largest_sigma({"sigmas": [1, 2], "mean": [0.1, 2]}) == 2.0
    for bad in (
        {},
        {"sigmas": [], "mean": []},
        {"sigmas": [0.1, 0.2], "mean": [0.1]},
        {"sigmas": [0.1, 0.2], "mean": [0.1, None]},
        {"sigmas": [0.1, 0.2], "mean": [0.1, math.nan]},
        {"sigmas": [0.1, 0.2], "mean": [0.1, math.inf]},
        {"sigmas": [0.1, 0.2], "mean": [0.1, True]},
        {"sigmas": [0.1, 0.2], "mean": [0.1, "0.3"]},
        {"sigmas": [0.1, None], "mean": [0.1, 0.2]},
        {"sigmas": [0.1, math.nan], "mean": [0.1, 0.2]},
    ):
        assert local_energy_at_largest_sigma(bad) is None, bad
    # a non-finite local energy (a NaN from an empty split) is stored as None and read back as None
    assert local_energy_at_largest_sigma(_local_energy([0.0, 0.5], [0.0, math.nan]).to_dict()) is None


class _Thing:
    def __str__(self) -> str:
        return "thing"


def test_to_json_gives_strict_json():
    value = {
        1: (1.5, math.nan, -math.inf, None, True, "s"),
        "np": [np.float32(0.25), np.int64(3), np.array([[1, 2]]), np.bool_(True)],
        "torch": torch.tensor([0.5, float("nan")]),
        "record": UnitMatch(np.array([1, 0]), None, 0.5),
        "other": _Thing(),
    }
    out = to_json(value)
    assert out == {
        "1": [1.5, None, None, None, True, "s"],
        "np": [0.25, 3, [[1, 2]], True],
        "torch": [0.5, None],
        "record": {"perm": [1, 0], "signs": None, "similarity": 0.5},
        "other": "thing",
    }
    assert type(out["np"][0]) is float and type(out["np"][1]) is int
    json.dumps(out, allow_nan=False)
    assert jsonable is to_json


def test_records_serialize_non_finite_numbers_as_none():
    prof = PathProfile(kind="linear", x=[0.0, 1.0], distance=[0.0, 1.0], length=1.0, train_error=[0.1, 0.2],
                       test_error=[math.nan, math.nan], train_loss=[0.3, 0.4], test_loss=[math.nan, math.nan],
                       barrier=0.2, test_barrier=math.nan, bn="none", points=2)
    data = prof.to_dict()
    assert data["test_error"] == [None, None] and data["test_barrier"] is None
    json.dumps(data, allow_nan=False)
    assert PathProfile.from_dict(json.loads(json.dumps(data))).train_error == [0.1, 0.2]
