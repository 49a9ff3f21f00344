"""Architecture registry: the one place where Toroid's networks are defined.

A model is built from a registry name, a JSON-able config and a dataset (which fixes the
input shape and the number of classes): ``build_model(name, config, dataset)``. Models are
plain ``nn.Module`` objects whose ``state_dict`` is the checkpoint format, and every model is
``torch.fx``-traceable so that :mod:`toroid.worker.landscape.symmetry` derives its unit graph by
tracing instead of by a hand-written spec per architecture.

Architectures (``ARCHITECTURES``), docs/method.md §9 and 4:

* ``mlp``         Flatten, hidden Linear + ReLU layers (default 2 x 512), Linear output.
* ``lenet``       conv 20 5x5, 2x2 max-pool, conv 50 5x5, 2x2 max-pool, FC 500, output; on small
                  inputs (side < 16, e.g. 8x8 digits) the kernels become 3x3 with "same" padding.
* ``vgg``         VGG with BatchNorm (depth 11/13/16/19, default 16), ``width_scale`` shrinks it.
* ``resnet``      CIFAR ResNet-18 style: 3x3 stem, BasicBlocks with BN and residual streams.
* ``binary_mlp``  sign activations, +-1 weights, binary output layer (default 3 x 1001).
* ``binary_conv`` binary ConvNet; average pooling (max-pooling does not commute with the sign
                  flips of docs/method.md §4: ``max(-x) = -min(x)``, whereas ``avg(-x) = -avg(x)``).
* ``committee``   binary committee machine: one binary hidden layer of K units whose outputs are
                  summed with fixed +1 weights; permutation is its only symmetry; 2 classes.

Binary modules keep real-valued *latent* weights as their parameters (what an optimizer
updates); the forward pass uses ``sign(latent)`` with a straight-through gradient (BinaryNet,
Courbariaux et al. 2016), so they train with any torch optimizer (docs/method.md §8).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "BasicBlock",
    "BinaryConv2d",
    "BinaryLinear",
    "CommitteeOutput",
    "ResNet",
    "Sign",
    "architecture_schema",
    "binarize",
    "build_model",
    "is_binary_architecture",
    "model_spec",
    "sign_ste",
]


# --------------------------------------------------------------------------------------------------
# binary building blocks


class _SignSTE(torch.autograd.Function):
    """``sign`` in the forward pass, straight-through (hard-tanh) gradient in the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, zero_to_one: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        if zero_to_one:
            return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
        return torch.sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype), None


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """Sign activation (``sign(0) = 0``, an odd function) with a straight-through gradient
    ``d sign(x)/dx := 1{|x| <= 1}``."""
    return _SignSTE.apply(x, False)


def binarize(w: torch.Tensor) -> torch.Tensor:
    """+-1 weights from latent weights: ``+1`` where ``w >= 0``, else ``-1``; straight-through gradient."""
    return _SignSTE.apply(w, True)


class Sign(nn.Module):
    """Sign activation module (straight-through gradient); commutes with unit sign flips."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign_ste(x)


class BinaryLinear(nn.Linear):
    """Linear layer with +-1 weights ``binarize(latent)`` and no bias.

    The parameter ``weight`` holds the real latent weights. The pre-activation is divided by
    ``sqrt(in_features)``: irrelevant for the sign, it keeps the output layer's logits and the
    straight-through window at O(1).
    """

    binary = True

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def binary_weight(self) -> torch.Tensor:
        """The +-1 weights the forward pass uses."""
        return binarize(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, binarize(self.weight)) / math.sqrt(self.in_features)


class BinaryConv2d(nn.Conv2d):
    """2-D convolution with +-1 weights ``binarize(latent)``, no bias, pre-activation / sqrt(fan-in)."""

    binary = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=False)

    def binary_weight(self) -> torch.Tensor:
        """The +-1 weights the forward pass uses."""
        return binarize(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fan_in = self.weight[0].numel()
        return self._conv_forward(x, binarize(self.weight), None) / math.sqrt(fan_in)


class CommitteeOutput(nn.Module):
    """Committee machine read-out: ``s = sum_k h_k / sqrt(K)`` with fixed +1 weights.

    Returns the 2-class logits ``[-s, s]`` (class 1 when the majority of hidden units vote +1).
    The +1 weights are a non-persistent buffer: they are not parameters and not in the checkpoint.
    Being fixed, they make sign flips of hidden units *not* a symmetry; permutations remain one.
    """

    def __init__(self, units: int) -> None:
        super().__init__()
        self.units = units
        self.register_buffer("output_weights", torch.ones(units), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        s = (h * self.output_weights).sum(dim=1, keepdim=True) / math.sqrt(self.units)
        return torch.cat([-s, s], dim=1)


# --------------------------------------------------------------------------------------------------
# ResNet


class BasicBlock(nn.Module):
    """CIFAR ResNet BasicBlock: conv-BN-ReLU-conv-BN, plus identity or 1x1 conv-BN shortcut, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                OrderedDict(conv=nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), bn=nn.BatchNorm2d(out_ch))
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016; ResNet-18 with ``blocks=[2, 2, 2, 2]``, ``width=64``)."""

    def __init__(self, in_ch: int, num_classes: int, width: int, blocks: Sequence[int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages = []
        ch = width
        for i, n in enumerate(blocks):
            out_ch = width * 2**i
            layers = []
            for j in range(n):
                layers.append(BasicBlock(ch, out_ch, stride=(1 if i == 0 or j > 0 else 2)))
                ch = out_ch
            stages.append(nn.Sequential(*layers))
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1)
        return self.fc(torch.flatten(out, 1))


# --------------------------------------------------------------------------------------------------
# builders


def _positive_ints(arch: str, key: str, value: Any, allow_empty: bool = True) -> list[int]:
    if not isinstance(value, (list, tuple)) or (not allow_empty and not value):
        raise ValueError(f"architecture {arch!r}: {key} must be a list of positive integers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"architecture {arch!r}: {key} must be a list of positive integers, got {value!r}")
        out.append(int(v))
    return out


def _positive_int(arch: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"architecture {arch!r}: {key} must be a positive integer, got {value!r}")
    return int(value)


def _image_shape(arch: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(
            f"architecture {arch!r} needs image inputs shaped (channels, height, width); the dataset gives "
            f"{input_shape}. Use 'mlp' (or 'binary_mlp') for flat inputs."
        )
    c, h, w = (int(s) for s in input_shape)
    return c, h, w


def _hidden_stack(layers: OrderedDict, prefix: str, in_features: int, widths: list[int], binary: bool) -> int:
    for i, width in enumerate(widths, start=1):
        if binary:
            layers[f"{prefix}{i}"] = BinaryLinear(in_features, width)
            layers[f"sign_{prefix}{i}"] = Sign()
        else:
            layers[f"{prefix}{i}"] = nn.Linear(in_features, width)
            layers[f"relu_{prefix}{i}"] = nn.ReLU()
        in_features = width
    return in_features


def _build_mlp(config: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    widths = _positive_ints("mlp", "widths", config["widths"])
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    d = _hidden_stack(layers, "fc", math.prod(input_shape), widths, binary=False)
    layers["out"] = nn.Linear(d, num_classes)
    return nn.Sequential(layers)


def _build_binary_mlp(config: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    widths = _positive_ints("binary_mlp", "widths", config["widths"])
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    d = _hidden_stack(layers, "fc", math.prod(input_shape), widths, binary=True)
    layers["out"] = BinaryLinear(d, num_classes)
    return nn.Sequential(layers)


def _build_committee(config: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    hidden = _positive_int("committee", "hidden", config["hidden"])
    if num_classes != 2:
        raise ValueError(
            f"architecture 'committee' is a binary classifier (2 classes); the dataset has {num_classes}. "
            "Use it with 2-class data such as 'hmm'."
        )
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            hidden=BinaryLinear(math.prod(input_shape), hidden),
            sign=Sign(),
            out=CommitteeOutput(hidden),
        )
    )


def _build_lenet(config: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    c, h, w = _image_shape("lenet", input_shape)
    channels = _positive_ints("lenet", "channels", config["channels"], allow_empty=False)
    hidden = _positive_ints("lenet", "hidden", config["hidden"])
    side = min(h, w)
    kernel, padding = config["kernel_size"], config["padding"]
    if kernel == "auto":
        kernel = 5 if side >= 16 else 3
    kernel = _positive_int("lenet", "kernel_size", kernel)
    if padding == "auto":
        padding = "valid" if side >= 16 else "same"
    if padding not in ("valid", "same"):
        raise ValueError(f"architecture 'lenet': padding must be 'auto', 'valid' or 'same', got {padding!r}")
    pad = 0 if padding == "valid" else kernel // 2
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, ch in enumerate(channels, start=1):
        layers[f"conv{i}"] = nn.Conv2d(c, ch, kernel, padding=pad)
        layers[f"relu_conv{i}"] = nn.ReLU()
        h, w = h + 2 * pad - kernel + 1, w + 2 * pad - kernel + 1
        if h < 1 or w < 1:
            raise ValueError(
                f"architecture 'lenet': input {input_shape} is too small for {len(channels)} convolutions "
                f"with kernel {kernel} and padding {padding!r}; use padding='same' or a smaller kernel_size"
            )
        if min(h, w) >= 2:
            layers[f"pool{i}"] = nn.MaxPool2d(2)
            h, w = h // 2, w // 2
        c = ch
    layers["flatten"] = nn.Flatten()
    d = _hidden_stack(layers, "fc", c * h * w, hidden, binary=False)
    layers["out"] = nn.Linear(d, num_classes)
    return nn.Sequential(layers)


VGG_CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _build_vgg(config: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    c, h, w = _image_shape("vgg", input_shape)
    depth = config["depth"]
    if depth not in VGG_CONFIGS:
        raise ValueError(f"architecture 'vgg': depth must be one of {sorted(VGG_CONFIGS)}, got {depth!r}")
    scale = config["width_scale"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"architecture 'vgg': width_scale must be a positive number, got {scale!r}")
    hidden = _positive_ints("vgg", "classifier", config["classifier"])
    batch_norm = config["batch_norm"]
    if not isinstance(batch_norm, bool):
        raise ValueError(f"architecture 'vgg': batch_norm must be true or false, got {batch_norm!r}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    i = pool = 0
    for item in VGG_CONFIGS[depth]:
        if item == "M":
            pool += 1
            if min(h, w) >= 2:  # small inputs (e.g. 8x8) skip the pools that would empty the map
                layers[f"pool{pool}"] = nn.MaxPool2d(2)
                h, w = h // 2, w // 2
            continue
        i += 1
        ch = max(1, round(int(item) * float(scale)))
        layers[f"conv{i}"] = nn.Conv2d(c, ch, 3, padding=1, bias=not batch_norm)
        if batch_norm:
            layers[f"bn{i}"] = nn.BatchNorm2d(ch)
        layers[f"relu{i}"] = nn.ReLU()
        c = ch
    layers["flatten"] = nn.Flatten()
    d = _hidden_stack(layers, "fc", c * h * w, hidden, binary=False)
    layers["out"] = nn.Linear(d, num_classes)
    return nn.Sequential(layers)


def _build_resnet(config: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    c, _, _ = _image_shape("resnet", input_shape)
    width = _positive_int("resnet", "width", config["width"])
    blocks = _positive_ints("resnet", "blocks", config["blocks"], allow_empty=False)
    return ResNet(c, num_classes, width, blocks)


def _build_binary_conv(config: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    c, h, w = _image_shape("binary_conv", input_shape)
    channels = _positive_ints("binary_conv", "channels", config["channels"], allow_empty=False)
    hidden = _positive_ints("binary_conv", "hidden", config["hidden"])
    kernel = _positive_int("binary_conv", "kernel_size", config["kernel_size"])
    if kernel % 2 == 0:
        raise ValueError(f"architecture 'binary_conv': kernel_size must be odd ('same' padding), got {kernel}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, ch in enumerate(channels, start=1):
        layers[f"conv{i}"] = BinaryConv2d(c, ch, kernel, padding=kernel // 2)
        if min(h, w) >= 2:
            # average pooling: max-pooling does not commute with sign flips (docs/method.md §4)
            layers[f"pool{i}"] = nn.AvgPool2d(2)
            h, w = h // 2, w // 2
        layers[f"sign_conv{i}"] = Sign()
        c = ch
    layers["flatten"] = nn.Flatten()
    d = _hidden_stack(layers, "fc", c * h * w, hidden, binary=True)
    layers["out"] = BinaryLinear(d, num_classes)
    return nn.Sequential(layers)


# --------------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class ArchSpec:
    """A registry entry: description, default config (JSON-able), binary flag, builder."""

    description: str
    defaults: dict[str, Any]
    binary: bool
    builder: Callable[[dict, tuple[int, ...], int], nn.Module] = field(repr=False)
    #: Any config keys are accepted (the builder checks them): library models and plain-callable plugins.
    open_config: bool = False
    #: ``builtin``, ``plugin``, ``torchvision`` or ``timm`` (``toroid.worker.landscape.registry``).
    source: str = "builtin"


ARCHITECTURES: dict[str, ArchSpec] = {
    "mlp": ArchSpec(
        "Multi-layer perceptron: Flatten, hidden Linear+ReLU layers (paper: 2 x 512), Linear output.",
        {"widths": [512, 512]},
        False,
        _build_mlp,
    ),
    "lenet": ArchSpec(
        "LeNet: conv 20 5x5, 2x2 max-pool, conv 50 5x5, 2x2 max-pool, FC 500, output. kernel_size/padding "
        "'auto': 5x5 valid convolutions for inputs of side >= 16, 3x3 'same' convolutions below (8x8 digits).",
        {"channels": [20, 50], "hidden": [500], "kernel_size": "auto", "padding": "auto"},
        False,
        _build_lenet,
    ),
    "vgg": ArchSpec(
        "VGG with BatchNorm (paper: VGG16-BN). depth 11/13/16/19; width_scale multiplies every conv width; "
        "classifier lists hidden FC widths before the output (default none, CIFAR style); pools that would "
        "shrink the map below 1x1 are skipped.",
        {"depth": 16, "width_scale": 1.0, "classifier": [], "batch_norm": True},
        False,
        _build_vgg,
    ),
    "resnet": ArchSpec(
        "CIFAR ResNet-18 style: 3x3 stem conv-BN-ReLU, stages of BasicBlocks (width doubling, stride 2 "
        "from stage 2), global average pool, Linear output. Not in the paper (Toroid extension).",
        {"width": 64, "blocks": [2, 2, 2, 2]},
        False,
        _build_resnet,
    ),
    "binary_mlp": ArchSpec(
        "Binary MLP: sign activations, +-1 weights (sign of latent weights, straight-through gradient), "
        "binary output layer (paper: 3 x 1001).",
        {"widths": [1001, 1001, 1001]},
        True,
        _build_binary_mlp,
    ),
    "binary_conv": ArchSpec(
        "Binary ConvNet: binary 'same' convolutions, 2x2 average pooling (it commutes with sign flips, "
        "max-pooling does not), sign activations, binary output layer.",
        {"channels": [64, 128, 256], "hidden": [], "kernel_size": 3},
        True,
        _build_binary_conv,
    ),
    "committee": ArchSpec(
        "Binary committee machine: one binary hidden layer of K sign units, read out by a fixed +1 "
        "majority vote; 2 classes (paper: K = 101 on Hidden Manifold data).",
        {"hidden": 101},
        True,
        _build_committee,
    ),
}


def architecture_schema(name: str) -> dict[str, Any]:
    """The default config of architecture ``name`` (a fresh JSON-able dict; built-in, plugin or library model)."""
    import copy

    from toroid.worker.landscape.registry import get_architecture

    return copy.deepcopy(get_architecture(name).defaults)


def is_binary_architecture(name: str) -> bool:
    """True when the architecture ``name`` is binary (docs/method.md §4); ``False`` for continuous and for unknown
    names (the caller that needs the name to exist checks that itself)."""
    from toroid.worker.landscape.registry import get_architecture

    try:
        return bool(get_architecture(name).binary)
    except ValueError:
        return False


def _dataset_shape(dataset: Any) -> tuple[tuple[int, ...], int]:
    if hasattr(dataset, "input_shape") and hasattr(dataset, "num_classes"):
        return tuple(int(s) for s in dataset.input_shape), int(dataset.num_classes)
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        shape, classes = dataset
        if isinstance(shape, int):
            shape = (shape,)
        if (
            isinstance(shape, (tuple, list))
            and shape
            and all(isinstance(s, int) and s > 0 for s in shape)
            and isinstance(classes, int)
            and classes >= 2
        ):
            return tuple(int(s) for s in shape), int(classes)
    raise ValueError(
        f"dataset must be a Dataset or a tuple (input_shape, num_classes) such as ((1, 8, 8), 10); got {dataset!r}"
    )


def build_model(
    name: str,
    config: dict[str, Any] | None,
    dataset: Any,
    *,
    seed: int | None = None,
) -> nn.Module:
    """Build architecture ``name`` with ``config`` (missing keys take the defaults) for ``dataset``.

    ``dataset`` is a :class:`~toroid.worker.landscape.data.Dataset` or a tuple ``(input_shape, num_classes)``.
    ``seed`` fixes the initialization without touching the global RNG state (``None``: global RNG).
    The model gets an attribute ``toroid_spec`` = ``{"name", "config", "input_shape", "num_classes",
    "binary"}`` describing how it was built.

    Raises:
        ValueError: unknown architecture or config key (the message lists the valid ones), bad
            config values, or a dataset the architecture cannot take.
    """
    from toroid.worker.landscape.registry import check_output, get_architecture, library_defaults

    spec = get_architecture(name)
    config = dict(config or {})
    unknown = sorted(set(config) - set(spec.defaults))
    if unknown and not spec.open_config:
        raise ValueError(f"architecture {name!r} has no config key(s) {unknown}; valid keys: {sorted(spec.defaults)}")
    input_shape, num_classes = _dataset_shape(dataset)
    full = {**architecture_schema(name), **library_defaults(spec, input_shape, num_classes), **config}
    try:
        if seed is None:
            model = spec.builder(full, input_shape, num_classes)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                model = spec.builder(full, input_shape, num_classes)
    except (TypeError, ValueError) as exc:  # a library's or plugin's own check of its keyword arguments
        if spec.source == "builtin":
            raise
        raise ValueError(f"architecture {name!r} with config {full}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ValueError(f"architecture {name!r}: its builder returned {type(model).__name__}, not an nn.Module")
    if spec.source != "builtin" and all(t.device.type == "meta" for t in model.state_dict().values()):
        check_output(model, name, input_shape, num_classes)  # built on the meta device: costs nothing
    model.toroid_spec = {
        "name": name,
        "config": full,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "binary": spec.binary,
    }
    return model


def model_spec(model: nn.Module) -> dict[str, Any] | None:
    """The ``toroid_spec`` dict :func:`build_model` attached to ``model`` (``None`` for other modules)."""
    return getattr(model, "toroid_spec", None)
