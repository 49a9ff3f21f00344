"""Binary networks: SGD, RSGD and ADV on BinaryNet-style latent weights (docs/method.md §8-9).

The binary architectures of :mod:`toroid.worker.landscape.nets` (``binary_mlp``, ``binary_conv``,
``committee``) keep real latent weights; the forward pass uses their sign (binary output layer
included) and the backward pass a straight-through gradient.  This sampler trains them with
the paper's three samplers, chosen by the ``variant`` hyperparameter:

* ``sgd``  - SGD, Nesterov momentum 0.9, cosine;
* ``rsgd`` - replicated SGD (:mod:`.rsgd`): the center's latent weights are the replica means,
  so the center's binary weights are the replicas' majority vote;
* ``adv``  - confusion pre-training then plain SGD (:mod:`.adv`).

After every step the latent weights are clipped to ``[-latent_clip, latent_clip]`` (beyond the
straight-through window they would receive no gradient).  Binary layers scale their
pre-activations by ``1/sqrt(fan_in)``, so latent gradients are small: the learning rate is
much larger than for continuous networks (default 0.5; the paper does not state its value).
``momentum``/``nesterov`` left at ``None`` take the variant's paper choice (0.9 Nesterov for
sgd and rsgd, no momentum for adv's clean phase).
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from toroid.worker.landscape.samplers.adv import adv_hyper, adv_train
from toroid.worker.landscape.samplers.base import Hyper, SamplerSpec, TrainRun
from toroid.worker.landscape.samplers.rsgd import rsgd_hyper, rsgd_train
from toroid.worker.landscape.samplers.sgd import sgd_epochs

__all__ = ["SPEC", "VARIANTS", "train_binary"]

VARIANTS = ("sgd", "rsgd", "adv")

_VARIANT_MOMENTUM = {"sgd": 0.9, "rsgd": 0.9, "adv": 0.0}


def train_binary(run: TrainRun) -> nn.Module:
    """Binary sampler: the ``variant`` training loop with latent-weight clipping."""
    hp = run.hp
    variant = hp["variant"]
    if hp["momentum"] is None:
        hp["momentum"] = _VARIANT_MOMENTUM[variant]
    if hp["nesterov"] is None:
        hp["nesterov"] = hp["momentum"] > 0
    clip = hp["latent_clip"]
    if variant == "sgd":
        sgd_epochs(run, run.model, latent_clip=clip)
        return run.model
    if variant == "rsgd":
        return rsgd_train(run, latent_clip=clip)
    return adv_train(run, latent_clip=clip)


def _binary_hyper() -> dict[str, Hyper]:
    hyper: dict[str, Hyper] = {
        "variant": Hyper("sgd", "which of the paper's samplers trains the binary network", str, VARIANTS),
    }
    rsgd = rsgd_hyper(lr=0.5, epochs=20)
    adv = adv_hyper(lr=0.5, confusion_lr=0.5, epochs=20)
    hyper.update(rsgd)
    hyper.update({k: v for k, v in adv.items() if k not in hyper})
    hyper["lr"] = Hyper(0.5, "learning rate of the latent weights (peak of the schedule)", float, minimum=0.0)
    hyper["momentum"] = Hyper(
        None,
        "SGD momentum; None: the variant's choice (0.9 for sgd/rsgd, 0 for adv)",
        float,
        minimum=0.0,
        optional=True,
    )
    hyper["nesterov"] = Hyper(None, "Nesterov momentum; None: whenever momentum > 0", bool, optional=True)
    hyper["latent_clip"] = Hyper(1.0, "clip latent weights to [-c, c] after each step (BinaryNet)", float, minimum=0.0)
    for key in ("replicas", "scale_lr", "gamma_growth", "gamma0"):
        hyper[key] = replace(hyper[key], doc=f"variant rsgd only: {hyper[key].doc}")
    for key in ("confusion_zero", "confusion_epochs", "confusion_target", "confusion_lr"):
        hyper[key] = replace(hyper[key], doc=f"variant adv only: {hyper[key].doc}")
    return hyper


SPEC = SamplerSpec(
    description=(
        "Binary networks (sign weights and activations, straight-through gradient on clipped latent weights) "
        "trained with the paper's sgd, rsgd or adv sampler, chosen by 'variant' (docs/method.md §8)."
    ),
    hyper=_binary_hyper(),
    binary_ok=True,
    binary_only=True,
    fn=train_binary,
    paper={"epochs": 300, "batch_size": 128},
    reference="Pittorino et al., ICML 2022 (docs/method.md §8); Courbariaux et al. 2016 (BinaryNet)",
)
