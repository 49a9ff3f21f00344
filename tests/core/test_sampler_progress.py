"""Every sampler's progress reports (the points of a training job's ``partial``, docs/api.md) carry an epoch: one
report per epoch with the same numeric keys, so the job's curves stay aligned; ADV's confusion pre-training (also as
the binary sampler's adv variant) reports its own epochs in its own phase before the clean training's."""

from __future__ import annotations

import math

import pytest

from toroid.worker.landscape.samplers import train_minimum

TINY = {"widths": [32]}
NUMERIC = {"epoch", "epochs", "train_loss", "train_error", "test_error"}
CASES = [
    ("sgd", "mlp", TINY, {}),
    ("rsgd", "mlp", TINY, {"replicas": 2}),
    ("adv", "mlp", TINY, {"confusion_epochs": 2}),
    ("sam", "mlp", TINY, {}),
    ("entropy_sgd", "mlp", TINY, {"L": 3}),
    ("adam", "mlp", TINY, {}),
    ("binary", "binary_mlp", {"widths": [64]}, {"variant": "adv", "confusion_epochs": 2}),
]


@pytest.mark.parametrize(("sampler", "arch", "config", "hp"), CASES, ids=[c[0] for c in CASES])
def test_every_report_carries_its_epoch(digits, sampler, arch, config, hp):
    reports: list[tuple[float, dict]] = []
    _, provenance = train_minimum(arch, config, digits, sampler, hp, seed=1, epochs=3, target_error=None,
                                  progress=lambda fraction, info: reports.append((fraction, dict(info))))
    pre = [info for _, info in reports if info.get("phase") == "confusion"]
    clean = reports[len(pre):]
    assert all(info.get("phase") != "confusion" for _, info in clean)  # the pre-training comes first, whole

    for _, info in reports:
        assert NUMERIC <= set(info)  # every point of every series: the partial's lists stay aligned
        assert isinstance(info["epoch"], int) and info["epoch"] >= 1
        assert math.isfinite(info["train_loss"]) and info["train_loss"] > 0
        assert 0.0 <= info["train_error"] <= 1.0
    assert [info["epoch"] for _, info in clean] == [1, 2, 3] and all(i["epochs"] == 3 for _, i in clean)
    assert all(0.0 <= i["test_error"] <= 1.0 for _, i in clean)

    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0) and fractions[0] > 0.0

    if sampler == "adv" or hp.get("variant") == "adv":
        run = provenance["extra"]["confusion_epochs_run"]
        assert run == len(pre) >= 1
        # its own epochs, 1..K of at most the cap, on the confusion set (no test error)
        assert [i["epoch"] for i in pre] == [i["confusion_epoch"] for i in pre] == list(range(1, run + 1))
        assert all(i["epochs"] == hp["confusion_epochs"] and i["test_error"] is None for i in pre)
        assert all(i.get("phase") == "training" for _, i in clean)  # the partial's phase names the current one
        assert fractions[len(pre) - 1] == pytest.approx(run / (hp["confusion_epochs"] + 3))
    else:
        assert not pre and all("phase" not in i for _, i in clean)
        assert fractions == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert provenance["epochs_run"] == 3 and [h["epoch"] for h in provenance["history"]] == [1, 2, 3]
