"""The minima map as a figure in a paper (dashboard/figures/map.py, dashboard/views/map.py): it states its stress-1
and share of variance, the unit of its distance, the true distance to A beside the planar one, never draws two
minima on one spot, places minima from a running distances job's streamed pairs, and says what is training while it
is empty."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toroid.dashboard.figures.map import known_pairs, map_caption, map_layout, minima_map
from toroid.dashboard.views.map import training_line, training_text


def minimum(mid: str, sampler: str | None = "sgd", train: float | None = 0.0, test: float | None = 0.025) -> dict:
    return {"id": mid, "name": f"{sampler or 'up'}-{mid}", "architecture": "mlp", "config": {}, "dataset": "digits",
            "sampler": sampler, "train_error": train, "test_error": test, "local_energy": None}


def result_of(points: dict[str, list[float]]) -> dict:
    ids = list(points)
    xy = np.asarray([points[k] for k in ids], dtype=float)
    d = np.linalg.norm(xy[:, None] - xy[None, :], axis=-1)
    return {"ids": ids, "names": ids, "matrices": {"geodesic": d.tolist(), "raw": (2 * d).tolist()}}


def streamed(points: dict[str, list[float]], upto: int) -> dict:
    """A running distances job over ``points`` (in that order) that has reported its first ``upto`` pairs, as the
    worker does: row by row, one progress report per pair with i, j and every metric (worker/tasks.py)."""
    ids = list(points)
    partial: dict[str, list] = {"i": [], "j": [], "geodesic": [], "raw": []}
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            d = math.dist(points[ids[i]], points[ids[j]])
            for key, value in (("i", i), ("j", j), ("geodesic", d), ("raw", 2 * d)):
                partial[key].append(value)
    return {"ids": ids, "partial": {k: v[:upto] for k, v in partial.items()}}


PLANE = {"a": [0.0, 0.0], "b": [3.0, 0.0], "c": [0.0, 4.0], "d": [3.0, 4.0]}
TETRA = {"ids": ["a", "b", "c", "d"], "matrices": {"geodesic": (1.0 - np.eye(4)).tolist()}}


def test_the_caption_states_distance_method_stress_variance_and_unit():
    minima = [minimum(k) for k in "abcd"]
    layout = map_layout(minima, TETRA)
    assert layout.method == "mds" and layout.embedding == "smacof"
    assert layout.stress < layout.classical_stress and layout.variance_2d == pytest.approx(2 / 3)
    caption = map_caption(layout, 4)
    assert "geodesic distance · metric MDS (SMACOF" in caption
    assert f"stress-1 {layout.stress:.2f}" in caption and "top-2 variance 67%" in caption
    assert "Axes have no meaning of their own" in caption and "1 rad of geodesic distance" in caption
    fig = minima_map(minima, layout.positions, layout.method, layout=layout)
    assert any(a.text == caption for a in fig.layout.annotations)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio == 1  # equal scales
    assert fig.layout.xaxis.title.text == "MDS 1 (rad)"
    exact = map_layout(minima, result_of(PLANE))
    assert exact.embedding == "classical" and exact.stress < 1e-9 and "classical MDS · stress-1 0.00" in map_caption(
        exact, 4) and "top-2 variance 100%" in map_caption(exact, 4)
    raw = map_layout(minima, result_of(PLANE), "raw")
    assert "raw Euclidean distance" in map_caption(raw, 4) and "RMS difference per parameter" in map_caption(raw, 4)


def test_hover_gives_the_true_and_the_planar_distance_to_a():
    minima = [minimum(k) for k in "abcd"]
    layout = map_layout(minima, TETRA)
    fig = minima_map(minima, layout.positions, layout.method, {"a": "a", "b": None}, layout=layout)
    rows = {row[0]: row for t in fig.data if t.customdata is not None for row in t.customdata}
    assert "%{customdata[8]}" in fig.data[0].hovertemplate
    assert rows["a"][8] == "<br><b>A</b> (selected)"
    planar = math.dist(layout.coords["a"], layout.coords["c"])
    assert rows["c"][8] == f"<br>geodesic distance to A (sgd-a): 1 rad (in the plane: {planar:.3g})"
    assert abs(planar - 1.0) > 0.01  # the tetrahedron cannot be flat: the two differ, and the reader sees it
    none = minima_map(minima, layout.positions, layout.method, layout=layout)
    assert all(row[8] == "" for t in none.data if t.customdata is not None for row in t.customdata)


def test_six_minima_with_equal_errors_are_drawn_apart_and_labelled_outward():
    minima = [minimum(f"m{i}") for i in range(6)] + [minimum("x", "adv", 0.01, 0.04)]
    layout = map_layout(minima, None)
    assert layout.method == "error" and layout.groups == [[f"m{i}" for i in range(6)]]
    xy = np.array([layout.positions[f"m{i}"] for i in range(6)])
    gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1)[~np.eye(6, dtype=bool)]
    assert gaps.min() > 0.02  # percentage points: distinct, separately clickable
    np.testing.assert_allclose(xy.mean(axis=0), [0.0, 2.5], atol=1e-12)
    assert layout.coords["m0"] == [0.0, 2.5]  # the data themselves are unchanged
    assert "6 minima with equal errors are drawn on a small ring" in map_caption(layout, 7)
    fig = minima_map(minima, layout.positions, layout.method, layout=layout)
    sides = {t.customdata[i][0]: t.textposition[i] for t in fig.data if t.customdata is not None
             for i in range(len(t.customdata))}
    assert sides["m0"] == "top center" and sides["m3"] == "bottom center"  # the top and the bottom of the ring
    assert len({sides[f"m{i}"] for i in range(6)}) == 6
    # all six alone (the demo before any distance): still apart, inside the axes
    alone = map_layout(minima[:6], None)
    fig = minima_map(minima[:6], alone.positions, alone.method, layout=alone)
    (x0, x1), (y0, y1) = fig.layout.xaxis.range, fig.layout.yaxis.range
    for x, y in alone.positions.values():
        assert x0 < x < x1 and y0 < y < y1
    assert len({tuple(p) for p in alone.positions.values()}) == 6


def test_copies_at_distance_zero_are_spread_on_the_mds_map():
    points = {"a": [0.0, 0.0], "copy": [0.0, 0.0], "b": [4.0, 0.0], "c": [0.0, 3.0]}
    minima = [minimum(k) for k in points]
    layout = map_layout(minima, result_of(points))
    assert layout.method == "mds" and layout.groups == [["a", "copy"]]
    assert math.dist(layout.positions["a"], layout.positions["copy"]) > 0.05 * 5
    assert layout.planar("a", "copy") == pytest.approx(0.0, abs=1e-9)  # the hover still tells the truth
    assert "2 minima with distance ~0" in map_caption(layout, 4)


def test_streamed_pairs_place_minima_before_the_job_finishes():
    minima = [minimum(k) for k in "abcd"]
    # nothing streamed yet: the fallback
    assert map_layout(minima, None, job=streamed(PLANE, 0)).method == "error"
    # pairs (a,b), (a,c), (a,d), (b,c): a, b, c have all their pairs, d waits for (b,d) and (c,d)
    layout = map_layout(minima, None, job=streamed(PLANE, 4))
    assert layout.method == "mds" and layout.pending == ["d"] and layout.streamed
    for p in "abc":
        for q in "abc":
            assert math.dist(layout.positions[p], layout.positions[q]) == pytest.approx(math.dist(PLANE[p], PLANE[q]))
    assert layout.positions["d"][1] < min(layout.positions[k][1] for k in "abc")  # lined up underneath
    assert "3 of 4 placed" in map_caption(layout, 4) and "still running" in map_caption(layout, 4)
    # every pair in: all placed, and the old ones stay put (Procrustes onto the previous layout)
    done = map_layout(minima, None, previous=layout.coords, job=streamed(PLANE, 6))
    assert done.pending == []
    for k in "abc":
        assert done.positions[k] == pytest.approx(layout.positions[k], abs=1e-9)


def test_a_result_covering_some_minima_and_a_job_streaming_the_new_one_combine():
    old = {k: PLANE[k] for k in "abc"}
    minima = [minimum(k) for k in "abcd"]
    job = streamed({"d": PLANE["d"], **old}, 3)  # the new job's first row: d against a, b, c
    pairs, fresh = known_pairs(result_of(old), "geodesic", job)
    assert len(pairs) == 6 and fresh == {("a", "d"), ("b", "d"), ("c", "d")}
    layout = map_layout(minima, result_of(old), job=job)
    assert layout.pending == [] and layout.stress < 1e-9
    only_old = map_layout(minima, result_of(old), job=streamed({"d": PLANE["d"], **old}, 2))
    assert only_old.pending == ["d"] and not only_old.streamed  # placed from the result alone


def test_the_empty_map_says_what_is_training_and_when_it_is_ready():
    jobs = [
        {"id": "1", "kind": "train", "state": "running", "progress": 0.42, "params": {"name": "sgd-0"}, "eta_s": 30},
        {"id": "2", "kind": "train", "state": "queued", "progress": 0, "params": {"name": "sgd-1"},
         "queue_position": 2, "eta_s": 150},
        {"id": "3", "kind": "train", "state": "queued", "progress": 0, "params": {"sampler": "adv", "seed": 1}},
        {"id": "4", "kind": "distances", "state": "running", "progress": 0.5, "params": {}},
        {"id": "5", "kind": "train", "state": "succeeded", "progress": 1, "params": {"name": "old"}},
    ]
    text = training_text(jobs)
    assert text.startswith("No minima yet: 3 training jobs will add them")
    assert "sgd-0: running 42%, ready in ~30 s" in text
    assert "sgd-1: queued (2nd in line), ready in ~2 min" in text
    assert "adv seed 1: queued" in text and "old" not in text  # no ETA field: no time promised
    assert text.endswith("The map fills in as each finishes.")
    eleventh = {"state": "queued", "params": {"name": "x"}, "queue_position": 11}
    assert training_line(eleventh) == "x: queued (11th in line)"
    assert training_text([]) == "No minima yet: train some or upload a checkpoint (Add minima)."


def test_the_views_polling_hands_a_running_jobs_pairs_to_the_map():
    """The glue of dashboard/views/map.py: the tracked entry, moved forward with the polled job record (its
    ``partial`` grows pair by pair), gives the map what the job has streamed; a finished entry gives nothing more."""
    from toroid.dashboard.state import advance_entry, entry_from_answer
    from toroid.dashboard.views.map import _streamed

    ids = sorted(PLANE)
    job = {"id": "j1", "kind": "distances", "state": "queued", "progress": 0.0, "partial": {}, "params": {}}
    entry = entry_from_answer("distances", {"minimum_ids": ids}, {"cached": False, "job": job})
    assert _streamed(entry) is None  # queued: nothing streamed yet
    minima = [minimum(k) for k in ids]
    for upto, placed in ((1, 2), (4, 3), (6, 4)):
        record = {**job, "state": "running", "progress": upto / 6,
                  "partial": streamed({k: PLANE[k] for k in ids}, upto)["partial"]}
        entry = advance_entry(entry, record)
        layout = map_layout(minima, None, job=_streamed(entry))
        assert layout.method == "mds" and len(layout.coords) == placed and len(layout.pending) == 4 - placed
    done = advance_entry(entry, {**job, "state": "succeeded", "progress": 1.0, "result_id": "r1", "partial": {}})
    assert _streamed(done) is None
