"""Entropy-SGD (Chaudhari et al., ICLR 2017, Algorithm 1), a further sampler of flat minima
(docs/method.md §8 cites it; Toroid adds it).

Gradient descent on the local entropy.  Each outer step starts a Langevin chain at the current
weights ``x``: ``x' = mu = x``; for ``L`` inner steps (each on a fresh mini-batch)

    x' <- x' - eta' (grad f(x') - gamma (x - x')) + sqrt(eta') * noise * N(0, I)
    mu <- (1 - alpha) mu + alpha x'

then the outer optimizer (SGD, Nesterov 0.9) steps ``x`` with the gradient ``x - mu`` (the
local-entropy gradient divided by gamma, as in the authors' code, so the outer ``lr`` is
about 1).  Scoping: ``gamma = gamma0 * (1 + gamma_scoping)^t`` grows with the outer step ``t``.

One epoch = one pass over the data by the inner loop (about ``n / batch_size`` gradient
evaluations, grouped in ``round(n / (batch_size L))`` outer steps, at least 1), so an epoch
costs the same as an SGD epoch; Chaudhari et al. count "effective epochs" the same way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from toroid.worker.landscape.samplers.base import Hyper, SamplerSpec, TrainRun, common_hyper, set_lr, sgd_optimizer

__all__ = ["SPEC", "train_entropy_sgd"]


def train_entropy_sgd(run: TrainRun) -> nn.Module:
    """Entropy-SGD sampler (see module docstring)."""
    hp = run.hp
    model = run.model
    x, y = run.train_data()
    stream = run.batch_stream(run.generator("shuffle"))
    noise_gen = run.device_generator("langevin")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = sgd_optimizer(params, hp)
    n_batches = math.ceil(len(y) / hp["batch_size"])
    outer_per_epoch = max(1, round(n_batches / hp["L"]))
    eta, alpha, noise = hp["inner_lr"], hp["alpha"], hp["noise"]
    t = 0
    model.train()
    for epoch in range(run.epochs):
        set_lr(optimizer, run.lr(epoch))
        for _ in range(outer_per_epoch):
            gamma = hp["gamma0"] * (1.0 + hp["gamma_scoping"]) ** t
            with torch.no_grad():
                anchor = [p.detach().clone() for p in params]
                mu = [p.detach().clone() for p in params]
            for _ in range(hp["L"]):
                idx = next(stream)
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                with torch.no_grad():
                    for p, a, m in zip(params, anchor, mu, strict=True):
                        g = p.grad if p.grad is not None else torch.zeros_like(p)
                        p.add_(g - gamma * (a - p), alpha=-eta)
                        if noise > 0:
                            z = torch.randn(p.shape, generator=noise_gen, device=p.device, dtype=p.dtype)
                            p.add_(z, alpha=math.sqrt(eta) * noise)
                        m.mul_(1.0 - alpha).add_(p, alpha=alpha)
            with torch.no_grad():
                for p, a, m in zip(params, anchor, mu, strict=True):
                    p.copy_(a)
                    p.grad = a - m
            optimizer.step()
            t += 1
        if run.end_epoch(epoch, model):
            break
    run.extra["outer_steps"] = t
    run.extra["gamma_final"] = hp["gamma0"] * (1.0 + hp["gamma_scoping"]) ** max(0, t - 1)
    model.eval()
    return model


SPEC = SamplerSpec(
    description=(
        "Entropy-SGD (Chaudhari et al. 2017): SGD on the local entropy, estimated by an L-step Langevin inner "
        "loop coupled to the current weights with a growing ('scoped') gamma. Flat minima."
    ),
    hyper={
        **common_hyper(epochs=30, lr=1.0, momentum=0.9, nesterov=True),
        "L": Hyper(20, "Langevin inner steps per outer step (Chaudhari et al.: 20)", int, minimum=1),
        "inner_lr": Hyper(0.1, "inner-loop (Langevin) step size eta' (Chaudhari et al.: 0.1)", float, minimum=0.0),
        "alpha": Hyper(
            0.75, "weight of the new sample in the running mean mu (Chaudhari et al.: 0.75)", float, minimum=0.0
        ),
        "noise": Hyper(
            1e-4, "Langevin noise scale epsilon (thermal noise; Chaudhari et al.: 1e-4)", float, minimum=0.0
        ),
        "gamma0": Hyper(0.03, "initial coupling (scope) gamma (Chaudhari et al.: 0.03)", float, minimum=0.0),
        "gamma_scoping": Hyper(
            1e-3,
            "gamma grows as gamma0 (1 + gamma_scoping)^t per outer step t (Chaudhari et al.: 1e-3)",
            float,
            minimum=0.0,
        ),
    },
    binary_ok=False,
    fn=train_entropy_sgd,
    paper={"L": 20, "inner_lr": 0.1, "alpha": 0.75, "noise": 1e-4, "gamma0": 0.03, "gamma_scoping": 1e-3, "lr": 1.0},
    reference="Chaudhari et al., ICLR 2017",
)
