"""ADV: the sampler of sharp minima by adversarial initialization (docs/method.md §8; Liu et al.,
"Bad global minima exist and SGD can reach them", NeurIPS 2020).

1. Confusion pre-training: a copy of the training set with random labels (uniform over the
   classes) and a random ``confusion_zero`` fraction (10%) of each input's entries set to zero
   (the inputs are standardized, so zero is the mean) is memorized to ``confusion_target``
   train error (100% accuracy) or until ``confusion_epochs`` (the cap); SGD with Nesterov momentum
   0.9 at ``confusion_lr``, constant learning rate.  The paper does not state the pre-training
   optimizer; this is Toroid's choice.
2. Clean training: plain SGD (no momentum), lr 0.02, cosine annealing, on the clean data.

All randomness (labels, masks, shuffling) comes from generators derived from the seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toroid.worker.landscape.samplers.base import (
    Hyper,
    SamplerSpec,
    TrainRun,
    binary_latent_weights,
    clip_latent,
    common_hyper,
    sgd_optimizer,
)
from toroid.worker.landscape.samplers.sgd import sgd_epochs

__all__ = ["SPEC", "adv_train", "confusion_data", "train_adv"]


def confusion_data(run: TrainRun) -> tuple[Tensor, Tensor]:
    """The confusion copy of the training set: random labels, ``confusion_zero`` of each input's
    entries zeroed (seeded; on the run's device)."""
    x, y = run.train_data()
    gen = run.generator("confusion")
    labels = torch.randint(0, run.dataset.num_classes, (len(y),), generator=gen)
    flat = x.reshape(len(x), -1)
    k = int(round(run.hp["confusion_zero"] * flat.shape[1]))
    mask = torch.zeros(flat.shape, dtype=torch.bool)
    if k > 0:
        # exactly k entries per input, chosen uniformly: the k smallest of iid uniform scores
        scores = torch.rand(flat.shape, generator=gen)
        mask.scatter_(1, scores.topk(k, dim=1, largest=False).indices, True)
    xc = flat.masked_fill(mask.to(flat.device), 0.0).reshape(x.shape)
    return xc, labels.to(y.device)


def confusion_pretrain(run: TrainRun, model: nn.Module, latent_clip: float | None = None) -> dict:
    """Memorize the confusion set (step 1).  Returns ``{"confusion_epochs_run", "confusion_train_error"}``.

    Each pre-training epoch is reported like a training epoch, counted in its own phase: ``epoch`` is the
    pre-training epoch (1-based, also ``confusion_epoch``) of at most ``epochs`` = the ``confusion_epochs`` cap,
    ``phase`` is ``"confusion"``, ``train_error`` / ``train_loss`` are measured on the confusion set and there is
    no test error. The progress fraction counts these epochs with the clean ones (cap + budget).
    """
    hp = run.hp
    xc, yc = confusion_data(run)
    gen = run.generator("confusion-shuffle")
    optimizer = sgd_optimizer(model.parameters(), {"momentum": 0.9, "nesterov": True}, lr=hp["confusion_lr"])
    latent = binary_latent_weights(model) if latent_clip is not None else []
    err = 1.0
    epochs_run = 0
    model.train()
    for _ in range(hp["confusion_epochs"]):
        for idx in run.batches(gen):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(xc[idx]), yc[idx]).backward()
            optimizer.step()
            if latent:
                clip_latent(latent, latent_clip)
        epochs_run += 1
        err, loss = _error_and_loss(model, xc, yc)
        if run.progress is not None:  # lets a caller follow (and cancel) the pre-training
            run.progress(
                epochs_run / (hp["confusion_epochs"] + run.epochs),
                {
                    "epoch": epochs_run,
                    "epochs": hp["confusion_epochs"],
                    "train_loss": loss,
                    "train_error": err,
                    "test_error": None,
                    "phase": "confusion",
                    "confusion_epoch": epochs_run,
                },
            )
        if err <= hp["confusion_target"]:
            break
    model.train()
    return {"confusion_epochs_run": epochs_run, "confusion_train_error": err}


@torch.no_grad()
def _error_and_loss(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 4096) -> tuple[float, float]:
    """Error and mean cross-entropy of ``model`` on the confusion set (eval mode)."""
    model.eval()
    wrong, loss = 0, 0.0
    for i in range(0, len(x), chunk):
        logits = model(x[i : i + chunk])
        wrong += int((logits.argmax(1) != y[i : i + chunk]).sum())
        loss += float(F.cross_entropy(logits, y[i : i + chunk], reduction="sum"))
    model.train()
    n = max(1, len(x))
    return wrong / n, loss / n


def adv_train(run: TrainRun, latent_clip: float | None = None) -> nn.Module:
    """Confusion pre-training, then plain SGD on the clean data (see module docstring)."""
    run.extra.update(confusion_pretrain(run, run.model, latent_clip))
    run.phase, run.epochs_before = "training", run.extra["confusion_epochs_run"]
    sgd_epochs(run, run.model, latent_clip=latent_clip)
    return run.model


def train_adv(run: TrainRun) -> nn.Module:
    """ADV sampler."""
    return adv_train(run)


def adv_hyper(lr: float, confusion_lr: float, epochs: int) -> dict[str, Hyper]:
    """ADV's hyperparameters (shared with the binary sampler's adv variant)."""
    return {
        **common_hyper(epochs=epochs, lr=lr, momentum=0.0, nesterov=False),
        "confusion_zero": Hyper(
            0.1,
            "fraction of each input's entries set to zero in the confusion copy (paper: 0.1)",
            float,
            minimum=0.0,
        ),
        "confusion_epochs": Hyper(
            100, "cap on the confusion pre-training epochs (stops earlier at confusion_target)", int, minimum=0
        ),
        "confusion_target": Hyper(
            0.0,
            "confusion pre-training stops at this train error on the confusion set (paper: 0, i.e. 100%)",
            float,
            minimum=0.0,
        ),
        "confusion_lr": Hyper(
            confusion_lr,
            "learning rate of the confusion pre-training (SGD, Nesterov 0.9, constant)",
            float,
            minimum=0.0,
        ),
    }


SPEC = SamplerSpec(
    description=(
        "Adversarial initialization (Liu et al. 2020): memorize a confusion copy of the data (random labels, "
        "10% of each input zeroed), then plain SGD (no momentum), lr 0.02, cosine: sharp minima "
        "(docs/method.md §8)."
    ),
    hyper=adv_hyper(lr=0.02, confusion_lr=0.02, epochs=40),
    binary_ok=False,
    fn=train_adv,
    paper={"epochs": 300, "batch_size": 128, "lr": 0.02, "momentum": 0.0, "confusion_zero": 0.1},
    reference="Pittorino et al., ICML 2022 (docs/method.md §8); Liu et al., NeurIPS 2020",
)
