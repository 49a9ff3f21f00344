"""The one place where Toroid chooses the compute device.

Every library function of the science core that does tensor work takes an optional
``device=`` argument whose default is :func:`default_device`.

One worker process per GPU (docs/operations.md, "One worker per GPU"): ``toroid worker --gpus`` gives each process
``CUDA_VISIBLE_DEVICES=<its GPU>``, so the process sees exactly one GPU and computes on ``cuda:0``, the first (and
only) device it sees. :func:`visible_gpus` lists the GPUs a supervisor may hand out; :func:`assigned_gpus` is what a
worker reports in its heartbeat without touching CUDA (a forking worker must not initialize CUDA in its main
process: its pool children could then not use it).
"""

from __future__ import annotations

import os

import torch

__all__ = ["assigned_gpus", "default_device", "resolve_device", "visible_gpus"]

ENV_VAR = "TOROID_DEVICE"


def default_device() -> torch.device:
    """Return the device computations run on.

    Order: the ``TOROID_DEVICE`` environment variable (any string ``torch.device``
    accepts, e.g. ``cpu``, ``cuda``, ``cuda:1``), else ``cuda:0`` when available (the first
    GPU this process sees: with ``CUDA_VISIBLE_DEVICES=k``, GPU k), else ``cpu``.

    Raises:
        ValueError: if ``TOROID_DEVICE`` names a device torch does not know, asks for
            CUDA on a machine without it, or for a GPU index this process does not see.
    """
    requested = os.environ.get(ENV_VAR, "").strip()
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError as exc:
            raise ValueError(
                f"{ENV_VAR}={requested!r} is not a valid torch device; use e.g. 'cpu', 'cuda' or 'cuda:0'"
            ) from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"{ENV_VAR}={requested!r} asks for CUDA but torch.cuda.is_available() is False; "
                "unset it or set it to 'cpu'"
            )
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"{ENV_VAR}={requested!r} but this process sees {torch.cuda.device_count()} GPU(s) "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); indices count the "
                "visible GPUs from 0: use 'cuda' or 'cuda:0'"
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def visible_gpus() -> list[str]:
    """The GPUs this process may hand to worker processes, as values for their ``CUDA_VISIBLE_DEVICES``: the
    entries of this process's own ``CUDA_VISIBLE_DEVICES`` when set (ids or UUIDs, as many as torch sees), else
    ``0 .. n-1`` for the n GPUs torch sees; empty without a usable GPU (no GPU, no driver, or a CPU build of torch).

    It initializes the CUDA driver in this process: call it only from a process that starts its workers with
    fork + exec (``toroid worker --gpus``), never in a worker's main process before it forks its pool.
    """
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    inherited = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return inherited[:count]
    return [str(i) for i in range(count)]


def assigned_gpus() -> str | None:
    """The GPUs this process was given (its ``CUDA_VISIBLE_DEVICES``; ``None`` when unset), read from the
    environment only: safe in a worker's main process, which must not initialize CUDA before forking."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return None if value is None else value.strip()


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """Turn an optional ``device=`` argument into a ``torch.device`` (``None`` -> :func:`default_device`)."""
    if device is None:
        return default_device()
    return torch.device(device)
