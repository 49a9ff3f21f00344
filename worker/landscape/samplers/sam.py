"""SAM: Sharpness-Aware Minimization (Foret et al., ICLR 2021), a further sampler of flat minima
(docs/method.md §8 cites it; Toroid adds it).

Each step: gradient ``g`` at ``w``; ascend to ``w + e`` with ``e = rho g / ||g||`` (the norm
over all parameters); take the gradient at ``w + e``; return to ``w`` and let the base optimizer
(SGD, Nesterov 0.9, lr 0.02, cosine) step with that gradient.  BatchNorm running statistics are
updated by the first forward pass only (the perturbed pass leaves them untouched).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from toroid.worker.landscape.samplers.base import Hyper, SamplerSpec, TrainRun, common_hyper, set_lr, sgd_optimizer

__all__ = ["SPEC", "frozen_bn_statistics", "train_sam"]


@contextmanager
def frozen_bn_statistics(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers keep normalizing with batch statistics but do not update their running ones."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum


def train_sam(run: TrainRun) -> nn.Module:
    """SAM sampler (see module docstring)."""
    model = run.model
    rho = run.hp["rho"]
    x, y = run.train_data()
    gen = run.generator("shuffle")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = sgd_optimizer(params, run.hp)
    model.train()
    for epoch in range(run.epochs):
        set_lr(optimizer, run.lr(epoch))
        for idx in run.batches(gen):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            with torch.no_grad():
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
                scale = rho / (norm + 1e-12)
                eps = [g * scale for g in grads]
                for p, e in zip(params, eps, strict=True):
                    p.add_(e)
            optimizer.zero_grad(set_to_none=True)
            with frozen_bn_statistics(model):
                F.cross_entropy(model(x[idx]), y[idx]).backward()
            with torch.no_grad():
                for p, e in zip(params, eps, strict=True):
                    p.sub_(e)
            optimizer.step()
        if run.end_epoch(epoch, model):
            break
    model.eval()
    return model


SPEC = SamplerSpec(
    description=(
        "Sharpness-Aware Minimization (Foret et al. 2021): SGD steps with the gradient taken at the worst "
        "point of a rho-ball; base optimizer SGD, Nesterov 0.9, lr 0.02, cosine. Flat minima."
    ),
    hyper={
        **common_hyper(epochs=30, lr=0.02, momentum=0.9, nesterov=True),
        "rho": Hyper(0.05, "radius of the ascent step (Foret et al.: 0.05)", float, minimum=0.0),
    },
    binary_ok=False,
    fn=train_sam,
    paper={"rho": 0.05},
    reference="Foret et al., ICLR 2021",
)
