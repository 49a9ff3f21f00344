"""Shared fixtures for the science-core tests: small models, BN models with random statistics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toroid.worker.landscape.data import Dataset, load_dataset
from toroid.worker.landscape.nets import build_model

# The test machine has 2 cores shared by several processes: keep torch to one thread.
torch.set_num_threads(1)

# Small instances of every architecture: (name, config, (input_shape, num_classes)).
SMALL_CONTINUOUS: list[tuple[str, dict[str, Any], tuple[tuple[int, ...], int]]] = [
    ("mlp", {"widths": [16, 12]}, ((1, 8, 8), 10)),
    ("lenet", {"channels": [4, 6], "hidden": [10]}, ((1, 8, 8), 10)),
    ("vgg", {"depth": 11, "width_scale": 1 / 16}, ((3, 8, 8), 10)),
    ("vgg", {"depth": 16, "width_scale": 1 / 32, "classifier": [12]}, ((3, 16, 16), 10)),
    ("resnet", {"width": 4, "blocks": [2, 1]}, ((3, 8, 8), 10)),
]
SMALL_BINARY: list[tuple[str, dict[str, Any], tuple[tuple[int, ...], int]]] = [
    ("binary_mlp", {"widths": [15, 17]}, ((1, 8, 8), 10)),
    ("binary_conv", {"channels": [4, 6], "hidden": [9]}, ((1, 8, 8), 10)),
    ("committee", {"hidden": 7}, ((21,), 2)),
]


def case_id(case: tuple) -> str:
    name, config, _ = case
    return f"{name}-" + "-".join(f"{k}{v}" for k, v in config.items()).replace(" ", "")


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random running statistics and affine parameters, and switch to eval
    mode, so that BN-related invariances are tested on something other than the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    return model.eval()


def make(name: str, config: dict[str, Any], data: tuple, seed: int = 0) -> nn.Module:
    """Build a small model in eval mode, BN statistics randomized."""
    return randomize_batchnorm(build_model(name, config, data, seed=seed), seed=seed + 100)


def inputs(data: tuple, n: int = 64, seed: int = 0) -> torch.Tensor:
    shape, _ = data
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def make_model() -> Callable[..., nn.Module]:
    """``make_model(name, config, (input_shape, num_classes), seed=0)``: small eval-mode model with
    random BatchNorm statistics."""
    return make


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits")


def quick_sgd(dataset: Dataset, seed: int, name: str = "mlp", config: dict | None = None, epochs: int = 8) -> nn.Module:
    """A few epochs of plain SGD with momentum (lr 0.05): a small trained network in about a second.

    Independent of the samplers on purpose, so the measures' tests do not depend on them."""
    model = build_model(name, config or {"widths": [32, 32]}, dataset, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(dataset.y_train), generator=gen)
        for i in range(0, len(perm), 128):
            idx = perm[i : i + 128]
            loss = F.cross_entropy(model(dataset.x_train[idx]), dataset.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()
