"""``toroid.store.text``: the name check, the JSON depth checks (linear time even on hostile text) and the path
redaction the API applies to its messages."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from toroid.store.errors import Invalid
from toroid.store.text import (
    MAX_JSON_DEPTH,
    check_json_depth,
    check_json_text,
    check_name,
    clean_name,
    json_text_depth,
    relative_paths,
)


@pytest.mark.parametrize("name", ["sgd-0", "Übung α-β 深度 🙂", "a b\u00a0c", "x" * 200])
def test_ordinary_names_pass(name):
    assert check_name(name) == name


@pytest.mark.parametrize(("name", "phrase"), [
    ("a\u202eb", "a bidirectional override, U+202E RIGHT-TO-LEFT OVERRIDE, at index 1"),
    ("\u2069", "a bidirectional isolate, U+2069"),
    ("a\x00", "a control character, U+0000"),
    ("a\x9fb", "a control character, U+009F"),
    ("a\u00adb", "an invisible format character, U+00AD SOFT HYPHEN"),
    ("a\u2028b", "a line or paragraph separator, U+2028"),
    ("a\ud800", "a lone surrogate, U+D800,"),
    ("x" * 201, "longer than 200 characters"),
])
def test_hiding_characters_are_named(name, phrase):
    with pytest.raises(Invalid, match="name") as caught:
        check_name(name)
    assert phrase in str(caught.value)
    if len(name) <= 200:
        assert check_name(clean_name(name)) == clean_name(name) != name


def test_json_depth_skips_strings_and_counts_nesting():
    assert json_text_depth('{"a": "[[[[\\"{{", "b": [1, {"c": []}]}') == 4
    assert json_text_depth(b"17") == 0
    check_json_text("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, "body")
    with pytest.raises(Invalid, match="33 levels deep; at most 32"):
        check_json_text("[" * 33 + "]" * 33, "body")
    check_json_depth(json.loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH), "value")
    with pytest.raises(Invalid, match="deeper than 32"):
        check_json_depth({"a": json.loads("[" * 40 + "]" * 40)}, "value")


@pytest.mark.parametrize("text", ['"\\' * 500_000, '"' * 1_000_000, '["' + "\\" * 1_000_000, "[" * 1_000_000])
def test_json_depth_is_linear_on_hostile_text(text):
    started = time.perf_counter()
    json_text_depth(text)
    assert time.perf_counter() - started < 1.0  # a backtracking string pattern took minutes here


def test_relative_paths_hide_the_server_folders(tmp_path):
    root = tmp_path / "home" / "datasets"
    message = f"file '{root}/x.npz' does not exist under {tmp_path / 'home'}"
    shown = relative_paths(message, {"$TOROID_DATA_ROOT": root, "$TOROID_HOME": tmp_path / "home"})
    assert shown == "file '$TOROID_DATA_ROOT/x.npz' does not exist under $TOROID_HOME"
    assert relative_paths("nothing here", {"$X": Path("/"), "$Y": None}) == "nothing here"
