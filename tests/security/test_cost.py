"""The cost model (store/cost.py): each kind's formula, the refusal above TOROID_MAX_JOB_COST (a 422 naming the
estimate, the limit and the setting), and the default limit, which every job of the paper's CPU presets fits while
the requests of the finding (torus at 129, flatness 64 x 10,000, widths [19000, 19000] for 10,000 epochs) do not."""

from __future__ import annotations

import pytest

from toroid.store.cost import (
    TRAIN_PASSES,
    TooCostly,
    assignment_work,
    check_cost,
    estimate,
    parameter_count,
)
from toroid.store.errors import Invalid
from toroid.store.loading import template_state
from toroid.store.models import Minimum
from toroid.store.params import TrainRequest, resolve_architecture, resolve_dataset, resolve_train
from toroid.store.settings import Settings
from toroid.store.study_spec import analysis_request, plan, preset_spec, train_request
from toroid.worker.landscape.data import dataset_sizes
from toroid.worker.landscape.samplers import resolve_hparams

DEFAULT_LIMIT = Settings.model_fields["max_job_cost"].default
P, A, n, m = 1000, 500, 100, 20  # parameters, assignment work, training and test samples
N = n + m
CPU_PRESETS = ("digits-mlp", "hmm-committee", "fmnist-mlp-cpu")


def train(sampler: str, epochs: int, **hyper) -> dict:
    return {"sampler": sampler, "epochs": epochs, "hyperparameters": resolve_hparams(sampler, hyper)}


def test_default_limit_is_documented_value():
    assert DEFAULT_LIMIT == 1e13


@pytest.mark.parametrize(("params", "expected"), [
    (train("sgd", 10), 10 * P * (TRAIN_PASSES * n + N)),
    (train("adam", 10), 10 * P * (TRAIN_PASSES * n + N)),
    (train("entropy_sgd", 10), 10 * P * (TRAIN_PASSES * n + N)),  # an epoch costs an SGD epoch by design
    (train("rsgd", 10), 10 * P * (TRAIN_PASSES * 5 * n + N)),  # 5 replicas by default
    (train("rsgd", 10, replicas=3), 10 * P * (TRAIN_PASSES * 3 * n + N)),
    (train("sam", 10), 10 * P * (TRAIN_PASSES * 2 * n + N)),  # two gradients per step
    (train("adv", 10), (10 + 100) * P * (TRAIN_PASSES * n + N)),  # 100 confusion epochs first
    (train("binary", 10, variant="rsgd"), 10 * P * (TRAIN_PASSES * 5 * n + N)),
    (train("binary", 10, variant="adv", confusion_epochs=7), 17 * P * (TRAIN_PASSES * n + N)),
])
def test_train_is_epochs_x_parameters_x_passes_over_the_data(params, expected):
    assert estimate("train", params, P, n, m) == expected


def test_flatness_is_sigmas_x_samples_x_training_samples_x_parameters():
    exact = {"sigmas": [0.1, 0.2, 0.3], "samples": 50, "mode": "exact"}
    assert estimate("flatness", exact, P, n, m) == P * (N + 3 * 50 * n)
    assert estimate("flatness", {**exact, "sigmas": None}, P, n, m) == P * (N + 8 * 50 * n)  # 8 default sigmas
    # fast mode evaluates a stratified subsample of at most 2048 training samples
    assert estimate("flatness", {**exact, "mode": "fast"}, P, 10_000, m) == P * (10_000 + m + 3 * 50 * 2048)
    assert estimate("flatness", {**exact, "mode": "fast"}, P, n, m) == P * (N + 3 * 50 * n)
    # sequential mode (the default): the full training set and its cap max_samples (1000 by default), the worst case
    assert estimate("flatness", {**exact, "mode": "sequential"}, P, 10_000, m) == P * (10_000 + m + 3 * 1000 * 10_000)
    assert estimate("flatness", {"sigmas": None, "max_samples": 200}, P, n, m) == P * (N + 8 * 200 * n)


def test_paths_are_points_x_data_x_parameters_plus_alignment():
    assert estimate("path", {"kind": "linear", "points": 33}, P, n, m, assignment=A) == 33 * N * P
    assert estimate("path", {"kind": "geodesic", "points": 33}, P, n, m, assignment=A) == 33 * N * P + A
    assert estimate("path", {"kind": "flip", "points": 17}, P, n, m, assignment=A) == 17 * N * P * 5 + A
    bend = {"kind": "one_bend", "points": 17, "epochs": 30}
    assert estimate("path", bend, P, n, m, assignment=A) == 30 * P * (TRAIN_PASSES * n + N) + 2 * 17 * N * P + A
    default_bend = {**bend, "epochs": None}  # the core's default bend budget, 20 epochs
    assert estimate("path", default_bend, P, n, m) == 20 * P * (TRAIN_PASSES * n + N) + 2 * 17 * N * P


def test_distances_sections_and_tori():
    ids = [f"m{i}" for i in range(5)]
    assert estimate("distances", {"minimum_ids": ids}, P, n, m, assignment=A) == 10 * (P + A)
    assert estimate("section", {"resolution": 21, "space": "raw"}, P, n, m, assignment=A) == 21**2 * N * P
    assert estimate("section", {"resolution": 21, "space": "normalized"}, P, n, m, assignment=A) == (
        21**2 * N * P + 2 * A)
    assert estimate("torus", {"resolution": 33, "minimum_ids": ids[:2]}, P, n, m, assignment=A) == 33**2 * N * P + A
    assert estimate("torus", {"resolution": 33, "minimum_ids": ids[:3]}, P, n, m, assignment=A) == (
        33**2 * N * P + 2 * A)
    with pytest.raises(ValueError, match="no cost model for job kind 'study'"):
        estimate("study", {}, P, n, m)


def test_network_sizes_come_from_the_template():
    template, _ = template_state("mlp", {"widths": [512, 512]}, (1, 8, 8), 10)
    assert parameter_count(template) == 64 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    assert assignment_work(template) == 512**3 + 512**3 + 10**3


def test_above_the_limit_the_refusal_names_estimate_limit_and_setting():
    torus = {"resolution": 129, "minimum_ids": ["a", "b"]}
    cost = estimate("torus", torus, 10**6, 1437, 360)
    assert check_cost("torus", torus, 10**6, 1437, 360, max_cost=cost) == cost
    with pytest.raises(TooCostly) as raised:
        check_cost("torus", torus, 10**6, 1437, 360, max_cost=1e13)
    message = str(raised.value)
    assert isinstance(raised.value, Invalid) and raised.value.status == 422
    assert f"estimated at {cost:.2e} sample-parameter operations" in message
    assert "resolution 129^2 x 1,797 train+test samples x 1,000,000 parameters" in message
    assert "above this server's limit of 1.00e+13 (TOROID_MAX_JOB_COST)" in message
    assert "a lower resolution" in message and "raise TOROID_MAX_JOB_COST" in message
    assert check_cost("torus", torus, 10**6, 1437, 360, max_cost=0) == cost  # 0: no limit


def preset_costs(name: str) -> dict[str, float]:
    """The largest estimate of each kind over every job of a preset's plan, as the API would estimate it."""
    spec = preset_spec(name)
    dataset, options, shape, classes = resolve_dataset(spec.dataset, spec.dataset_options)
    n_train, n_test = dataset_sizes(dataset, **options)
    minima: dict[str, dict] = {}
    worst: dict[str, float] = {}
    for step in plan(spec):
        template, _ = resolve_architecture(spec.architecture, step.variant_config, shape, classes)
        sizes = (parameter_count(template), n_train, n_test)
        found = minima.setdefault(step.variant, {})
        if step.kind == "train":
            params = train_request(spec, step)  # resolve_train: the cost check passed
            found[(step.args["label"], step.args["seed"])] = Minimum(id=f"{step.variant}-{step.id}")
            cost = estimate("train", params, *sizes)
        else:
            _, params, _ = analysis_request(spec, step, found)
            cost = estimate(params.job_kind, params, *sizes, assignment=assignment_work(template))
        worst[step.kind] = max(worst.get(step.kind, 0.0), cost)
    return worst


@pytest.mark.parametrize("name", CPU_PRESETS)
def test_every_job_of_the_cpu_presets_fits_the_default_limit(name):
    worst = preset_costs(name)
    assert set(worst) == {"train", "flatness", "distances", "path"}
    room = 2 if name == "fmnist-mlp-cpu" else 5  # the real-data preset: rsgd, 30 epochs x 5 replicas, 10k images
    assert max(worst.values()) <= DEFAULT_LIMIT / room, worst  # with room to spare
    if name == "digits-mlp":  # the largest: rsgd, 200 epochs x 5 replicas of the 64-512-512-10 MLP
        assert worst["train"] == pytest.approx(1.41e12, rel=0.01)


def test_the_paper_gpu_presets_need_a_raised_limit():
    """docs/operations.md quotes these: a GPU server running the paper's protocols raises TOROID_MAX_JOB_COST."""
    spec = preset_spec("mnist-mlp")
    template, _ = template_state("mlp", spec.config, (1, 28, 28), 10)
    rsgd = next(e for e in spec.samplers if e.sampler == "rsgd")
    params = {"sampler": "rsgd", "hyperparameters": resolve_hparams("rsgd", {}), "epochs": spec.epochs_of(rsgd)}
    assert estimate("train", params, parameter_count(template), 60_000, 10_000) == pytest.approx(1.95e14, rel=0.01)


def test_resolve_train_refuses_an_oversized_training_and_keeps_the_presets():
    huge = TrainRequest(architecture="mlp", config={"widths": [19000, 19000]}, epochs=10_000)
    expected = r"train job is estimated at 2\.21e\+16 .*10,000 epochs x 362,444,010 parameters.*TOROID_MAX_JOB_COST"
    with pytest.raises(TooCostly, match=expected):
        resolve_train(huge)
    with pytest.raises(TooCostly, match="10,000 epochs x 5 replicas"):
        resolve_train(TrainRequest(sampler="rsgd", epochs=10_000))
    job = resolve_train(TrainRequest(sampler="rsgd", epochs=200))  # the digits-mlp preset's largest job
    assert job.epochs == 200
