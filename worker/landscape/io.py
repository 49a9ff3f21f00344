"""Explicit load/save helpers for minima: safetensors checkpoints and their JSON sidecars.

A minimum on disk is two files: ``m.safetensors`` (the model's state_dict) and ``m.json`` (the sidecar: what the
tensors are: architecture, config, dataset, provenance). ``toroid train`` writes both; the upload endpoint accepts
both. Checkpoints are never unpickled: safetensors, or ``torch.load(weights_only=True)`` for ``.pt`` files.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

SIDECAR_FORMAT = "toroid.minimum/1"
SIDECAR_KEYS = ("architecture", "config", "dataset", "dataset_options", "name")


def state_dict_bytes(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> bytes:
    """The safetensors serialization of a model's state_dict (contiguous CPU tensors)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return save_safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in state.items()})


def parse_checkpoint(data: bytes) -> dict[str, torch.Tensor]:
    """Tensors from checkpoint bytes: safetensors, else a torch state_dict loaded with ``weights_only=True``.

    Raises ValueError (never executes code from the file) when the bytes are neither, or hold something other
    than a flat mapping of names to tensors.
    """
    if len(data) >= 8:
        header = int.from_bytes(data[:8], "little")
        if 0 < header <= len(data) - 8 and data[8:9] == b"{":
            try:
                return dict(load_safetensors_bytes(data))
            except Exception as exc:
                raise ValueError(f"the file looks like safetensors but does not parse: {exc}") from exc
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            "the file is neither safetensors nor a torch state_dict loadable with weights_only=True "
            f"(pickled code and arbitrary objects are refused): {first}"
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"the checkpoint must be a non-empty mapping of names to tensors, got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"the checkpoint entry {bad[0]!r} is not a tensor: a state_dict holds only tensors")
    return dict(obj)


def checkpoint_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_sidecar(
    *, name: str, architecture: str, config: Mapping[str, Any], dataset: str,
    dataset_options: Mapping[str, Any] | None = None, checkpoint: str, sha256: str,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": SIDECAR_FORMAT,
        "name": name,
        "architecture": architecture,
        "config": dict(config),
        "dataset": dataset,
        "dataset_options": dict(dataset_options or {}),
        "checkpoint": checkpoint,
        "sha256": sha256,
        "provenance": dict(provenance or {}),
    }


def parse_sidecar(data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """Validate a sidecar (bytes of JSON, a JSON string or a dict); raises ValueError saying what is wrong."""
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"the sidecar is not valid JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ValueError("the sidecar must be a JSON object written by `toroid train`")
    if data.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"the sidecar's format must be {SIDECAR_FORMAT!r}, got {data.get('format')!r}")
    missing = [k for k in ("architecture", "dataset", "name") if not isinstance(data.get(k), str) or not data[k]]
    if missing:
        raise ValueError(f"the sidecar lacks the string field(s) {missing}")
    for key in ("config", "dataset_options", "provenance"):
        if not isinstance(data.get(key, {}), Mapping):
            raise ValueError(f"the sidecar's {key!r} must be a JSON object")
    return dict(data)


def save_minimum(
    model: nn.Module, path: str | Path, *, architecture: str, config: Mapping[str, Any], dataset: str,
    dataset_options: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> tuple[Path, Path]:
    """Write ``path`` (safetensors) and its sidecar ``path`` with suffix ``.json``; returns both paths."""
    path = Path(path)
    data = state_dict_bytes(model)
    path.write_bytes(data)
    sidecar = make_sidecar(
        name=name or path.stem, architecture=architecture, config=config, dataset=dataset,
        dataset_options=dataset_options, checkpoint=path.name, sha256=checkpoint_sha256(data), provenance=provenance,
    )
    side = path.with_suffix(".json")
    side.write_text(json.dumps(sidecar, indent=2, sort_keys=True))
    return path, side
