"""Architecture names beyond the built-ins: a lab's package through the ``toroid.architectures`` entry-point group
(a real distribution on sys.path, found by importlib.metadata like an installed one), its failures, and the names
the registry refuses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from toroid.worker.landscape import registry
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.symmetry import normalize

PLUGIN_CODE = '''
"""A lab's own models."""
import torch
from torch import nn


class LabMLP(nn.Module):
    """An MLP of the lab's own: encoder/decoder names instead of Toroid's."""

    def __init__(self, hidden: int, inputs: int, classes: int):
        super().__init__()
        self.encoder = nn.Linear(inputs, hidden)
        self.act = nn.ReLU()
        self.decoder = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.decoder(self.act(self.encoder(torch.flatten(x, 1))))


def lab_mlp(config, input_shape, num_classes):
    """Lab MLP: one hidden ReLU layer."""
    inputs = 1
    for side in input_shape:
        inputs *= side
    return LabMLP(int(config.get("hidden", 24)), inputs, num_classes)


spec = {"builder": lab_mlp, "defaults": {"hidden": 24}, "description": "Lab MLP with a hidden width"}


def fixed(config, input_shape, num_classes):
    """Always 64 inputs and 10 classes, whatever the dataset."""
    return LabMLP(8, 64, 10)
'''


def write_distribution(root: Path, entries: dict[str, str], code: str = PLUGIN_CODE) -> Path:
    """A package ``lab_models`` and its dist-info (METADATA + entry_points.txt) under ``root``, as pip would
    install them into site-packages."""
    (root / "lab_models").mkdir(parents=True, exist_ok=True)
    (root / "lab_models" / "__init__.py").write_text(textwrap.dedent(code))
    info = root / "lab_models-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-models\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[toroid.architectures]\n{lines}\n")
    return root


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    write_distribution(tmp_path, {
        "lab_mlp": "lab_models:spec",
        "lab_plain": "lab_models:lab_mlp",
        "lab_fixed": "lab_models:fixed",
        "lab_missing": "lab_models.nowhere:thing",
        "mlp": "lab_models:lab_mlp",
        "Bad-Name": "lab_models:lab_mlp",
        "lab_number": "lab_models:__doc__",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.plugin_architectures(reload=True)
    yield tmp_path
    monkeypatch.undo()
    registry.plugin_architectures(reload=True)


def test_a_packages_entry_points_become_architectures(plugins):
    found = registry.plugin_architectures()
    assert set(found) == {"lab_mlp", "lab_plain", "lab_fixed"}
    assert found["lab_mlp"].defaults == {"hidden": 24} and found["lab_mlp"].source == "plugin"
    assert found["lab_plain"].open_config and found["lab_plain"].description == "Lab MLP: one hidden ReLU layer."
    assert registry.architecture_source("lab_mlp") == "plugin"
    assert list(registry.available_architectures())[-3:] == ["lab_mlp", "lab_plain", "lab_fixed"]  # after built-ins

    model = build_model("lab_mlp", {"hidden": 12}, ((1, 8, 8), 10), seed=0)
    assert [tuple(t.shape) for t in model.state_dict().values()] == [(12, 64), (12,), (10, 12), (10,)]
    assert model.toroid_spec["config"] == {"hidden": 12}
    x = torch.randn(16, 1, 8, 8)
    # docs/method.md §2: the last layer's scale is fixed too, so the logits scale; the predictions stay
    assert torch.equal(normalize(model)(x).argmax(1), model(x).argmax(1))
    with pytest.raises(ValueError, match="no config key"):
        build_model("lab_mlp", {"depth": 3}, ((1, 8, 8), 10))


def test_broken_or_clashing_plugins_are_left_out_and_named(plugins):
    problems = "\n".join(registry.plugin_problems())
    assert "lab_missing" in problems and "ModuleNotFoundError" in problems
    assert "'mlp'" in problems and "'Bad-Name'" in problems  # a built-in is never replaced
    assert "lab_number" in problems and "not an ArchSpec" in problems
    assert registry.get_architecture("mlp").source == "builtin"


def test_a_plugin_whose_network_does_not_fit_the_dataset_is_refused_when_built(plugins):
    from toroid.store.loading import template_state

    template, config = template_state("lab_plain", {"hidden": 8}, (3, 8, 8), 10)  # built on meta: checked, free
    assert config == {"hidden": 8}
    assert [(k, tuple(t.shape)) for k, t in template.items()][:1] == [("encoder.weight", (8, 192))]
    with pytest.raises(ValueError, match=r"cannot read inputs of shape \(3, 8, 8\)"):
        template_state("lab_fixed", {}, (3, 8, 8), 10)
    with pytest.raises(ValueError, match="not 5 class logits"):
        template_state("lab_fixed", {}, (1, 8, 8), 5)


@pytest.mark.parametrize("name, phrase", [
    ("nope", "unknown architecture 'nope'"),
    ("x" * 65, "at most 64 characters"),
    ("torchvision:", "give a model name"),
    ("timm:../../etc", "give a model name"),
    ("torchvision:not_a_model_at_all", "has no model"),
])
def test_names_the_registry_refuses(name, phrase):
    with pytest.raises(ValueError, match=phrase):
        registry.get_architecture(name)
