"""Units, definitions and readable axes of the shared figures (part of :mod:`toroid.plots`, which re-exports every
name here; the dashboard imports them from there).

What each number drawn means and in which unit (docs/method.md §§5-7): the distances' units, the barrier as the
project defines it, the position along a path, sigma, a path's length in its metric; and the helpers that keep a
figure readable: label positions that do not overprint, log axes whose ticks are powers of ten, a y range that shows
a curve at 0 above the axis line. Standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

#: The unit of each distance (docs/method.md §5): the geodesic distance is an arc length over the normalized
#: networks' unit spheres (the last layer's sphere has radius sqrt(H_L)); the Euclidean ones are the RMS difference
#: per parameter, ||A - B|| / sqrt(N_params); Hamming the fraction of differing binary weights
METRIC_UNITS: dict[str, str] = {
    "geodesic": "rad",
    "raw": "RMS per parameter",
    "aligned": "RMS per parameter",
    "normalized": "RMS per parameter",
    "normalized_aligned": "RMS per parameter",
    "hamming": "fraction of weights",
    "hamming_raw": "fraction of weights",
}
#: The barrier as the project defines it (docs/method.md §7: the raw maximum, not minus the endpoints)
BARRIER_DEFINITION = "barrier = highest train error along the path"
#: The abscissa of every path plot: the distance travelled from A over the path's length (docs/method.md §7)
POSITION_TITLE = "position along the path: distance from A / path length (0 = A, 1 = B)"
#: The abscissa of every local-energy plot (docs/method.md §6)
SIGMA_TITLE = "sigma: relative noise size, each parameter w -> w (1 + sigma z), z ~ N(0, 1)"


def natural_key(text: str) -> tuple:
    """Sort key that orders 'sgd-2' before 'sgd-10'."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def shade(hex_color: str, amount: float) -> str:
    """``hex_color`` mixed toward white (``amount`` > 0) or black (< 0) by ``abs(amount)``."""
    h = hex_color.lstrip("#")
    if len(h) != 6:
        return hex_color
    target = 255 if amount > 0 else 0
    rgb = [int(h[i:i + 2], 16) for i in (0, 2, 4)]
    return "#" + "".join(f"{round(c + abs(amount) * (target - c)):02x}" for c in rgb)


def length_definition(kind: str, bend_kind: str | None = None) -> str:
    """What a path's ``length`` measures (docs/method.md §7, "Outputs", and §5), in one line."""
    if kind == "one_bend":
        inner = bend_kind or "geodesic"
        metric = {"geodesic": "geodesic distance (rad)", "flip": "Hamming distance (fraction of weights)"}.get(
            inner, "Euclidean distance (RMS per parameter)")
        return f"distance A -> bend plus bend -> B, {metric}"
    return {
        "geodesic": "geodesic distance D(A, B') of the normalized, aligned networks: arc length over the units' "
                    "spheres (rad)",
        "linear": "Euclidean norm ||A - B|| over all parameters of the raw networks",
        "linear_aligned": "Euclidean norm ||A - B'|| over all parameters, B aligned to A",
        "flip": "number of binary weights flipped from A to the aligned B",
    }.get(kind, "path length")


def length_text(kind: str, length: float | None, bend_kind: str | None = None) -> str:
    """A path's ``length`` with its unit (docs/method.md §7, "Outputs"): geodesic D(A, B') in rad; the Euclidean
    norm over all parameters for the straight lines (raw ``||A - B||``, aligned ``||A - B'||``); flipped weights for
    flip paths; a one-bend path's distances to its bend, summed, in its segments' metric (geodesic rad, per-parameter
    RMS for straight segments, Hamming fraction for flip segments; docs/samplers.md, "One-bend paths")."""
    if length is None or not math.isfinite(length):
        return "n/a"
    if kind == "one_bend":
        inner = bend_kind or "geodesic"
        if inner == "geodesic":
            return f"{length:.3g} rad"
        return f"{length:.3g} ({'Hamming fraction' if inner == 'flip' else 'RMS per parameter'})"
    if kind == "geodesic":
        return f"{length:.3g} rad"
    if kind == "flip":
        return f"{length:.0f} flipped weights"
    return f"{'‖A − B′‖' if kind == 'linear_aligned' else '‖A − B‖'} = {length:.3g}"


_LABEL_OFFSETS = {  # where a label's middle lies from its point, in fractions of the axes' spans
    "top center": (0.0, 0.07), "bottom center": (0.0, -0.07), "middle right": (0.1, 0.0), "middle left": (-0.1, 0.0),
    "top right": (0.08, 0.06), "bottom left": (-0.08, -0.06), "top left": (-0.08, 0.06), "bottom right": (0.08, -0.06),
}


def label_positions(x: Sequence[float], y: Sequence[float], log_x: bool = False, log_y: bool = False) -> list[str]:
    """Text positions for point labels that do not print over each other nor over another point: each label (left to
    right) takes the first side of above, below, right, left and the corners whose box (about a tenth of the width
    by a sixteenth of the height) holds the fewest other points and labels placed before it."""
    def scaled(values: Sequence[float], log: bool) -> list[float]:
        vals = [math.log10(v) if log and v > 0 else float(v) for v in values]
        low, span = min(vals, default=0.0), max(max(vals, default=0.0) - min(vals, default=0.0), 1e-12)
        return [(v - low) / span for v in vals]

    u, v = scaled(x, log_x), scaled(y, log_y)
    chosen: dict[int, str] = {}
    for i in sorted(range(len(u)), key=lambda k: (u[k], v[k])):
        def crowding(side: str, i: int = i) -> int:
            du, dv = _LABEL_OFFSETS[side]
            cu, cv = u[i] + du, v[i] + dv
            points = sum(1 for j in range(len(u)) if j != i and abs(u[j] - cu) < 0.09 and abs(v[j] - cv) < 0.05)
            labels = sum(1 for j, other in chosen.items()
                         if abs(u[j] + _LABEL_OFFSETS[other][0] - cu) < 0.16 and
                         abs(v[j] + _LABEL_OFFSETS[other][1] - cv) < 0.07)
            return points + labels
        chosen[i] = min(_LABEL_OFFSETS, key=crowding)  # the first of the least crowded sides
    return [chosen[i] for i in range(len(u))]


def _tick_text(value: float) -> str:
    exponent = round(math.log10(value))
    if -3 <= exponent <= 3:
        return f"{value:g}"
    mantissa = value / 10.0 ** exponent
    return f"{'' if abs(mantissa - 1) < 1e-9 else f'{mantissa:g}×'}10<sup>{exponent}</sup>"


def log_axis(values: Sequence[float | None], factor: float = 10.0) -> dict[str, Any] | None:
    """Settings of a readable log axis for ``values`` when they are all positive and span at least ``factor``, else
    None (keep the linear axis). The ticks are the powers of ten in range (1, 10, 100 or 0.01, 0.1, 1), with 2 and 5
    times them when fewer than three powers fall in range: never plotly's bare mantissas."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(vals) < 2 or min(vals) <= 0 or max(vals) / min(vals) < factor:
        return None
    low, high = math.log10(min(vals)), math.log10(max(vals))
    pad = 0.08 * (high - low)
    low, high = low - pad, high + pad
    decades = range(math.floor(low), math.ceil(high) + 1)
    ticks = [10.0 ** e for e in decades if low <= e <= high]
    if len(ticks) < 3:
        ticks = [m * 10.0 ** e for e in decades for m in (1, 2, 5) if low <= math.log10(m * 10.0 ** e) <= high]
    return dict(type="log", range=[low, high], tickmode="array", tickvals=ticks,
                ticktext=[_tick_text(t) for t in ticks])


def zero_visible_range(values: Sequence[float | None], pad: float = 0.05, floor: float = 0.1) -> list[float]:
    """A y range from slightly below 0 to slightly above the largest value (at least ``floor``), so that a curve at
    0 (a path whose error stays 0%) is drawn above the x-axis line instead of on it."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    top = max([floor, *vals])
    return [-pad * top, (1 + pad) * top]
