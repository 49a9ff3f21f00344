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


def test_target_error_null_validates_and_reaches_the_train_jobs():
    """``target_error: null``: every minimum runs its whole budget (docs/studies.md); the paper's presets use it, the
    CPU presets stop at 0% train error by design."""
    from toroid.store.study_spec import train_identity, train_request

    spec = resolve_spec({"samplers": ["sgd", "rsgd"], "seeds": [0], "epochs": 40, "target_error": None})
    assert spec.target_error is None
    jobs = [train_request(spec, step) for step in plan(spec) if step.kind == "train"]
    assert len(jobs) == 2 and all(job.target_error is None and job.epochs == 40 for job in jobs)
    assert train_identity(jobs[0])["target_error"] is None
    for name in ("mnist-mlp", "fmnist-lenet", "cifar10-vgg16bn", "fmnist-binary-mlp"):
        assert PRESETS[name]["target_error"] is None and resolve_spec(name).target_error is None, name
    for name in ("digits-mlp", "hmm-committee", "fmnist-mlp-cpu"):
        assert resolve_spec(name).target_error == 0.0, name
    with pytest.raises(StudyError, match="target_error"):
        resolve_spec({"target_error": 1.5})
