"""The artifact store: content-addressed files (checkpoints, canonical forms) under ``settings.artifacts_dir``.

Layout: ``<artifacts_dir>/<sha256[:2]>/<sha256>`` where ``sha256`` is the hash of the file's bytes, so the same
content is stored once and a name can never collide with different content. Files are written atomically: the
bytes go to a temporary file in ``<artifacts_dir>/tmp`` on the same filesystem, are flushed to disk, and are
renamed into place with ``os.replace``; a reader sees either no file or the complete file, never a partial one.
Names supplied by users are never used to build paths: the only path component that varies is a validated
hexadecimal digest.

Checkpoints are safetensors files of a model's ``state_dict`` (the format of ``toroid.worker.landscape.nets``).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as safetensors_load
from torch import nn

__all__ = [
    "MAX_PARAMETERS",
    "ArtifactStore",
    "CheckpointError",
    "check_state_dict",
    "get_store",
    "load_model",
    "load_state_dict_bytes",
    "read_checkpoint",
    "state_dict_bytes",
    "template_state",
]

#: Largest network (parameters + buffers) the service accepts, so that a typo such as widths [10**9] is a clear
#: 422 instead of an out-of-memory crash (400 million float32 = 1.6 GB).
MAX_PARAMETERS = 400_000_000

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ArtifactStore:
    """Content-addressed, atomically written files in one directory (see the module docstring)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def _check(self, sha256: str) -> str:
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return sha256

    def path(self, sha256: str) -> Path:
        """Where the artifact with this digest lives (whether or not it exists)."""
        sha256 = self._check(sha256)
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its sha256 hex digest."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if target.is_file():
            return sha256
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=f"{sha256[:12]}-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)  # atomic on POSIX: readers see all bytes or no file
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise
        return sha256

    def get_bytes(self, sha256: str) -> bytes:
        """The stored bytes; ``FileNotFoundError`` names the digest when the artifact is missing."""
        target = self.path(sha256)
        try:
            return target.read_bytes()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"artifact {sha256} is missing from the store at {self.root}") from exc

    def delete(self, sha256: str) -> bool:
        """Remove an artifact; returns whether a file was removed."""
        try:
            self.path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False

    # -- checkpoints -------------------------------------------------------------------------------------------
    def put_state_dict(self, state: Mapping[str, torch.Tensor]) -> str:
        """Store a state_dict as safetensors; returns the digest of the file."""
        return self.put_bytes(state_dict_bytes(state))

    def get_state_dict(self, sha256: str) -> dict[str, torch.Tensor]:
        return load_state_dict_bytes(self.get_bytes(sha256))


def state_dict_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """Serialize a state_dict to safetensors bytes (deterministic for equal tensors)."""
    from toroid.worker.landscape.io import state_dict_bytes as serialize

    return serialize(state)


def load_state_dict_bytes(data: bytes) -> dict[str, torch.Tensor]:
    return dict(safetensors_load(data))


# --------------------------------------------------------------------------------------------- checkpoint formats
class CheckpointError(ValueError):
    """An uploaded checkpoint cannot be read or does not fit its declared architecture (the message says why)."""


def read_checkpoint(data: bytes) -> dict[str, torch.Tensor]:
    """Parse an uploaded checkpoint: safetensors, or a torch ``state_dict`` read with ``weights_only=True``.

    The format is recognized from the bytes, never from a file name (``toroid.worker.landscape.io.parse_checkpoint``).
    ``torch.load(weights_only=True)`` refuses any pickle that references code (``os.system``, arbitrary classes)
    *before* anything is executed, so a malicious ``.pt`` file is rejected without side effects.
    Raises ``CheckpointError`` with the reason.
    """
    from toroid.worker.landscape.io import parse_checkpoint

    if not data:
        raise CheckpointError("the checkpoint file is empty")
    try:
        return parse_checkpoint(data)
    except ValueError as exc:
        raise CheckpointError(f"{exc}; upload model.state_dict() saved with safetensors or torch.save") from exc


def template_state(architecture: str, config: Mapping[str, Any], input_shape: tuple[int, ...], num_classes: int
                   ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state_dict layout (meta tensors: shapes and dtypes, no memory) of an architecture, and its full config.

    Raises ``ValueError`` (from the architecture registry, naming valid choices) for unknown names or config keys,
    and for networks above ``MAX_PARAMETERS``.
    """
    from toroid.worker.landscape.nets import build_model, model_spec

    with torch.device("meta"):
        model = build_model(architecture, dict(config), (tuple(input_shape), int(num_classes)))
    state = dict(model.state_dict())
    size = sum(t.numel() for t in state.values())
    if size > MAX_PARAMETERS:
        raise ValueError(
            f"architecture {architecture!r} with config {dict(config)} has {size:,} parameters and buffers; "
            f"the service accepts at most {MAX_PARAMETERS:,}: choose smaller widths"
        )
    spec = model_spec(model) or {}
    return state, dict(spec.get("config", config))


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def check_state_dict(state: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor], what: str
                     ) -> dict[str, torch.Tensor]:
    """Check that ``state`` has exactly the keys and shapes of ``template``; return it in the template's dtypes.

    The message of the ``CheckpointError`` names the first mismatch in the architecture's own key order
    (key, expected shape, got shape), then what else is wrong. ``what`` describes the declared architecture.
    """
    problems: list[str] = []
    for key, expected in template.items():
        got = state.get(key)
        if got is None:
            problems.append(f"key {key!r} is missing (expected shape {_shape(expected)})")
        elif _shape(got) != _shape(expected):
            problems.append(f"key {key!r}: expected shape {_shape(expected)}, got shape {_shape(got)}")
        elif expected.is_floating_point() != got.is_floating_point():
            kind = "floating point" if expected.is_floating_point() else "integer"
            problems.append(f"key {key!r}: expected {kind} values, got dtype {got.dtype}")
    unexpected = [key for key in state if key not in template]
    problems.extend(f"unexpected key {key!r} (shape {_shape(state[key])})" for key in unexpected)
    if problems:
        others = "; ".join(problems[1:4]) + ("; ..." if len(problems) > 4 else "")
        more = f" ({len(problems) - 1} more problem(s): {others})" if len(problems) > 1 else ""
        raise CheckpointError(
            f"the checkpoint does not match {what}: {problems[0]}{more}. "
            f"The architecture expects the keys {list(template)[:8]}{' ...' if len(template) > 8 else ''}"
        )
    out: dict[str, torch.Tensor] = {}
    for key, expected in template.items():
        tensor = state[key]
        if tensor.is_floating_point():
            if not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"key {key!r} contains NaN or infinite values")
            tensor = tensor.to(expected.dtype)
        else:
            tensor = tensor.to(expected.dtype)
        out[key] = tensor.contiguous()
    return out


def load_model(architecture: str, config: Mapping[str, Any], input_shape: tuple[int, ...], num_classes: int,
               state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Build the architecture on the CPU and load ``state`` (strict); eval mode."""
    from toroid.worker.landscape.nets import build_model

    model = build_model(architecture, dict(config), (tuple(input_shape), int(num_classes)))
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def get_store() -> ArtifactStore:
    """The store of the current settings (``TOROID_HOME``/artifacts)."""
    from toroid.store.settings import get_settings

    return ArtifactStore(get_settings().artifacts_dir)
