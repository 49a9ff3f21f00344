"""The upload form's model helpers in a real headless Chromium against a real `toroid up` stack (no mocks).

* "What the checkpoint must hold" lists the keys of the chosen architecture on the chosen dataset from
  GET /api/architectures/<name>/layout, follows the config, and shows the API's message for a bad one.
* A digits MLP saved from an ``nn.Sequential`` (keys ``1.weight``, ...) gets the API's proposed key map as a table;
  "Rename and add" sends it again with ``key_map=auto`` and the minimum is listed with ``provenance.key_map``.
* ``test_pt2_*``: torch.export ``.pt2`` programs. Staging one hides the architecture fields (dashboard only); adding
  one needs the server to accept .pt2 uploads (docs/api.md).

Screenshots (1440x900) of each state go to ``tmp_path`` and to TOROID_SCREENSHOTS=<dir> when set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.browser.pages import keep_evidence, open_dashboard

pytestmark = pytest.mark.browser

CONFIG = {"widths": [32]}
SEQUENTIAL_KEYS = {"1.weight": "fc1.weight", "1.bias": "fc1.bias", "3.weight": "out.weight", "3.bias": "out.bias"}


@pytest.fixture(scope="module")
def api(stack):
    with httpx.Client(base_url=f"{stack.url}/api", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def ui(browser, stack):
    context, page = open_dashboard(browser, stack.url)
    page.locator("#tabs").get_by_text("Add minima", exact=True).click()
    page.wait_for_selector("#upload-layout[data-state=ok]", timeout=30_000)  # the catalog chose mlp on digits
    yield page
    context.close()


@pytest.fixture(autouse=True)
def evidence_on_failure(request, tmp_path):
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before and "ui" in request.fixturenames:
        keep_evidence(request.getfixturevalue("ui"), tmp_path,
                      ["upload-message", "upload-layout", "upload-files", "upload-keymap", "upload-symmetries"])


def shoot(page, tmp_path: Path, name: str, top: str | None = None) -> Path:
    """A screenshot of the viewport scrolled so that ``top`` is near its top edge (None: the page's top)."""
    page.evaluate("(s) => window.scrollTo(0, s ? document.querySelector(s).getBoundingClientRect().top + scrollY - 130"
                  " : 0)", top)
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 5_000
    target = os.environ.get("TOROID_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / path.name).write_bytes(path.read_bytes())
    return path


def set_config(page, config: str) -> None:
    page.fill("#upload-config", config)


def layout_answer(api, config: dict, architecture: str = "mlp") -> httpx.Response:
    return api.get(f"/architectures/{architecture}/layout",
                   params={"dataset": "digits", "config": json.dumps(config), "dataset_options": "{}"})


def sequential_mlp(path: Path) -> Path:
    """A digits MLP as a lab would save it from its own ``nn.Sequential``: the weights of a built ``mlp`` (widths
    [32]) under the keys 1.weight, 1.bias, 3.weight, 3.bias."""
    import torch
    from safetensors.torch import save_file
    from torch import nn

    from toroid.worker.landscape.nets import build_model

    built = build_model("mlp", CONFIG, ((1, 8, 8), 10), seed=3).state_dict()
    sequential = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        for ours, theirs in SEQUENTIAL_KEYS.items():
            sequential.state_dict()[ours].copy_(built[theirs])
    save_file({k: v.contiguous() for k, v in sequential.state_dict().items()}, str(path))
    return path


def test_layout_panel_follows_the_architecture_and_config(ui, api, tmp_path):
    expected = layout_answer(api, CONFIG).json()
    set_config(ui, json.dumps(CONFIG))
    ui.wait_for_selector("#upload-layout tr[data-key='fc1.weight'][data-shape='32x64']", timeout=20_000)
    assert "32 × 64" in ui.inner_text("#upload-layout tr[data-key='fc1.weight']")
    summary = ui.inner_text("#upload-layout .layout-summary")
    assert f"{expected['parameters']:,} parameters" in summary and "1 × 8 × 8" in summary and "10 classes" in summary
    shown = ui.evaluate("() => [...document.querySelectorAll('#upload-layout tr[data-key]')].map(r => r.dataset.key)")
    assert shown == [t["key"] for t in expected["tensors"]][:12]
    shoot(ui, tmp_path, "upload-layout")

    set_config(ui, '{"widths": [16, 8]}')
    ui.wait_for_selector("#upload-layout tr[data-key='out.weight'][data-shape='10x8']", timeout=20_000)
    assert ui.get_attribute("#upload-layout tr[data-key='fc1.weight']", "data-shape") == "16x64"

    bad = {"widths": "x"}
    answer = layout_answer(api, bad)
    assert answer.status_code == 422
    set_config(ui, json.dumps(bad))
    ui.wait_for_selector("#upload-layout[data-state=error]", timeout=20_000)
    assert ui.inner_text("#upload-layout .message.error") == answer.json()["detail"]
    shoot(ui, tmp_path, "upload-layout-error")

    # a library model typed by hand is used instead of the dropdown (its layout, or why this server has none)
    library = layout_answer(api, {}, "torchvision:resnet18")
    ui.fill("#upload-library", "torchvision:resnet18")
    ui.press("#upload-library", "Enter")
    ui.wait_for_function("() => document.querySelector('#upload-config').value === '{}'", timeout=20_000)
    if library.status_code == 200:
        ui.wait_for_selector("#upload-layout tr[data-key='conv1.weight']", timeout=60_000)
    else:
        ui.wait_for_function("(t) => document.querySelector('#upload-layout .message.error')?.innerText === t",
                             arg=library.json()["detail"], timeout=20_000)
    ui.fill("#upload-library", "")
    ui.press("#upload-library", "Enter")
    ui.wait_for_selector("#upload-layout[data-state=ok]", timeout=20_000)  # back to mlp with its defaults
    assert json.loads(ui.input_value("#upload-config")) == layout_answer(api, {}).json()["config"]
    assert not ui.errors


def test_sequential_upload_is_renamed_and_added(ui, api, tmp_path):
    checkpoint = sequential_mlp(tmp_path / "sequential-digits.safetensors")
    set_config(ui, json.dumps(CONFIG))
    ui.fill("#upload-name", "sequential-digits")
    ui.set_input_files("#upload-drop input[type=file]", str(checkpoint))
    ui.wait_for_selector("#upload-files code:has-text('sequential-digits.safetensors')")
    ui.click("#upload-submit")
    ui.wait_for_selector("#upload-message[data-kind=keymap]", timeout=30_000)
    assert "key_map" in ui.inner_text("#upload-message")
    ui.wait_for_selector("#upload-keymap-table tr[data-from='1.weight'][data-to='fc1.weight']")
    pairs = ui.evaluate("() => [...document.querySelectorAll('#upload-keymap-table tr[data-from]')]"
                        ".map(r => [r.dataset.from, r.dataset.to])")
    assert dict(pairs) == SEQUENTIAL_KEYS
    shoot(ui, tmp_path, "upload-keymap", "#upload-submit")

    ui.click("#upload-keymap-accept")
    ui.wait_for_selector("#upload-message[data-kind=ok]", timeout=30_000)
    assert "sequential-digits" in ui.inner_text("#upload-message")
    ui.wait_for_selector("#upload-keymap", state="hidden", timeout=10_000)
    added = [m for m in api.get("/minima").json() if m["name"] == "sequential-digits"]
    assert len(added) == 1, added
    assert added[0]["architecture"] == "mlp" and added[0]["config"] == CONFIG
    assert added[0]["provenance"]["key_map"] == SEQUENTIAL_KEYS
    shoot(ui, tmp_path, "upload-keymap-added", "#upload-submit")
    assert not ui.errors


def exported_mlp(path: Path) -> Path:
    """A torch.export program of a digits MLP (an nn.Sequential: no architecture name needed), batch dimension
    dynamic so that it reads the dataset in batches."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    program = torch.export.export(model, (torch.randn(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return path


def test_pt2_staged_hides_the_architecture_fields(ui, tmp_path):
    program = exported_mlp(tmp_path / "exported-digits.pt2")
    ui.set_input_files("#upload-drop input[type=file]", str(program))
    ui.wait_for_selector("#upload-pt2-note", timeout=20_000)
    for field in ("#upload-architecture-field", "#upload-library-field", "#upload-config-field"):
        assert not ui.is_visible(field), field
    ui.wait_for_selector("#upload-layout[data-state=pt2]", timeout=20_000)
    assert ui.is_visible("#upload-dataset") and ui.is_visible("#upload-name")
    assert ui.inner_text("#upload-message") == ""  # the last upload's message is about another file
    shoot(ui, tmp_path, "upload-pt2-staged")
    ui.set_input_files("#upload-drop input[type=file]", str(sequential_mlp(tmp_path / "back.safetensors")))
    ui.wait_for_selector("#upload-architecture-field", state="visible", timeout=20_000)
    ui.wait_for_selector("#upload-layout[data-state=ok]", timeout=20_000)


def test_pt2_upload_is_added_with_its_symmetries(ui, api, tmp_path):
    """A custom CNN with BatchNorm and a residual block, exported, dropped on the upload control (docs/models.md)."""
    import torch

    from tests.integration.test_api_programs import ResidualCNN

    program = tmp_path / "residual-cnn.pt2"
    torch.export.save(torch.export.export(ResidualCNN().eval(), (torch.randn(2, 1, 8, 8),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},)), str(program))
    ui.fill("#upload-name", "residual-cnn")
    ui.set_input_files("#upload-drop input[type=file]", str(program))
    ui.wait_for_selector("#upload-pt2-note", timeout=20_000)
    ui.click("#upload-submit")
    ui.wait_for_function("""() => {
        const m = document.querySelector('#upload-message');
        return m.dataset.kind === 'error' || (m.dataset.kind === 'ok' && m.innerText.includes('residual-cnn'));
    }""", timeout=60_000)
    assert ui.get_attribute("#upload-message", "data-kind") == "ok", ui.inner_text("#upload-message")
    added = [m for m in api.get("/minima").json() if m["name"] == "residual-cnn"]
    assert len(added) == 1 and added[0]["architecture"] == "export", added
    assert any(g["residual"] for g in added[0]["symmetries"]["groups"])  # the block's residual stream
    ui.wait_for_selector("#upload-symmetries:has-text('unit group')")
    shoot(ui, tmp_path, "upload-pt2-added", "#upload-submit")
