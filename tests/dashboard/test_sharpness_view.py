"""The Hessian sharpness panel of the Flatness view and its figure (plain dicts and a fake API client, no browser)."""

from __future__ import annotations

import pytest
from dash.exceptions import PreventUpdate

import toroid.plots as plots
from toroid.dashboard.views import sharpness

MINIMA = [
    {"id": "a", "name": "sgd-0", "sampler": "sgd", "architecture": "mlp", "test_error": 0.03},
    {"id": "b", "name": "rsgd-0", "sampler": "rsgd", "architecture": "mlp", "test_error": 0.02},
    {"id": "c", "name": "bin-0", "sampler": "binary", "architecture": "binary_mlp", "test_error": 0.1},
]
CATALOG = {"architectures": [{"name": "mlp", "binary": False}, {"name": "binary_mlp", "binary": True}]}


class FakeApp:
    """Records the callbacks a view registers, undecorated."""

    def __init__(self):
        self.functions = []

    def callback(self, *args, **kwargs):
        def record(function):
            self.functions.append(function)
            return function

        return record


class FakeClient:
    def __init__(self, known: dict[str, str] | None = None):
        self.asked: list[dict] = []
        self.jobs: dict[str, dict] = {}
        self.known = known or {}

    def analyze(self, kind, body):
        assert kind == "sharpness"
        self.asked.append(body)
        job = {"id": f"job-{body['minimum_id']}", "state": "queued", "progress": 0.0}
        self.jobs[job["id"]] = job
        return {"cached": False, "job": job}

    def lookup(self, kind, params):
        """GET /api/analyses/sharpness: what exists (``self.known``: minimum id -> result id), else 404."""
        from toroid.dashboard.client import ApiError

        assert kind == "sharpness"
        result_id = self.known.get(params["minimum_id"])
        if result_id is None:
            raise ApiError(404, "this minimum's sharpness were neither computed nor asked for")
        return {"cached": True, "job": {"id": f"old-{params['minimum_id']}", "state": "succeeded", "progress": 1.0,
                                        "result_id": result_id}}

    def job(self, job_id):
        return self.jobs[job_id]

    def result(self, result_id):
        mid = result_id.removeprefix("result-")
        return {"data": {"top_eigenvalue": {"a": 5.0, "b": 2.0}[mid], "trace": 40.0}}


def test_picked_continuous_minima_are_requested_tracked_and_drawn():
    app, client = FakeApp(), FakeClient()
    sharpness.register(app, client, "http://api")
    _intent, analyses, draw = app.functions
    store, done = analyses("flatness", ["a", "c"], None, [], MINIMA, CATALOG, {}, None)
    assert client.asked == [{"minimum_id": "a"}]  # the binary minimum is never asked
    assert store["a"]["state"] == "queued"
    with pytest.raises(PreventUpdate):  # nothing new: no request, no change
        analyses("flatness", ["a", "c"], None, [], MINIMA, CATALOG, store, None)
    with pytest.raises(PreventUpdate):  # another view open: nothing asked
        analyses("map", ["b"], None, [], MINIMA, CATALOG, store, None)
    finished = {"id": "job-a", "state": "succeeded", "progress": 1.0, "result_id": "result-a"}
    store, _ = analyses("flatness", ["a", "c"], None, [finished], MINIMA, CATALOG, store, None)
    assert store["a"]["state"] == "succeeded"
    # "Compute for all minima": every continuous minimum without an answer
    store, handled = analyses("flatness", ["a"], {"n": 1}, [], MINIMA, CATALOG, store, None)
    assert handled == 1 and client.asked[-1] == {"minimum_id": "b"} and len(client.asked) == 2
    store["b"] = {**store["b"], "state": "succeeded", "result_id": "result-b"}
    figure, status, links = draw(store, ["a", "c"], MINIMA, CATALOG)
    xs = sorted(x for trace in figure.data for x in trace.x)
    assert xs == [2.0, 5.0] and "Kendall tau needs 3 or more" in figure.layout.title.text
    assert "binary network has no Hessian" in str(status) and len(links) == 1


def test_results_computed_before_show_when_the_view_opens_without_asking_for_more():
    app, client = FakeApp(), FakeClient(known={"b": "result-b"})
    sharpness.register(app, client, "http://api")
    _intent, analyses, draw = app.functions
    store, _ = analyses("flatness", [], None, [], MINIMA, CATALOG, {}, None)
    assert client.asked == []  # looked up, never queued
    assert store["b"]["state"] == "succeeded" and store["a"]["state"] == "missing" and "c" not in store
    with pytest.raises(PreventUpdate):  # each minimum is looked up once
        analyses("flatness", [], None, [], MINIMA, CATALOG, store, None)
    figure, _, _ = draw(store, [], MINIMA, CATALOG)
    assert [x for trace in figure.data for x in trace.x] == [2.0]
    store, _ = analyses("flatness", ["a"], None, [], MINIMA, CATALOG, store, None)  # picking it asks for it
    assert client.asked == [{"minimum_id": "a"}] and store["a"]["state"] == "queued"


def test_sharpness_scatter_uses_the_top_eigenvalue_and_kendall_tau():
    minima = [{"id": str(i), "name": f"m{i}", "sampler": s, "test_error": e, "top_eigenvalue": v,
               "hessian_trace": v and 10.0 * v} for i, (s, e, v) in enumerate([("sgd", 0.03, 4.0), ("rsgd", 0.02, 2.0),
                                                                         ("adv", 0.05, 9.0), ("sgd", 0.04, None)])]
    figure, tau = plots.sharpness_scatter(minima)
    assert tau is not None and tau[0] == pytest.approx(1.0)
    assert sum(len(t.x) for t in figure.data) == 3  # the one without a result is left out
    assert "Kendall tau = 1.00" in figure.layout.title.text
    empty, none = plots.sharpness_scatter([])
    assert none is None and empty.layout.annotations[0].text.startswith("No minimum has a sharpness result")
    static, _ = plots.sharpness_scatter(minima, key="sampler", text="name", static=True)
    assert static.data[0].mode == "markers+text"
