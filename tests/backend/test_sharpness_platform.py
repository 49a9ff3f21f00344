"""The ``sharpness`` analysis kind without a stack (docs/method.md §6, "Hessian sharpness on the normalized network"):
its request and job parameters, its cost, its CSV, its place in studies (off by default: presets keep their steps
and their keys) and in the study report."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from toroid.backend.services.jobs import SHARPNESS_COLUMNS, result_table
from toroid.backend.services.report import ReportData, VariantData, build_figures, csv_tables
from toroid.cli_client import summary
from toroid.store.celery_app import TIME_LIMIT_SETTINGS
from toroid.store.cost import HVP_PASSES, check_cost, estimate
from toroid.store.errors import Invalid
from toroid.store.ledger import TASK_NAMES
from toroid.store.models import Minimum, Result
from toroid.store.params import JOB_PARAMS, SharpnessJob, SharpnessRequest, analysis_job, key_params
from toroid.store.study_spec import PRESETS, StudyError, analysis_request, plan, resolve_spec, spec_key


def test_request_defaults_bounds_and_job_parameters():
    request = SharpnessRequest(minimum_id="m1")
    assert (request.iterations, request.probes, request.samples, request.seed) == (30, 20, 2048, 0)
    assert key_params(request) == {"iterations": 30, "probes": 20, "samples": 2048, "seed": 0}
    assert SharpnessRequest(minimum_id="m1", samples=None).samples is None  # the whole training set
    for bad in ({"iterations": 0}, {"iterations": 1001}, {"probes": -1}, {"samples": 0}, {"seed": -1},
                {"iterations": "3"}, {"tolerance": 1e-3}):
        with pytest.raises(ValidationError):
            SharpnessRequest(minimum_id="m1", **bad)
    job = analysis_job("sharpness", request, ["m1"])
    assert isinstance(job, SharpnessJob) and job.minimum_ids == ["m1"] and JOB_PARAMS["sharpness"] is SharpnessJob
    assert TASK_NAMES["sharpness"] == "toroid.sharpness"
    assert TIME_LIMIT_SETTINGS["toroid.sharpness"] == TIME_LIMIT_SETTINGS["toroid.flatness"]


def test_cost_is_products_x_passes_x_samples_x_parameters():
    P, n, m = 300_000, 1437, 360
    body = {"iterations": 30, "probes": 20, "samples": 2048}
    assert estimate("sharpness", body, P, n, m) == HVP_PASSES * 50 * n * P + (n + m) * P  # at most n samples
    assert estimate("sharpness", {**body, "samples": 500}, P, n, m) == HVP_PASSES * 50 * 500 * P + (n + m) * P
    assert estimate("sharpness", {**body, "samples": None}, P, 60_000, m) == HVP_PASSES * 50 * 60_000 * P + (
        60_000 + m) * P
    with pytest.raises(Invalid, match="fewer iterations, probes or samples"):
        check_cost("sharpness", {**body, "iterations": 1000, "probes": 1000}, 10**7, 60_000, 10_000)


def result(data: dict) -> Result:
    return Result(id="r1", key="k" * 64, kind="sharpness", params={}, minimum_ids=["m1"], data=data, code_version="x")


DATA = {"top_eigenvalue": 3.29, "residual": 1e-5, "iterations": 12, "ritz_values": [3.29, 1.0], "trace": 40.5,
        "trace_stderr": 2.1, "trace_samples": [38.4, 42.6], "probes": 2, "samples": 1437, "parameters": 1234,
        "train_loss": 0.01, "base_train_error": 0.0, "base_test_error": 0.03, "normalized": True, "extra": {}}


def test_the_csv_has_one_row_of_the_headline_numbers():
    header, rows = result_table(result(DATA))
    assert header == SHARPNESS_COLUMNS
    assert list(rows) == [tuple(DATA[c] for c in SHARPNESS_COLUMNS)]
    (line,) = summary({"kind": "sharpness", "data": DATA})  # `toroid analyze sharpness A`
    assert "top Hessian eigenvalue 3.29" in line and "trace 40.5 +- 2.1 (2 probes)" in line


# --------------------------------------------------------------------------------------------- studies
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_keep_their_steps_and_keys(name):
    spec = resolve_spec(name)
    assert spec.sharpness.enabled is False
    assert not [s for s in plan(spec) if s.kind == "sharpness"]
    body = spec.model_dump()
    assert body["sharpness"] == {"enabled": False, "iterations": 30, "probes": 20, "samples": 2048}
    # settings of a disabled section do not split a study's key: it is the key the spec had before the section
    assert spec_key(resolve_spec(name, {"sharpness": {"iterations": 5}})) == spec_key(spec)


def test_an_enabled_section_adds_one_step_per_minimum_after_the_local_energies():
    off = resolve_spec("digits-mlp")
    on = resolve_spec("digits-mlp", {"sharpness": {"enabled": True, "iterations": 20, "probes": 10, "samples": None}})
    assert spec_key(on) != spec_key(off)
    steps = plan(on)
    kinds = [s.kind for s in steps]
    assert kinds.count("sharpness") == 6 and len(steps) == len(plan(off)) + 6
    assert kinds.index("sharpness") > max(i for i, k in enumerate(kinds) if k == "flatness")
    assert kinds.index("sharpness") < kinds.index("distances")
    step = next(s for s in steps if s.kind == "sharpness")
    assert step.id == "sharpness/sgd/0" and step.phase == "sharpness"
    minima = {(s.args["label"], s.args["seed"]): Minimum(id=f"id-{s.id}") for s in steps if s.kind == "train"}
    inputs, params, key = analysis_request(on, step, minima)
    assert isinstance(params, SharpnessJob) and params.minimum_ids == [inputs[0].id] == ["id-train/sgd/0"]
    assert key == {"iterations": 20, "probes": 10, "samples": None, "seed": 0}


def test_binary_studies_refuse_an_enabled_section():
    with pytest.raises(StudyError, match="binary networks have no Hessian"):
        plan(resolve_spec("hmm-committee", {"sharpness": {"enabled": True}}))


def test_the_report_draws_and_tabulates_sharpness_only_when_measured():
    minima = [{"tag": f"{label}{seed}", "label": label, "seed": seed, "id": f"{label}{seed}", "train_error": 0.0,
               "test_error": 0.02 + 0.01 * i, "local_energy": None, "top_eigenvalue": 2.0 + i, "hessian_trace": 30.0,
               "epochs_run": 3} for i, (label, seed) in enumerate([("sgd", 0), ("rsgd", 1), ("adv", 2)])]
    variant = VariantData(name="", labels=["sgd", "rsgd", "adv"], minima=minima,
                          sharpness={m["tag"]: {**DATA, "top_eigenvalue": m["top_eigenvalue"]} for m in minima})
    data = ReportData(study={"name": "s"}, variants=[variant])
    tables = csv_tables(data)
    assert tables["sharpness.csv"][0][:3] == ["variant", "minimum", "top_eigenvalue"]
    assert [row[1:3] for row in tables["sharpness.csv"][1:]] == [["sgd0", 2.0], ["rsgd1", 3.0], ["adv2", 4.0]]
    (_, figures, _, _), = build_figures(data)
    assert [f.title for f in figures if f.section == "Sharpness"] == ["Top Hessian eigenvalue vs test error"]
    plain = ReportData(study={"name": "s"}, variants=[VariantData(name="", labels=["sgd"])])
    assert "sharpness.csv" not in csv_tables(plain)
