"""Adam: a plain baseline sampler (Kingma & Ba, ICLR 2015; not in the paper).

Adam at lr 1e-3 with the usual betas, batch 128, cross-entropy, no weight decay, constant learning
rate by default.  It also trains binary networks (BinaryNet's original recipe is Adam on the
latent weights, clipped to ``[-latent_clip, latent_clip]`` after each step).
"""

from __future__ import annotations

import torch
from torch import nn

from toroid.worker.landscape.samplers.base import Hyper, SamplerSpec, TrainRun, common_hyper
from toroid.worker.landscape.samplers.sgd import sgd_epochs

__all__ = ["SPEC", "train_adam"]


def train_adam(run: TrainRun) -> nn.Module:
    """Adam sampler (see module docstring)."""
    hp = run.hp
    model = run.model
    optimizer = torch.optim.Adam(model.parameters(), lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])
    sgd_epochs(run, model, latent_clip=hp["latent_clip"], optimizer=optimizer)
    return model


_common = common_hyper(epochs=30, lr=1e-3, momentum=0.0, nesterov=False, schedule="constant")
SPEC = SamplerSpec(
    description="Adam (lr 1e-3, betas 0.9/0.999, constant lr): a plain baseline; also trains binary networks.",
    hyper={
        "epochs": _common["epochs"],
        "batch_size": _common["batch_size"],
        "lr": _common["lr"],
        "schedule": _common["schedule"],
        "beta1": Hyper(0.9, "Adam's first-moment decay", float, minimum=0.0),
        "beta2": Hyper(0.999, "Adam's second-moment decay", float, minimum=0.0),
        "eps": Hyper(1e-8, "Adam's denominator epsilon", float, minimum=0.0),
        "latent_clip": Hyper(
            1.0, "binary networks: clip latent weights to [-c, c] after each step", float, minimum=0.0
        ),
    },
    binary_ok=True,
    fn=train_adam,
    paper={},
    reference="Kingma & Ba, ICLR 2015",
)
