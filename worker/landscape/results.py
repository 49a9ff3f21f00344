"""Result records of the geometry measures (docs/method.md §§5-7).

Every record is a small dataclass of plain Python numbers and lists, never tensors, so that
``to_dict()`` is strict JSON (:func:`to_json`: a non-finite number becomes ``None``) and
``from_dict(to_dict())`` round-trips.  Errors are fractions in [0, 1]; the user interface shows
them in percent.  :func:`to_json` is the platform's one conversion to JSON values (the store's
rows and keys use it too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Self

__all__ = [
    "BendResult",
    "HessianSharpness",
    "LocalEnergy",
    "PathProfile",
    "Section",
    "TorusSlice",
    "jsonable",
    "local_energy_at_largest_sigma",
    "to_json",
]


def to_json(value: Any) -> Any:
    """A copy of ``value`` in plain JSON types that any JSON encoder accepts (strict JSON, no NaN).

    Non-finite floats (NaN, +-inf) become ``None``; other floats (numpy's included) plain floats;
    mappings become dicts with string keys, tuples and lists lists; numpy / torch scalars and arrays
    go through ``tolist()``; records (result dataclasses and anything else with a ``to_dict()``)
    through ``to_dict()``; any other object becomes ``str(value)``.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):  # result records, UnitMatch
        return to_json(to_dict())
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # torch.Tensor, numpy arrays and numpy scalars
        return to_json(tolist())
    return str(value)


#: The former name of :func:`to_json` (it kept non-finite floats; nothing relied on that).
jsonable = to_json


def local_energy_at_largest_sigma(data: Mapping[str, Any]) -> float | None:
    """The local energy at the largest sigma of a :class:`LocalEnergy` dict (docs/method.md §6).

    This is the flatness the paper compares with the test error. ``None`` when ``sigmas`` or
    ``mean`` is missing or empty, their lengths differ, a sigma is not a finite number, or the
    value is not a finite number.
    """
    sigmas, means = data.get("sigmas") or [], data.get("mean") or []
    if not sigmas or len(sigmas) != len(means) or not all(_finite(s) for s in sigmas):
        return None
    value = means[max(range(len(sigmas)), key=lambda i: sigmas[i])]
    return float(value) if _finite(value) else None


def _finite(value: Any) -> bool:
    """A finite real number (``bool`` is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Record:
    """Shared ``to_dict`` / ``from_dict`` for the result dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """The record as a dict of strict JSON values (one key per field; see :func:`to_json`)."""
        return {f.name: to_json(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a record from ``to_dict()`` output; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"{cls.__name__}.from_dict: unknown keys {unknown}; valid keys are {sorted(names)}"
            )
        return cls(**data)


@dataclass
class PathProfile(_Record):
    """Errors and losses along a path between two networks (docs/method.md §7).

    ``x`` is the interpolation fraction of each point (an evenly spaced grid on [0, 1]),
    ``distance`` the distance travelled along the path up to each point rescaled to [0, 1]
    (the abscissa of the paper's path plots), ``length`` the total length of the path in the
    geometry of ``kind`` (geodesic distance for ``geodesic``, Euclidean norm of the
    difference for the linear kinds, number of differing weights for ``flip``).
    ``barrier`` is the raw maximum of the train error along the path (not minus the
    endpoints), ``test_barrier`` the same for the test error.  ``bn`` records how BatchNorm
    running statistics were set at each point (``recompute``, ``interpolate`` or ``none``
    when the model has no BatchNorm).
    """

    kind: str
    x: list[float]
    distance: list[float]
    length: float
    train_error: list[float]
    test_error: list[float]
    train_loss: list[float]
    test_loss: list[float]
    barrier: float
    test_barrier: float
    bn: str
    points: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalEnergy(_Record):
    """Local energy curve dE_train(w, sigma) of one network (docs/method.md §6).

    ``mean[i]`` is the mean over noise samples of E_train(w + sigma_i z (.) w) - E_train(w),
    ``std[i]`` the standard deviation over samples (the paper's error bars) and ``stderr[i]``
    the standard error of the mean.  For binary networks ``sigmas`` holds flip fractions.
    ``samples[i]`` is the number of noise samples drawn for sigma_i (0 at sigma = 0, where the
    perturbation vanishes and dE = 0 exactly).  ``capped[i]`` is True when the sample cap stopped
    the draws of sigma_i before the mode's standard-error target held (``sequential``: ``max_samples``;
    ``fast``: ``samples``; always False in ``exact`` mode, which has no target; empty in records
    written before the flag existed).
    """

    sigmas: list[float]
    mean: list[float]
    std: list[float]
    stderr: list[float]
    samples: list[int]
    base_train_error: float
    base_test_error: float
    noise_on: str
    mode: str
    subsample: int | None
    binary: bool
    capped: list[bool] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class HessianSharpness(_Record):
    """Hessian sharpness of one network's training loss, on the normalized network (docs/method.md §6).

    ``top_eigenvalue`` is the largest (algebraically) eigenvalue of the Hessian of the mean training
    loss, estimated by Lanczos; ``residual`` its relative residual ||H y - theta y|| / |theta| after
    ``iterations`` Lanczos steps; ``ritz_values`` all Ritz values of the last step, largest first.
    ``trace`` is Hutchinson's estimate of the Hessian's trace over ``probes`` Rademacher vectors
    (``trace_samples``: each probe's z^T H z), ``trace_stderr`` its standard error (None for fewer
    than two probes; ``trace`` None for none).  ``samples`` training samples enter the loss,
    ``parameters`` is the dimension of the Hessian, ``train_loss`` the loss whose Hessian this is.
    ``normalized`` is False only for the raw-parameter comparison (not invariant).
    """

    top_eigenvalue: float
    residual: float
    iterations: int
    ritz_values: list[float]
    trace: float | None
    trace_stderr: float | None
    trace_samples: list[float]
    probes: int
    samples: int
    parameters: int
    train_loss: float
    base_train_error: float
    base_test_error: float
    normalized: bool
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Section(_Record):
    """Error on a two-dimensional plane through three networks (docs/method.md §7).

    The plane is w1 + x u_hat + y v_hat with u = w2 - w1 and v = (w3 - w1) minus its
    projection on u (Gram-Schmidt).  ``train_error[j][i]`` is the error at (x[i], y[j]):
    rows follow ``y``, columns follow ``x``.  ``points`` maps w1, w2, w3 to their plane
    coordinates; ``space`` is ``raw`` or ``normalized``.
    """

    x: list[float]
    y: list[float]
    train_error: list[list[float]]
    test_error: list[list[float]]
    points: dict[str, list[float]]
    space: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TorusSlice(_Record):
    """Error on a two-dimensional torus through normalized, aligned networks.

    ``train_error[j][i]`` is the error at (phi1[i], phi2[j]) (rows follow ``phi2``); both axes
    sample [0, 2 pi) so the slice is periodic.  ``minima`` maps network names to their torus
    coordinates and ``geodesic`` lists points of the geodesic between A and B, which is the
    straight segment between their coordinates.  ``construction`` names the construction
    (see docs/method.md §7).
    """

    phi1: list[float]
    phi2: list[float]
    train_error: list[list[float]]
    test_error: list[list[float]]
    minima: dict[str, list[float]]
    geodesic: list[list[float]]
    construction: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BendResult(_Record):
    """One-bend path A -> bend -> B (docs/method.md §7): two path segments and their barrier."""

    profiles: list[PathProfile]
    barrier: float
    kind: str
    distance_to_a: float
    distance_to_b: float
    bend_train_error: float
    epochs: int
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict):
            raise ValueError(f"BendResult.from_dict expects a dict, got {type(data).__name__}")
        data = dict(data)
        data["profiles"] = [
            p if isinstance(p, PathProfile) else PathProfile.from_dict(p) for p in data.get("profiles", [])
        ]
        return super().from_dict(data)

