"""The jobs view (dashboard/views/jobs.py): queue, time waited, run time, place in the queue and ETA of each job
from its record (every field optional: "—" when absent), cancel buttons on active rows, the training curves of the
running training job."""

from __future__ import annotations

from dash.development.base_component import Component

from toroid.dashboard.views.jobs import CANCEL, HEADERS, humanize, jobs_table, timing, training_figure


def texts(component) -> list[str]:
    """Every string in a component tree, in order."""
    out: list[str] = []
    stack = [component]
    while stack:
        node = stack.pop(0)
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, Component):
            children = getattr(node, "children", None)
            stack[:0] = children if isinstance(children, list | tuple) else [children]
        elif isinstance(node, list | tuple):
            stack[:0] = list(node)
    return out


def rows(table) -> dict[str, list]:
    """Row id -> its cells."""
    body = table.children[1]
    return {row.id: row.children for row in body.children}


def cell(row: list, header: str):
    return row[HEADERS.index(header)]


QUEUED = {"id": "q1", "kind": "flatness", "state": "queued", "progress": 0.0, "params": {"minimum_id": "m1"},
          "queue": "cpu", "queue_position": 2, "eta_s": 190.4, "estimated_s": 65.0, "duration_s": None,
          "wait_s": 42.2, "created_at": "2024-05-01T10:00:00+00:00"}
RUNNING = {"id": "r1", "kind": "train", "state": "running", "progress": 0.5, "message": "epoch 2/4",
           "params": {"sampler": "sgd", "seed": 0, "architecture": "mlp", "dataset": "digits", "epochs": 4},
           "partial": {"epoch": [1, 2], "train_loss": [1.0, 0.5], "train_error": [0.3, 0.1],
                       "test_error": [0.3, 0.2]},
           "queue": "gpu", "queue_position": None, "eta_s": 3900, "estimated_s": 7800, "duration_s": 3899.0,
           "wait_s": 0.4}
BARE = {"id": "b1", "kind": "distances", "state": "succeeded", "progress": 1.0, "params": {}, "result_id": "res1"}


def test_durations_read_as_people_say_them():
    assert humanize(42) == "42 s" and humanize(190) == "3 min 10 s" and humanize(3900) == "1 h 5 min"
    assert humanize(180) == "3 min" and humanize(7200) == "2 h" and humanize(90000) == "1 d 1 h"
    assert humanize(0.3) == "<1 s"
    assert humanize(None) == humanize(float("nan")) == humanize(-1) == humanize("soon") == "—"


def test_the_table_shows_queue_place_waits_run_times_and_etas():
    table = jobs_table([QUEUED, RUNNING, BARE], "all", [{"id": "m1", "name": "sgd-0"}], "/api")
    assert [h.children for h in table.children[0].children.children] == list(HEADERS)
    found = rows(table)
    queued, running, bare = found["job-q1"], found["job-r1"], found["job-b1"]

    assert cell(queued, "queue").children == "#2 in cpu"
    assert cell(queued, "waited").children == "42 s"
    assert cell(queued, "run time").children == "est. 1 min 5 s"  # its own estimate while it waits
    assert cell(queued, "ETA").children == "in 3 min 10 s"
    assert cell(queued, "what").children == "local energy of sgd-0 (sequential)"

    assert cell(running, "queue").children == "gpu"
    assert cell(running, "run time").children == "1 h 5 min" and cell(running, "run time").title == (
        "estimated run time 2 h 10 min")
    assert cell(running, "waited").children == "<1 s" and cell(running, "ETA").children == "in 1 h 5 min"

    for header in ("queue", "waited", "run time", "ETA"):  # a record without the fields
        assert cell(bare, header).children == "—"

    # cancel on the active rows, downloads on the finished one
    assert cell(queued, "").children.id == {"type": CANCEL, "job": "q1"}
    assert cell(running, "").children.id == {"type": CANCEL, "job": "r1"}
    assert "CSV" in texts(cell(bare, ""))


def test_finished_jobs_have_no_eta_and_keep_their_run_time():
    done = {**RUNNING, "id": "d1", "state": "succeeded", "eta_s": 0.0, "duration_s": 125.0}
    assert timing(done) == {"job-queue": "gpu", "job-waited": "<1 s", "job-duration": "2 min 5 s", "job-eta": "—"}


def test_the_filter_keeps_active_or_finished_jobs():
    active = rows(jobs_table([QUEUED, RUNNING, BARE], "active", [], "/api"))
    assert set(active) == {"job-q1", "job-r1"}
    assert texts(jobs_table([BARE], "active", [], "/api")) == ["No active jobs."]


def test_the_running_training_job_shows_its_curves_and_eta():
    fig = training_figure([BARE, RUNNING], None)
    assert fig.layout.title.text == "sgd-0 (mlp on digits) · running 50% · done in 1 h 5 min"
    assert fig.layout.xaxis.title.text == "epoch" and list(fig.data[0].x) == [1, 2]
    assert training_figure([BARE], None).layout.annotations[0].text.startswith("No training job yet")
