"""Path kinds and the binary rule: which paths between two minima fit which networks.

docs/method.md §7 (paths and their barrier), §4 (binary networks). The one home of
these facts for the whole platform: the core's path functions, the API, the study planner and the
dashboard all ask here. Plain Python (no torch), so that a process without torch can import it.

* ``linear`` and ``linear_aligned`` fit every network (binary networks: on the latent weights);
* ``geodesic`` needs continuous networks: binary weights cannot be normalized (§4);
* ``flip`` is the binary counterpart of the geodesic: the differing binary weights flipped one at a
  time;
* ``one_bend`` (through a retrained midpoint) fits both; its segments have their own kind
  (:func:`bend_kinds`): ``geodesic``, ``linear_aligned`` or ``linear`` for continuous networks,
  ``flip`` for binary ones.
"""

from __future__ import annotations

__all__ = [
    "ALL_PATH_KINDS",
    "BEND_KINDS",
    "PATH_KINDS",
    "bend_kinds",
    "check_bend_kind",
    "check_path_kind",
    "path_kinds",
]

#: The kinds :func:`~toroid.worker.landscape.paths.path_profile` computes.
PATH_KINDS: tuple[str, ...] = ("linear", "linear_aligned", "geodesic", "flip")
#: Every kind of path between two minima: the profiled ones and the one-bend path
#: (:func:`~toroid.worker.landscape.bend.one_bend`).
ALL_PATH_KINDS: tuple[str, ...] = (*PATH_KINDS, "one_bend")
#: The segment kinds of a one-bend path.
BEND_KINDS: tuple[str, ...] = ("geodesic", "linear_aligned", "linear", "flip")

_CONTINUOUS_ONLY = "geodesic"  # normalization is undefined for binary weights (docs/method.md §4)
_BINARY_ONLY = "flip"


def _family(binary: bool) -> str:
    return "binary" if binary else "continuous"


def path_kinds(binary: bool, *, one_bend: bool = True) -> tuple[str, ...]:
    """The path kinds that fit a binary or a continuous network, in display order.

    Continuous: ``linear, linear_aligned, geodesic, one_bend``; binary: ``linear, linear_aligned,
    flip, one_bend``. ``one_bend=False`` leaves the one-bend path out (the kinds
    :func:`~toroid.worker.landscape.paths.path_profile` computes).
    """
    drop = _CONTINUOUS_ONLY if binary else _BINARY_ONLY
    return tuple(k for k in ALL_PATH_KINDS if k != drop and (one_bend or k != "one_bend"))


def bend_kinds(binary: bool) -> tuple[str, ...]:
    """The segment kinds of a one-bend path that fit a binary or a continuous network.

    Continuous: ``geodesic, linear_aligned, linear``; binary: ``flip`` (the bend is retrained on the
    latent weights, each segment is a flip path).
    """
    return (_BINARY_ONLY,) if binary else tuple(k for k in BEND_KINDS if k != _BINARY_ONLY)


def _reject(what: str, fits: tuple[str, ...], binary: bool) -> ValueError:
    return ValueError(f"{what}; for {_family(binary)} networks the kind must be one of {list(fits)}")


def check_path_kind(kind: str, binary: bool, *, one_bend: bool = True) -> None:
    """Raise ``ValueError`` unless ``kind`` is a path kind that fits the network.

    The message says what is wrong (an unknown kind, a geodesic for a binary network, a flip path
    for a continuous one) and lists the kinds that fit. ``one_bend`` as in :func:`path_kinds`.
    """
    fits = path_kinds(binary, one_bend=one_bend)
    if kind in fits:
        return
    if kind == _CONTINUOUS_ONLY:
        what = "geodesic paths need continuous networks (binary weights cannot be normalized)"
    elif kind == _BINARY_ONLY:
        what = "flip paths are for binary networks (continuous weights have no signs to flip)"
    elif kind == "one_bend":
        what = "'one_bend' is not a profiled path kind (one-bend paths come from one_bend())"
    else:
        what = f"unknown path kind {kind!r}"
    raise _reject(what, fits, binary)


def check_bend_kind(kind: str, binary: bool) -> None:
    """Raise ``ValueError`` unless ``kind`` is a one-bend segment kind that fits the network
    (message as in :func:`check_path_kind`)."""
    fits = bend_kinds(binary)
    if kind in fits:
        return
    if kind not in BEND_KINDS:
        what = f"unknown one-bend kind {kind!r}"
    elif binary:
        what = f"binary networks have no {kind!r} one-bend path (their segments are flip paths)"
    else:
        what = "flip one-bend paths are for binary networks (continuous weights have no signs to flip)"
    raise _reject(what, fits, binary)
