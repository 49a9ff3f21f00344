"""SGD: the sampler of typical minima (docs/method.md §8).

Nesterov momentum 0.9, learning rate 0.02 with cosine annealing, batch 128, cross-entropy, no
weight decay, no augmentation.  :func:`sgd_epochs` is the plain training loop that ADV's clean
phase and the one-bend retraining (:mod:`toroid.worker.landscape.bend`) reuse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toroid.worker.landscape.samplers.base import (
    SamplerSpec,
    TrainRun,
    binary_latent_weights,
    clip_latent,
    common_hyper,
    set_lr,
    sgd_optimizer,
)

__all__ = ["SPEC", "sgd_epochs", "train_sgd"]


def sgd_epochs(
    run: TrainRun, model: nn.Module, *, stream: str = "shuffle", latent_clip: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Train ``model`` in place with mini-batch SGD for ``run.epochs`` epochs (or until the
    target train error), using ``run.hp`` (lr, momentum, nesterov, schedule, batch_size).

    ``latent_clip``: clip binary latent weights to this bound after each step (binary networks).
    ``optimizer``: another first-order optimizer over ``model``'s parameters (Adam); default SGD from ``run.hp``.
    """
    x, y = run.train_data()
    gen = run.generator(stream)
    optimizer = optimizer if optimizer is not None else sgd_optimizer(model.parameters(), run.hp)
    latent = binary_latent_weights(model) if latent_clip is not None else []
    model.train()
    for epoch in range(run.epochs):
        set_lr(optimizer, run.lr(epoch))
        for idx in run.batches(gen):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
            if latent:
                clip_latent(latent, latent_clip)
        if run.end_epoch(epoch, model):
            break
    model.eval()


def train_sgd(run: TrainRun) -> nn.Module:
    """SGD sampler: :func:`sgd_epochs` on the initialized network."""
    sgd_epochs(run, run.model)
    return run.model


SPEC = SamplerSpec(
    description=(
        "SGD with Nesterov momentum 0.9, lr 0.02, cosine annealing, batch 128, cross-entropy, no weight "
        "decay: minima of typical flatness (docs/method.md §8)."
    ),
    hyper=common_hyper(epochs=30, lr=0.02, momentum=0.9, nesterov=True),
    binary_ok=False,
    fn=train_sgd,
    paper={"epochs": 300, "batch_size": 128, "lr": 0.02, "momentum": 0.9, "nesterov": True, "schedule": "cosine"},
    reference="Pittorino et al., ICML 2022 (docs/method.md §8)",
)
