"""The Dash app wires up: every callback refers to components of the layout, no output is claimed twice by accident."""

from __future__ import annotations

from collections import Counter

from dash.development.base_component import Component

from toroid.dashboard.app import VIEWS, create_dash, poll_stores, slim_job
from toroid.dashboard.views.common import ANALYSES, JOBS, TRAINING


def layout_ids(component) -> set[str]:
    found = set()
    stack = [component]
    while stack:
        node = stack.pop()
        if isinstance(node, Component):
            if isinstance(getattr(node, "id", None), str):
                found.add(node.id)
            children = getattr(node, "children", None)
            stack.extend(children if isinstance(children, list | tuple) else [children])
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return found


def test_every_callback_id_is_in_the_layout():
    app = create_dash("http://127.0.0.1:9/api")
    ids = layout_ids(app.layout())
    assert {f"view-{value}" for value, _ in VIEWS} <= ids
    missing = set()
    outputs = Counter()
    for callback in app._callback_list:
        for dep in [*callback["inputs"], *callback["state"]]:
            if not dep["id"].startswith("{") and dep["id"] not in ids:
                missing.add(dep["id"])
        spec = callback["output"]
        keys = spec.strip(".").split("...") if spec.startswith("..") else [spec]
        for key in keys:
            component = key.rsplit(".", 1)[0]
            if not component.startswith("{") and component not in ids:
                missing.add(component)
            if "@" not in key:  # allow_duplicate outputs carry a hash suffix
                outputs[key] += 1
    assert not missing, f"callbacks refer to ids missing from the layout: {sorted(missing)}"
    assert [key for key, n in outputs.items() if n > 1] == []


def test_download_links_default_to_the_pages_own_api_path():
    app = create_dash("http://10.0.0.5:8000/api", public_api_url=None)
    header = app.layout().children[0]
    docs = [c for c in header.children[1].children if getattr(c, "href", None)]
    assert docs[0].href == "/docs"
    app = create_dash("http://api:8000/api", public_api_url="https://toroid.example.org/api")
    assert app.layout().children[0].children[1].children[2].href == "https://toroid.example.org/docs"


def test_finished_analysis_jobs_drop_their_streamed_points():
    running = {"id": "1", "kind": "path", "state": "running", "partial": {"x": [0.0]}}
    done = {"id": "2", "kind": "path", "state": "succeeded", "partial": {"x": [0.0]}}
    trained = {"id": "3", "kind": "train", "state": "succeeded", "partial": {"epoch": [1]}}
    assert slim_job(running) == running and slim_job(trained) == trained
    assert slim_job(done)["partial"] == {} and done["partial"] == {"x": [0.0]}


def test_a_trainings_progress_wakes_only_the_views_that_show_it():
    """A poll during a training: the analyses store is the same whatever the training's progress, so the views
    tracking a clicked pair's paths are not woken every second; the training and the full list go to the views that
    show them (and to the empty map)."""
    path = {"id": "p", "kind": "path", "state": "running", "progress": 0.5, "partial": {"x": [0.0]}}
    before = [{"id": "t", "kind": "train", "state": "running", "progress": 0.1, "partial": {"epoch": [1]}}, path]
    after = [{**before[0], "progress": 0.2, "partial": {"epoch": [1, 2]}}, path]
    minima = [{"id": "m"}]
    assert poll_stores(before, minima, "map")[ANALYSES] == poll_stores(after, minima, "map")[ANALYSES] == [path]
    assert poll_stores(after, minima, "map")[TRAINING] is None and poll_stores(after, minima, "map")[JOBS] is None
    assert poll_stores(after, [], "map")[TRAINING] == [after[0]]  # the empty map says what is training
    assert poll_stores(after, minima, "add")[TRAINING] == [after[0]]
    assert poll_stores(after, minima, "jobs")[JOBS] == after


def test_the_chunks_of_a_split_analysis_stay_out_of_the_analysis_views():
    """A chunk of a long torus (docs/operations.md, "Chunks") has its parent's parameters: the views would take its
    few points for the pair's torus. Only the Jobs view lists it."""
    parent = {"id": "p", "kind": "torus", "state": "running", "params": {"minimum_ids": ["a", "b"]}, "partial": {}}
    chunk = {"id": "c", "kind": "torus", "state": "running", "partial": {"i": [0]},
             "params": {"minimum_ids": ["a", "b"], "chunk": {"parent": "p", "index": 0, "count": 2}}}
    stores = poll_stores([parent, chunk], [{"id": "a"}], "jobs")
    assert stores[ANALYSES] == [parent] and stores[JOBS] == [parent, chunk]


def test_the_jobs_view_says_which_chunk_of_what_a_chunk_is():
    from toroid.dashboard.views.jobs import describe

    names = {"a": {"name": "sgd-0"}, "b": {"name": "sgd-1"}}
    chunk = {"kind": "torus", "params": {"minimum_ids": ["a", "b"], "resolution": 49,
                                         "chunk": {"parent": "0123456789abcdef", "index": 2, "count": 64,
                                                   "start": 76, "stop": 113}}}
    assert describe(chunk, names) == ("torus of sgd-0, sgd-1 · chunk 3/64 (cells 76–112) of job 0123456789abcdef")
    path = {"kind": "path", "params": {"a": "a", "b": "b", "kind": "geodesic",
                                       "chunk": {"parent": "p", "index": 0, "count": 2, "start": 0, "stop": 17}}}
    assert describe(path, names).endswith("· chunk 1/2 (points 0–16) of job p")
