"""Explicit load/save helpers for minima: safetensors checkpoints and their JSON sidecars.

A minimum on disk is two files: ``m.safetensors`` (the model's state_dict) and ``m.json`` (the sidecar: what the
tensors are: architecture, config, dataset, provenance). ``toroid train`` writes both; the upload endpoint accepts
both. Checkpoints are never unpickled: safetensors, or ``torch.load(weights_only=True)`` for ``.pt`` files.

Decoding is bounded before anything is decompressed: ``parse_checkpoint`` reads a torch zip archive's directory
(``inspect_archive``) and a safetensors header (``safetensors_sizes``) first and refuses more data than the caller
allows (``max_bytes``) and entries with an absurd compression ratio (zip bombs); after ``torch.load`` it refuses
tensors that are views into a larger storage (a small tensor can drag a huge storage along).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
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


#: Largest ratio of uncompressed to compressed size of one entry of a torch zip archive (for entries above
#: ``RATIO_FLOOR_BYTES``). ``torch.save`` stores entries uncompressed (ratio 1) and re-zipped float weights shrink to
#: about 0.9 of their size; a deflated run of zeros reaches about 1000, which is how a 1 MB file holds 1 GiB.
MAX_COMPRESSION_RATIO = 100
RATIO_FLOOR_BYTES = 1 << 20
#: Most entries a checkpoint may hold when the caller gives no ``max_entries``.
MAX_ARCHIVE_ENTRIES = 100_000


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _check_total(total: int, entries: int, max_bytes: int | None, max_entries: int | None, what: str) -> None:
    limit_entries = MAX_ARCHIVE_ENTRIES if max_entries is None else max_entries
    if entries > limit_entries:
        raise ValueError(f"the {what} holds {entries:,} entries, more than the {limit_entries:,} allowed here")
    if max_bytes is not None and total > max_bytes:
        raise ValueError(
            f"the {what} holds {_mib(total)} of data but at most {_mib(max_bytes)} is allowed for the declared "
            "architecture: it is not a checkpoint of that architecture, or it carries extra data (tensors that "
            "are views into larger storages, padding, a compressed run of zeros)"
        )


def is_torch_zip(data: bytes) -> bool:
    """Whether the bytes are a zip archive (the format of ``torch.save`` since torch 1.6)."""
    return data[:4] == b"PK\x03\x04"


def inspect_archive(data: bytes, max_bytes: int | None = None, max_entries: int | None = None) -> int:
    """Check a torch zip archive from its directory alone (nothing is decompressed or unpickled); returns the total
    uncompressed size of its entries.

    Raises ValueError for more than ``max_entries`` entries (default ``MAX_ARCHIVE_ENTRIES``), a total above
    ``max_bytes`` (``None``: no total limit), or an entry above ``RATIO_FLOOR_BYTES`` whose uncompressed size is
    more than ``MAX_COMPRESSION_RATIO`` times its compressed size. The sizes checked are the directory's, which is
    what torch's reader allocates and verifies when it extracts an entry.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError) as exc:
        raise ValueError(f"the file starts like a zip archive (torch.save) but its directory is unreadable: {exc}"
                         ) from exc
    total = 0
    for info in infos:
        total += info.file_size
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise ValueError(
                f"the archive entry {info.filename!r} expands from {_mib(info.compress_size)} to "
                f"{_mib(info.file_size)} (more than {MAX_COMPRESSION_RATIO}:1): refused as a zip bomb; network "
                "weights do not compress like that (torch.save stores them uncompressed)"
            )
    _check_total(total, len(infos), max_bytes, max_entries, "archive")
    return total


def safetensors_sizes(data: bytes) -> dict[str, int] | None:
    """The byte size each tensor of a safetensors file declares in its header, read without loading any tensor;
    ``None`` when the bytes do not start with a safetensors header."""
    if len(data) < 10:
        return None
    header = int.from_bytes(data[:8], "little")
    if not (0 < header <= len(data) - 8 and data[8:9] == b"{"):
        return None
    try:
        meta = json.loads(data[8:8 + header])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the file looks like safetensors but its header is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError("the file looks like safetensors but its header is not a JSON object")
    sizes: dict[str, int] = {}
    for key, entry in meta.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ValueError(f"the safetensors header entry {key!r} has no valid data_offsets")
        sizes[key] = offsets[1] - offsets[0]
    return sizes


def check_storages(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse tensors that are views into a larger storage (``torch.save`` of a slice writes the whole storage, so a
    small tensor can carry gigabytes); call it before copying or converting the tensors."""
    for key, tensor in state.items():
        need = tensor.numel() * tensor.element_size()
        have = tensor.untyped_storage().nbytes()
        if have > need:
            raise ValueError(
                f"the tensor {key!r} ({need:,} bytes of values) is a view into a storage of {have:,} bytes; "
                "save standalone tensors: torch.save({k: v.clone() for k, v in model.state_dict().items()}, path)"
            )


def parse_checkpoint(data: bytes, *, max_bytes: int | None = None, max_entries: int | None = None
                     ) -> dict[str, torch.Tensor]:
    """Tensors from checkpoint bytes: safetensors, else a torch state_dict loaded with ``weights_only=True``.

    Raises ValueError (never executes code from the file) when the bytes are neither, or hold something other
    than a flat mapping of names to tensors. Before decoding, the declared sizes are checked: a safetensors header,
    or a torch zip archive's directory (``inspect_archive``: at most ``max_bytes`` in all, at most ``max_entries``
    entries, no zip bombs); after ``torch.load``, tensors that are views into larger storages are refused
    (``check_storages``).
    """
    sizes = safetensors_sizes(data)
    if sizes is not None:
        _check_total(sum(sizes.values()), len(sizes), max_bytes, max_entries, "safetensors file")
        try:
            return dict(load_safetensors_bytes(data))
        except Exception as exc:
            raise ValueError(f"the file looks like safetensors but does not parse: {exc}") from exc
    if is_torch_zip(data):
        inspect_archive(data, max_bytes, max_entries)
    elif max_bytes is not None and len(data) > max_bytes:  # the legacy format stores its tensors uncompressed
        _check_total(len(data), 0, max_bytes, max_entries, "file")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(_load_failure(exc)) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"the checkpoint must be a non-empty mapping of names to tensors, got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"the checkpoint entry {bad[0]!r} is not a tensor: a state_dict holds only tensors")
    check_storages(obj)
    return dict(obj)


#: What to send instead of a file that is not a checkpoint (no torch hint to load with weights_only=False: a shared
#: server never unpickles code).
SAVE_ADVICE = ("save model.state_dict() with safetensors (safetensors.torch.save_file(model.state_dict(), "
               "'m.safetensors')), or export the model: torch.export.save(torch.export.export(model, (x,)), 'm.pt2')")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def plain_text(text: str) -> str:
    """``text`` without ANSI escape sequences and other control characters (messages shown to users)."""
    return "".join(ch for ch in _ANSI.sub("", text) if ch in "\n\t" or ch.isprintable())


def _load_failure(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused the bytes, as advice (torch's own text suggests trusting the
    file, which a shared server must not do)."""
    text = plain_text(str(exc))
    named = re.search(r"GLOBAL ([A-Za-z_][\w.]*)", text)
    if named:
        return (f"the file is a pickled Python object that names {named.group(1)} (e.g. torch.save(model) instead of "
                f"torch.save(model.state_dict())); objects are refused without being run: {SAVE_ADVICE}")
    return f"the file is not a safetensors, torch state_dict or torch.export file: {SAVE_ADVICE}"


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
