"""Pure state helpers of the dashboard: pair selection, landscape families, tracked analyses."""

from __future__ import annotations

from toroid.dashboard.client import format_detail
from toroid.dashboard.state import (
    advance_entry,
    entry_from_answer,
    entry_from_error,
    families,
    is_active,
    next_selection,
)
from toroid.dashboard.views.upload import parse_json_field, split_files


def test_two_clicks_select_a_pair_and_a_third_starts_over():
    s = next_selection(None, "m1")
    assert (s["a"], s["b"]) == ("m1", None)
    assert next_selection(s, "m1") == s  # clicking A again does not make a pair with itself
    s = next_selection(s, "m2")
    assert (s["a"], s["b"]) == ("m1", "m2")
    s = next_selection(s, "m3")
    assert (s["a"], s["b"]) == ("m3", None)


def test_third_minimum_is_dropped_when_it_becomes_part_of_the_pair():
    s = next_selection({"a": "m1", "b": None, "c": "m2"}, "m2")
    assert s == {"a": "m1", "b": "m2", "c": None}


def test_families_group_comparable_minima_with_defaults_filled_in():
    defaults = {"mlp": {"widths": [512, 512]}}
    minima = [
        {"id": "1", "architecture": "mlp", "config": {}, "dataset": "digits", "dataset_options": {}},
        {"id": "2", "architecture": "mlp", "config": {"widths": [512, 512]}, "dataset": "digits"},
        {"id": "3", "architecture": "mlp", "config": {"widths": [32]}, "dataset": "digits"},
        {"id": "4", "architecture": "lenet", "config": {}, "dataset": "digits"},
    ]
    groups = families(minima, defaults)
    assert [g["ids"] for g in groups] == [["1", "2"], ["4"], ["3"]]
    assert groups[0]["label"].endswith("2 minima")
    assert groups[1]["label"].endswith("1 minimum")


def test_the_servers_family_key_joins_minima_of_one_structure_from_any_source():
    structure = "ab" * 32
    minima = [
        {"id": "1", "architecture": "mlp", "config": {"widths": [32]}, "dataset": "digits", "family": "f1"},
        {"id": "2", "architecture": "export", "config": {"structure": structure}, "dataset": "digits", "family": "f1"},
        {"id": "3", "architecture": "export", "config": {"structure": "cd" * 32}, "dataset": "digits", "family": "f2"},
    ]
    groups = families(minima, {"mlp": {"widths": [512, 512]}})
    assert [g["ids"] for g in groups] == [["1", "2"], ["3"]]
    assert groups[1]["label"] == "export (structure=cdcdcdcd) on digits · 1 minimum"  # the hash, shortened


def job(state, progress=0.0, **extra):
    return {"id": "j1", "state": state, "progress": progress, "partial": {}, "result_id": None, **extra}


def test_cached_answer_is_finished_at_once():
    entry = entry_from_answer("path", {"a": "x", "b": "y"},
                              {"cached": True, "job": job("succeeded", 1.0, result_id="r1"), "result": {"id": "r1"}})
    assert entry["state"] == "succeeded" and entry["result_id"] == "r1" and not is_active(entry)


def test_queued_answer_is_tracked_until_the_job_finishes():
    entry = entry_from_answer("path", {"a": "x", "b": "y"}, {"cached": False, "job": job("queued")})
    assert is_active(entry)
    running = advance_entry(entry, job("running", 0.5, partial={"x": [0.0], "train_error": [0.01]}))
    assert running["progress"] == 0.5 and running["partial"]["train_error"] == [0.01] and is_active(running)
    assert advance_entry(running, {**job("succeeded"), "id": "other"}) == running  # another job's record: ignored
    done = advance_entry(running, job("succeeded", 1.0, result_id="r2"))
    assert done["result_id"] == "r2" and not is_active(done)


def test_refused_request_keeps_the_backend_message():
    entry = entry_from_error("distances", {"minimum_ids": ["a"]}, "need at least 2 minima")
    assert entry["state"] == "failed" and entry["error"] == "need at least 2 minima" and not is_active(entry)


def test_validation_errors_are_readable():
    detail = [{"loc": ["body", "points"], "msg": "Input should be greater than 1", "type": "greater_than"}]
    assert format_detail(detail) == "points: Input should be greater than 1"
    assert format_detail("plain message") == "plain message"


def test_form_json_fields_and_dropped_files():
    assert parse_json_field(' {"widths": [32]} ', "config") == {"widths": [32]}
    assert parse_json_field("", "config") == {}
    for bad in ("{widths: 1}", "[1, 2]"):
        try:
            parse_json_field(bad, "config")
        except ValueError as exc:
            assert "config" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")
    assert split_files(["m.safetensors", "m.json"]) == (0, 1, [])
    assert split_files(["m.json"])[2]  # a sidecar without its checkpoint is reported
    assert split_files(["a.pt", "b.pt"])[2]


def test_binary_pairs_compare_flip_paths_instead_of_geodesics():
    from toroid.dashboard.views.paths import path_kinds, path_request

    # the catalog as GET /api/architectures serves it: the core's kinds per architecture
    catalog = {"architectures": [
        {"name": "mlp", "binary": False, "path_kinds": ["linear", "linear_aligned", "geodesic", "one_bend"],
         "bend_kinds": ["geodesic", "linear_aligned", "linear"]},
        {"name": "binary_mlp", "binary": True, "path_kinds": ["linear", "linear_aligned", "flip", "one_bend"],
         "bend_kinds": ["flip"]},
    ]}
    assert path_kinds({"architecture": "mlp"}, catalog) == ("linear", "linear_aligned", "geodesic")
    assert path_kinds({"architecture": "binary_mlp"}, catalog) == ("linear", "linear_aligned", "flip")
    assert path_request("a", "b", "one_bend", {"architecture": "mlp"}, catalog) == {
        "a": "a", "b": "b", "kind": "one_bend", "points": 33, "bend_kind": "geodesic"}
    assert path_request("a", "b", "one_bend", {"architecture": "binary_mlp"}, catalog)["bend_kind"] == "flip"


def test_training_curves_follow_the_chosen_else_the_running_job():
    from toroid.dashboard.views.upload import watched_train_job

    jobs = [{"id": "q", "kind": "train", "state": "queued", "partial": {}},
            {"id": "r", "kind": "train", "state": "running", "partial": {"epoch": [1]}},
            {"id": "p", "kind": "path", "state": "running", "partial": {}},
            {"id": "d", "kind": "train", "state": "succeeded", "partial": {"epoch": [1, 2]}}]
    assert watched_train_job(jobs, None)["id"] == "r"
    assert watched_train_job(jobs, "d")["id"] == "d"
    assert watched_train_job(jobs[2:], None)["id"] == "d"
    assert watched_train_job([], None) is None
