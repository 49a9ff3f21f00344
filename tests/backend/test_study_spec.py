"""Study specs and plans without a stack: seeds per sampler (``inits``), preset plans, refusals."""

from __future__ import annotations

import pytest

from toroid.store.study_spec import PRESETS, StudyError, plan, resolve_spec


def train_seeds(spec) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for step in plan(spec):
        if step.kind == "train":
            out.setdefault(step.args["label"], []).append(step.args["seed"])
    return out


def test_independent_inits_give_every_minimum_its_own_seed():
    seeds = train_seeds(resolve_spec({"samplers": ["sgd", "rsgd", "adv"], "seeds": [0, 1]}))
    assert seeds == {"sgd": [0, 1], "rsgd": [2, 3], "adv": [4, 5]}
    # non-contiguous seeds never collide across samplers either
    spaced = train_seeds(resolve_spec({"samplers": ["sgd", "adv"], "seeds": [3, 7]}))
    assert spaced == {"sgd": [3, 7], "adv": [11, 15]}


def test_shared_inits_and_explicit_sampler_seeds_are_kept():
    shared = train_seeds(resolve_spec({"samplers": ["sgd", "adv"], "seeds": [0, 1], "inits": "shared"}))
    assert shared == {"sgd": [0, 1], "adv": [0, 1]}
    own = train_seeds(resolve_spec({"samplers": ["sgd", {"sampler": "adv", "seeds": [9]}], "seeds": [0, 1]}))
    assert own == {"sgd": [0, 1], "adv": [9]}


def test_digits_preset_plans_every_pair_and_distinct_minima():
    spec = resolve_spec("digits-mlp")
    steps = plan(spec)
    kinds = [s.kind for s in steps]
    # 6 minima, 6 local energies, 1 distance matrix, 15 pairs x 3 kinds, 15 one-bend paths
    assert (kinds.count("train"), kinds.count("flatness"), kinds.count("distances")) == (6, 6, 1)
    assert sum(1 for s in steps if s.phase == "paths") == 45
    assert sum(1 for s in steps if s.phase == "one_bend") == 15
    seeds = [s for ss in train_seeds(spec).values() for s in ss]
    assert len(set(seeds)) == 6
    assert len({s.id for s in steps}) == len(steps)  # step ids key the outputs: never two alike


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_plans(name):
    assert plan(resolve_spec(name))


def test_bad_inits_value_is_refused_with_the_choices():
    with pytest.raises(StudyError, match="independent"):
        resolve_spec({"inits": "random"})
