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
