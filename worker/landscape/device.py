"""The one place where Toroid chooses the compute device.

Every library function of the science core that does tensor work takes an optional
``device=`` argument whose default is :func:`default_device`.
"""

from __future__ import annotations

import os

import torch

__all__ = ["default_device", "resolve_device"]

ENV_VAR = "TOROID_DEVICE"


def default_device() -> torch.device:
    """Return the device computations run on.

    Order: the ``TOROID_DEVICE`` environment variable (any string ``torch.device``
    accepts, e.g. ``cpu``, ``cuda``, ``cuda:1``), else ``cuda`` when available, else ``cpu``.

    Raises:
        ValueError: if ``TOROID_DEVICE`` names a device torch does not know, or asks for
            CUDA on a machine without it.
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
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """Turn an optional ``device=`` argument into a ``torch.device`` (``None`` -> :func:`default_device`)."""
    if device is None:
        return default_device()
    return torch.device(device)
