"""Hostile uploads on a real stack answer 4xx, never 500, and store nothing: integers beyond any database column,
JSON nested past the parser's stack, names that hide or reverse text, unknown samplers, oversized form fields; and
no answer shows the server's absolute paths."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.conftest import MINIMUM_CONFIG, ApiStack
from tests.security.stacks import api_only
from toroid.worker.landscape.io import make_sidecar, state_dict_bytes

pytestmark = pytest.mark.integration

FORM = {"architecture": "mlp", "config": json.dumps(MINIMUM_CONFIG), "dataset": "digits"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> ApiStack:
    yield from api_only(tmp_path_factory, "uploads")


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    """A digits MLP (widths [32]) as safetensors: an untrained one is a valid checkpoint."""
    from toroid.worker.landscape.nets import build_model

    return state_dict_bytes(build_model("mlp", MINIMUM_CONFIG, ((64,), 10), seed=0))


def sidecar(checkpoint: bytes, **changes) -> bytes:
    meta = make_sidecar(name="m", architecture="mlp", config=MINIMUM_CONFIG, dataset="digits",
                        checkpoint="m.safetensors", sha256="0" * 64, provenance={"sampler": "sgd", "seed": 1})
    for key, value in changes.items():
        if key.startswith("provenance_"):
            meta["provenance"][key.removeprefix("provenance_")] = value
        else:
            meta[key] = value
    return json.dumps(meta).encode()


def with_sidecar(url: str, checkpoint: bytes, side: bytes | str, **fields) -> httpx.Response:
    return httpx.post(f"{url}/api/minima", timeout=60, data=fields,
                      files={"file": ("m.safetensors", checkpoint), "sidecar": ("m.json", side)})


def with_form(url: str, checkpoint: bytes, **fields) -> httpx.Response:
    return httpx.post(f"{url}/api/minima", timeout=60, data={**FORM, **fields},
                      files={"file": ("m.safetensors", checkpoint)})


def stored(stack: ApiStack) -> tuple[int, set[str]]:
    return stack.count("SELECT COUNT(*) FROM minima"), stack.artifacts()


def refused(response: httpx.Response, status: int, *phrases: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for phrase in phrases:
        assert phrase in detail, detail


@pytest.mark.parametrize(("seed", "phrase"), [
    (10**30, "got 10000000000000000000... (31 digits)"), (2**63, "9223372036854775808"), (2**31, "2147483648"),
    (-1, "got -1"), ("7", "got '7'"), (True, "got True"), (1.5, "got 1.5"),
])
def test_a_seed_outside_the_integer_range_is_422(stack, checkpoint, seed, phrase):
    before = stored(stack)
    response = with_sidecar(stack.url, checkpoint, sidecar(checkpoint, provenance_seed=seed))
    refused(response, 422, "provenance.seed must be an integer in [0, 2147483647]", phrase)
    assert stored(stack) == before


def test_a_seed_in_range_is_kept(stack, checkpoint):
    response = with_sidecar(stack.url, checkpoint, sidecar(checkpoint, provenance_seed=2**31 - 1,
                                                         provenance_sampler="rsgd", name="max seed"))
    assert response.status_code == 201, response.text
    assert (response.json()["seed"], response.json()["sampler"]) == (2**31 - 1, "rsgd")


@pytest.mark.parametrize("sampler", ["evil", "SGD", 5, ["sgd"]])
def test_an_unknown_sampler_in_the_sidecar_is_422(stack, checkpoint, sampler):
    before = stored(stack)
    response = with_sidecar(stack.url, checkpoint, sidecar(checkpoint, provenance_sampler=sampler))
    refused(response, 422, "is not a known sampler", "'sgd'")
    assert stored(stack) == before


@pytest.mark.parametrize("levels", [40, 600, 100_000])
def test_deep_json_in_the_sidecar_or_config_is_422(stack, checkpoint, levels):
    before = stored(stack)
    nested = "[" * levels + "]" * levels
    side = sidecar(checkpoint).decode().replace('"provenance": {', '"provenance": {"deep": ' + nested + ", ", 1)
    refused(with_sidecar(stack.url, checkpoint, side), 422, "the sidecar nests arrays and objects",
            f"{levels + 2} levels deep; at most 32")
    deep_config = '{"widths": [32], "x": ' + nested + "}"
    if len(deep_config) < 2**20:  # a form field's limit
        refused(with_form(stack.url, checkpoint, config=deep_config), 422, "config nests arrays and objects")
    assert stored(stack) == before


@pytest.mark.parametrize(("name", "code", "kind"), [
    ("evil\u202etxt.exe", "U+202E RIGHT-TO-LEFT OVERRIDE", "a bidirectional override"),
    ("a\u2066b", "U+2066 LEFT-TO-RIGHT ISOLATE", "a bidirectional isolate"),
    ("nul\x00byte", "U+0000", "a control character"),
    ("bell\x07", "U+0007", "a control character"),
    ("del\x7f", "U+007F", "a control character"),
    ("c\x85one", "U+0085", "a control character"),
    ("zero\u200bwidth", "U+200B ZERO WIDTH SPACE", "an invisible format character"),
    ("bom\ufeff", "U+FEFF ZERO WIDTH NO-BREAK SPACE", "an invisible format character"),
])
def test_names_with_hidden_or_reversing_characters_are_422(stack, checkpoint, name, code, kind):
    before = stored(stack)
    refused(with_form(stack.url, checkpoint, name=name), 422, f"name contains {kind}, {code}")
    refused(with_sidecar(stack.url, checkpoint, sidecar(checkpoint, name=name)), 422,
            f"the sidecar's name contains {kind}, {code}")
    assert stored(stack) == before


def test_ordinary_unicode_names_are_kept(stack, checkpoint):
    name = "Übung α-β 深度 🙂 (seed 3)"
    response = with_form(stack.url, checkpoint, name=name)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name
    unnamed = httpx.post(f"{stack.url}/api/minima", data=FORM, timeout=60,
                         files={"file": ("run\u202e7.safetensors", checkpoint)})
    assert unnamed.status_code == 201 and unnamed.json()["name"] == "run7"  # a file name's stem, cleaned


def test_an_oversized_form_field_is_413_about_the_field_limit(stack, checkpoint):
    before = stored(stack)
    response = with_form(stack.url, checkpoint, name="x" * (2**20 + 10))
    refused(response, 413, "exceeds the limit of 1 MiB for a form field")
    assert "512 MiB" not in response.json()["detail"]
    big_sidecar = sidecar(checkpoint, provenance_padding="x" * (2**20 + 10))
    refused(with_sidecar(stack.url, checkpoint, big_sidecar), 413, "the sidecar exceeds the limit of 1 MiB")
    assert stored(stack) == before


def test_messages_name_no_absolute_server_path(stack, checkpoint):
    home = str(stack.home)
    missing = with_form(stack.url, checkpoint, dataset="npz", dataset_options=json.dumps({"path": "nothere.npz"}))
    outside = with_form(stack.url, checkpoint, dataset="npz", dataset_options=json.dumps({"path": "/etc/passwd"}))
    for response in (missing, outside):
        assert response.status_code == 422, response.text
        assert home not in response.text and "/tmp" not in response.text, response.text
        assert "TOROID_DATA_ROOT" in response.json()["detail"], response.text  # named, not spelled out
    assert "must lie under" in outside.json()["detail"]
