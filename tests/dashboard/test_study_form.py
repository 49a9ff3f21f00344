"""The study form: preset values shown in the fields, only changed fields sent, JSON extras merged last."""

from __future__ import annotations

from toroid.dashboard.views.study import fields_from_spec, form_overrides, merge
from toroid.store.study_spec import preset_spec, resolve_spec


def digits() -> dict:
    return preset_spec("digits-mlp").model_dump()


def test_fields_show_the_presets_values_and_unchanged_fields_send_nothing():
    spec = digits()
    values = fields_from_spec(spec)
    assert values["study-seeds"] == 2 and values["study-epochs"] == 200
    assert values["study-path-kinds"] == ["linear", "linear_aligned", "geodesic"]
    assert values["study-pairs"] == "all" and values["study-bend"] == ["on"]
    assert form_overrides(spec, values) == {}


def test_changed_fields_become_overrides_the_api_accepts():
    spec = digits()
    values = {**fields_from_spec(spec), "study-seeds": 1, "study-points": 5, "study-pairs": "1",
              "study-bend": [], "study-flat-mode": "fast", "study-path-kinds": ["geodesic", "linear"],
              "study-epochs": None}
    overrides = form_overrides(spec, values)
    assert overrides == {"seeds": 1, "paths": {"points": 5, "pairs": 1, "kinds": ["linear", "geodesic"]},
                         "one_bend": {"enabled": False}, "flatness": {"mode": "fast"}}
    body = merge(overrides, {"paths": {"points": 9}, "config": {"widths": [16]}})
    assert body["paths"] == {"points": 9, "pairs": 1, "kinds": ["linear", "geodesic"]}  # JSON wins, rest kept
    study = resolve_spec({"preset": "digits-mlp", **body})
    assert study.seeds == [0] and study.paths.points == 9 and study.paths.pairs == 1
    assert not study.one_bend.enabled and study.flatness.mode == "fast" and study.config == {"widths": [16]}
    assert study.epochs == 200  # the emptied number field kept the preset's budget


def test_a_preset_seed_list_survives_when_the_count_is_unchanged():
    spec = {**digits(), "seeds": [2, 3]}
    assert "seeds" not in form_overrides(spec, fields_from_spec(spec))


def record(state: str, **job_fields) -> dict:
    """A study's API record (``Study.to_record``) with its job in ``state``."""
    from toroid.store.models import Job, Study

    study = Study(id="s1", name="digits", key="k", spec={}, outputs={"train-0": {"minimum_id": "m1"}})
    job = Job(id="j1", kind="study", state=state, progress=job_fields.pop("progress", 0.0), **job_fields)
    return study.to_record(job, total_steps=4)


def text_of(component) -> str:
    from dash.development.base_component import Component

    if isinstance(component, str):
        return component
    if isinstance(component, Component):
        children = getattr(component, "children", None)
        items = children if isinstance(children, list | tuple) else [children]
        return "".join(text_of(c) for c in items if c is not None)
    return ""


def test_the_feedback_follows_the_study_to_its_report():
    from toroid.dashboard.views.study import feedback_view, report_view

    queued = feedback_view(record("queued"), "/api")
    assert "queued" in text_of(queued) and queued.className == "message ok"
    running = feedback_view(record("running", progress=0.5, message="training rsgd seed 1 (2/4)"), "/api")
    assert "running 50% · training rsgd seed 1 (2/4) · 1/4 steps done" in text_of(running)
    done = feedback_view(record("succeeded", progress=1.0, message="done"), "/api")
    assert getattr(done, "data-state") == "succeeded" and "study digits (s1) succeeded" in text_of(done)
    link = done.children[1]
    assert link.href == "/api/studies/s1/report.html" and link.children == "open the report"
    failed = feedback_view(record("failed", error="worker lost"), "/api")
    assert failed.className == "message error" and "failed: worker lost" in text_of(failed)
    assert report_view(record("succeeded"), "/api/")[1] == "/api/studies/s1/report.html"
    assert report_view(record("running"), "/api") == ([], None)
