"""The training curves (dashboard/figures/training.py): the x-axis is the epoch for every sampler (ADV's confusion
pre-training left of epoch 1, shaded), errors in percent, the loss labelled, a log loss axis ticked at powers of ten
only, a linear one when the losses span little."""

from __future__ import annotations

import pytest

from toroid.dashboard import figures
from toroid.dashboard.figures.training import LOSS_TITLE, epoch_axis
from toroid.worker.landscape.data import load_dataset
from toroid.worker.landscape.samplers import train_minimum


def as_partial(reports: list[dict]) -> dict:
    """A job's ``partial`` from progress reports, as the job ledger merges them (docs/api.md: numbers, and None for
    a value not measured at that point, extend a series per key; text is the latest value)."""
    partial: dict = {}
    for info in reports:
        for key, value in info.items():
            if value is None or isinstance(value, int | float):
                partial.setdefault(key, []).append(value)
            else:
                partial[key] = value
    return partial


@pytest.fixture(scope="module")
def adv_partial() -> dict:
    reports: list[dict] = []
    train_minimum("mlp", {"widths": [16]}, load_dataset("digits"), "adv", {"confusion_epochs": 3}, seed=0, epochs=2,
                  target_error=None, progress=lambda _f, info: reports.append(dict(info)))
    return as_partial(reports)


def test_adv_pre_training_is_drawn_in_epochs_left_of_the_training(adv_partial):
    assert adv_partial["epoch"] == [1, 2, 3, 1, 2] and adv_partial["phase"] == "training"
    fig = figures.training_curves(adv_partial, "adv-0")
    assert fig.layout.xaxis.title.text == "epoch"
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["confusion-set error (%)"].x) == [-2, -1, 0]
    assert list(by_name["train error (%)"].x) == list(by_name["test error (%)"].x) == [1, 2]
    assert list(by_name["train loss"].x) == [1, 2] and list(by_name["confusion-set loss"].x) == [-2, -1, 0]
    band = fig.layout.shapes[0]
    assert (band.x0, band.x1) == (-2.5, 0.5)
    assert fig.layout.annotations[0].text == "confusion pre-training (random labels)"
    assert by_name["train error (%)"].y[-1] == pytest.approx(100 * adv_partial["train_error"][-1])
    # its five legend entries take three rows between the title and the plot: the top margin makes room for them
    plain = figures.training_curves({"epoch": [1, 2], "train_loss": [1.0, 0.5], "train_error": [0.3, 0.1],
                                     "test_error": [0.35, 0.15]}, "sgd-0")
    assert len(fig.data) == 5 and fig.layout.margin.t - plain.layout.margin.t >= 20


def test_plain_samplers_draw_their_epochs_as_reported():
    partial = {"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.2], "train_error": [0.3, 0.1, 0.0],
               "test_error": [0.35, 0.15, 0.05]}
    fig = figures.training_curves(partial, "sgd-0")
    assert fig.layout.xaxis.title.text == "epoch" and not fig.layout.shapes
    assert [t.name for t in fig.data] == ["train error (%)", "test error (%)", "train loss"]
    assert all(list(t.x) == [1, 2, 3] for t in fig.data)
    assert fig.layout.yaxis.title.text == "error (%)" and "%" in fig.data[0].hovertemplate
    assert fig.layout.yaxis2.title.text == LOSS_TITLE
    assert "cross-entropy" in LOSS_TITLE and "per sample" in LOSS_TITLE and "nats" in LOSS_TITLE


def test_a_loss_over_decades_gets_a_log_axis_ticked_at_powers_of_ten():
    partial = {"epoch": [1, 2, 3, 4], "train_loss": [2.3, 0.4, 0.02, 0.003], "train_error": [0.5, 0.1, 0.0, 0.0],
               "test_error": [0.5, 0.2, 0.1, 0.1]}
    axis = figures.training_curves(partial).layout.yaxis2
    assert axis.type == "log" and axis.dtick == 1 and axis.exponentformat == "power"
    assert axis.tickformat is None  # a tickformat would replace the powers of ten with digits


def test_a_loss_that_spans_little_gets_a_linear_axis_with_plain_numbers():
    partial = {"epoch": [1, 2, 3], "train_loss": [1.160626, 1.1, 1.02], "train_error": [0.3, 0.2, 0.1],
               "test_error": [0.3, 0.25, 0.2]}
    axis = figures.training_curves(partial).layout.yaxis2
    assert axis.type == "linear" and axis.tickformat == ".3~g" and axis.rangemode == "tozero"


def test_records_from_before_the_pre_training_counted_its_epochs_still_read_in_epochs():
    # ADV once reported its confusion epochs all at epoch 0
    partial = {"epoch": [0, 0, 0, 1], "train_loss": [2.3, 2.2, 2.1, 1.0], "train_error": [0.9, 0.8, 0.7, 0.4],
               "test_error": [None, None, None, 0.45], "confusion_epoch": [1, 2, 3], "phase": "confusion"}
    assert epoch_axis(partial) == [-2, -1, 0, 1]
    fig = figures.training_curves(partial, "adv-0")
    assert fig.layout.xaxis.title.text == "epoch"
    assert [t.name for t in fig.data] == ["train error (%)", "test error (%)", "train loss",
                                          "confusion-set error (%)", "confusion-set loss"]


def test_no_points_yet_says_so():
    assert figures.training_curves({}).layout.annotations[0].text.startswith("Training curves")
