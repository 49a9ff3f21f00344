"""Checks of untrusted text: names a person will read, JSON nesting, absolute server paths in messages.

``check_name`` refuses characters that hide or disguise text where a name is shown (control characters,
bidirectional overrides and isolates, other invisible format characters, lone surrogates, line separators);
``check_json_text`` refuses JSON nested deeper than ``MAX_JSON_DEPTH`` before it is parsed (the parser and every
recursive walk of the value would otherwise run out of stack); ``check_json_depth`` does the same for a parsed value;
``relative_paths`` replaces the server's own folders in a message by their setting's name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toroid.store.errors import Invalid

#: The deepest nesting of objects and arrays accepted in any JSON a client sends (bodies, sidecars, form fields).
MAX_JSON_DEPTH = 32

_BIDI_OVERRIDES = {0x202A, 0x202B, 0x202C, 0x202D, 0x202E}
_BIDI_ISOLATES = {0x2066, 0x2067, 0x2068, 0x2069}
#: A JSON string; an unterminated one runs to the end (so every match succeeds where it starts: linear time).
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _kind(char: str) -> str | None:
    """What is wrong with ``char`` in a name, or None when it may appear there."""
    code, category = ord(char), unicodedata.category(char)
    if code in _BIDI_OVERRIDES:
        return "a bidirectional override"
    if code in _BIDI_ISOLATES:
        return "a bidirectional isolate"
    if category == "Cc":
        return "a control character"
    if category == "Cf":
        return "an invisible format character"
    if category == "Cs":
        return "a lone surrogate"
    if category in ("Zl", "Zp"):
        return "a line or paragraph separator"
    return None


def check_name(value: Any, what: str = "name", *, max_length: int | None = 200) -> str:
    """``value`` when it is a string fit to show as a name; ``Invalid`` (422) naming the first bad character."""
    if not isinstance(value, str):
        raise Invalid(f"{what} must be a string, got {type(value).__name__}")
    if max_length is not None and len(value) > max_length:
        raise Invalid(f"{what} is longer than {max_length} characters")
    for index, char in enumerate(value):
        kind = _kind(char)
        if kind is not None:
            label = unicodedata.name(char, "") if kind != "a lone surrogate" else ""
            raise Invalid(
                f"{what} contains {kind}, U+{ord(char):04X}{' ' + label if label else ''}, at index {index}: names "
                "may not contain control characters, bidirectional overrides or isolates, or other invisible "
                "format characters; remove it"
            )
    return value


def clean_name(value: str) -> str:
    """``value`` without the characters ``check_name`` refuses (for names derived from a file name)."""
    return "".join(char for char in value if _kind(char) is None)


def json_text_depth(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects in JSON text, found without parsing it (strings are skipped)."""
    import numpy as np

    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    brackets = np.frombuffer(_STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS), dtype=np.uint8)
    if brackets.size == 0:
        return 0
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1)
    return max(0, int(np.cumsum(steps).max()))


def check_json_text(data: bytes | str, what: str, limit: int = MAX_JSON_DEPTH) -> None:
    """``Invalid`` (422) when the JSON text nests arrays and objects deeper than ``limit``; call before parsing."""
    depth = json_text_depth(data)
    if depth > limit:
        raise Invalid(f"{what} nests arrays and objects {depth} levels deep; at most {limit} are accepted")


def check_json_depth(value: Any, what: str, limit: int = MAX_JSON_DEPTH) -> None:
    """``Invalid`` (422) when a parsed JSON value nests deeper than ``limit`` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            raise Invalid(f"{what} nests arrays and objects deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)


def relative_paths(message: str, folders: Mapping[str, Path | str | None]) -> str:
    """``message`` with each folder of ``folders`` (label -> path) replaced by its label, longest path first, so an
    answer names ``<TOROID_DATA_ROOT>/x.npz`` instead of the server's absolute path."""
    known = []
    for label, folder in folders.items():
        if folder is None:
            continue
        for form in {str(folder), str(Path(folder).resolve())}:
            if len(form) > 1:
                known.append((form.rstrip("/"), label))
    for form, label in sorted(known, key=lambda pair: len(pair[0]), reverse=True):
        message = message.replace(form, label)
    return message
