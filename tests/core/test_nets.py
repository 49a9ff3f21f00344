"""Architecture registry (nets.py) and device choice (device.py)."""

from __future__ import annotations

import pytest
import torch
import torch.fx as fx
from safetensors.torch import load_file, save_file
from torch import nn

from tests.core.conftest import SMALL_BINARY, SMALL_CONTINUOUS, case_id, inputs
from toroid.worker.landscape import ARCHITECTURES, build_model
from toroid.worker.landscape.data import load_dataset
from toroid.worker.landscape.device import default_device
from toroid.worker.landscape.nets import BinaryLinear, architecture_schema, binarize, model_spec, sign_ste


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_architecture_builds_for_its_datasets_with_defaults_or_small_configs():
    digits = load_dataset("digits")
    for name in ARCHITECTURES:
        if name == "committee":
            model = build_model(name, None, ((30,), 2), seed=0)
            assert model(torch.randn(5, 30)).shape == (5, 2)
            continue
        config = {
            "mlp": {"widths": [32]},
            "lenet": None,
            "vgg": {"width_scale": 1 / 16},
            "resnet": {"width": 4},
            "binary_mlp": {"widths": [31]},
            "binary_conv": {"channels": [4, 8]},
        }[name]
        model = build_model(name, config, digits, seed=0).eval()
        assert model(digits.x_test[:7]).shape == (7, 10), name
        spec = model_spec(model)
        assert spec is not None and spec["name"] == name and spec["binary"] == ARCHITECTURES[name].binary


def test_paper_sized_architectures():
    """docs/method.md §9: MLP 2x512, LeNet 20-50-500, VGG16-BN, CIFAR ResNet-18, 3x1001 binary MLP."""
    mlp = build_model("mlp", None, ((1, 28, 28), 10))
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [512, 512, 10]
    lenet = build_model("lenet", None, ((1, 28, 28), 10))
    convs = [m for m in lenet.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [(20, (5, 5), (0, 0)), (50, (5, 5), (0, 0))]
    assert lenet.fc1.in_features == 50 * 4 * 4 and lenet.fc1.out_features == 500
    small = build_model("lenet", None, ((1, 8, 8), 10))  # kernels adapt to 8x8 digits
    assert [m.kernel_size for m in small.modules() if isinstance(m, nn.Conv2d)] == [(3, 3), (3, 3)]
    assert small.fc1.in_features == 50 * 2 * 2
    vgg = build_model("vgg", None, ((3, 32, 32), 10))
    assert sum(isinstance(m, nn.Conv2d) for m in vgg.modules()) == 13
    assert sum(isinstance(m, nn.BatchNorm2d) for m in vgg.modules()) == 13
    assert count(vgg) == 14_728_266 - 4224  # the usual CIFAR VGG16-BN, without conv biases (BN absorbs them)
    assert count(build_model("resnet", None, ((3, 32, 32), 10))) == 11_173_962  # CIFAR ResNet-18
    binary = build_model("binary_mlp", None, ((1, 28, 28), 10))
    assert [m.out_features for m in binary.modules() if isinstance(m, BinaryLinear)] == [1001, 1001, 1001, 10]
    assert sum(isinstance(m, nn.MaxPool2d) for m in build_model("binary_conv", None, ((3, 32, 32), 10)).modules()) == 0


def test_vgg_width_scale_and_depth():
    vgg = build_model("vgg", {"depth": 11, "width_scale": 0.25}, ((3, 32, 32), 10))
    widths = [m.out_channels for m in vgg.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [16, 32, 64, 64, 128, 128, 128, 128]


def test_unknown_names_and_bad_configs_raise_clear_errors():
    with pytest.raises(ValueError, match="choose one of.*mlp"):
        build_model("transformer", None, ((4,), 2))
    with pytest.raises(ValueError, match=r"valid keys: \['widths'\]"):
        build_model("mlp", {"depth": 3}, ((4,), 2))
    with pytest.raises(ValueError, match="depth must be one of"):
        build_model("vgg", {"depth": 12}, ((3, 32, 32), 10))
    with pytest.raises(ValueError, match="positive integers"):
        build_model("mlp", {"widths": [10, -1]}, ((4,), 2))
    with pytest.raises(ValueError, match="image inputs"):
        build_model("lenet", None, ((100,), 2))
    with pytest.raises(ValueError, match="2 classes"):
        build_model("committee", None, ((10,), 3))
    with pytest.raises(ValueError, match="input_shape, num_classes"):
        build_model("mlp", None, "digits")
    with pytest.raises(ValueError, match="choose one of"):
        architecture_schema("nope")
    assert architecture_schema("vgg")["depth"] == 16


def test_seed_fixes_the_initialization_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_model("mlp", {"widths": [8]}, ((4,), 2), seed=7)
    assert torch.equal(torch.rand(3), expected)
    b = build_model("mlp", {"widths": [8]}, ((4,), 2), seed=7)
    c = build_model("mlp", {"widths": [8]}, ((4,), 2), seed=8)
    assert torch.equal(a.fc1.weight, b.fc1.weight)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


@pytest.mark.parametrize("case", SMALL_CONTINUOUS + SMALL_BINARY, ids=case_id)
def test_models_are_fx_traceable_and_state_dict_is_the_checkpoint(case, tmp_path):
    name, config, data = case
    model = build_model(name, config, data, seed=0).eval()
    x = inputs(data, n=8)
    from toroid.worker.landscape.symmetry import unit_graph

    assert unit_graph(model).groups  # traced by the symmetry module's tracer
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    fresh = build_model(name, config, data, seed=1).eval()
    fresh.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    if name in ("mlp", "lenet", "vgg", "resnet"):
        traced = fx.symbolic_trace(model)
        with torch.no_grad():
            torch.testing.assert_close(traced(x), model(x))


def test_binary_layers_use_pm1_weights_and_train_through_the_straight_through_gradient():
    model = build_model("binary_mlp", {"widths": [21, 21]}, ((12,), 3), seed=0)
    for m in model.modules():
        if isinstance(m, BinaryLinear):
            assert set(m.binary_weight().unique().tolist()) <= {-1.0, 1.0}
            assert m.bias is None
    x = torch.randn(16, 12)
    y = model(x)
    # function depends only on the signs of the latent weights
    scaled = build_model("binary_mlp", {"widths": [21, 21]}, ((12,), 3))
    scaled.load_state_dict({k: v * 3.7 for k, v in model.state_dict().items()})
    assert torch.equal(scaled(x), y)
    # straight-through: gradients reach every latent weight tensor
    loss = nn.functional.cross_entropy(y, torch.randint(0, 3, (16,)))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # an optimizer step on the latent weights changes the binary function eventually
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    opt.step()
    assert not torch.equal(model(x), y)


def test_sign_functions():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    assert sign_ste(x).tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0]
    assert binarize(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    sign_ste(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_committee_machine_has_fixed_output_weights_outside_the_checkpoint():
    model = build_model("committee", {"hidden": 5}, ((8,), 2), seed=0)
    assert list(model.state_dict()) == ["hidden.weight"]
    assert [n for n, _ in model.named_parameters()] == ["hidden.weight"]
    x = torch.randn(10, 8)
    votes = torch.sign(torch.nn.functional.linear(x, binarize(model.hidden.weight))).sum(1)
    assert torch.equal(model(x).argmax(1), (votes > 0).long())


def test_default_device(monkeypatch):
    monkeypatch.setenv("TOROID_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.setenv("TOROID_DEVICE", "warp-drive")
    with pytest.raises(ValueError, match="TOROID_DEVICE"):
        default_device()
    monkeypatch.delenv("TOROID_DEVICE")
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("TOROID_DEVICE", "cuda")
        with pytest.raises(ValueError, match="CUDA"):
            default_device()
