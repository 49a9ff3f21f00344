"""The order in which sections and torus slices visit their grid, and the partial grids they report.

docs/method.md §7 (sections and tori). A grid of ``resolution x resolution`` cells is visited
coarse to fine by default: first the cells whose indices are multiples of a stride ``s0``
(:func:`first_stride`: 4 to 6 cells per axis, spread over the whole grid), then the cells on the
subgrid of stride ``s0 / 2`` not visited yet, and so on down to stride 1 (row by row within a
pass). Every cell is computed once and exactly as in a row-by-row visit (``order="rows"``), so the
final grid is the same; only the order, and so what a running job can show, differs.

:class:`GridProgress` fills the train and test grids and reports to the caller's progress
callback: every cell as ``{"cell": {...}}`` (its indices, coordinates and errors), and at the end
of each pass and every ``chunk`` cells within a pass also ``{"grid": {...}}``: the result so far
(cells not computed yet ``NaN``, ``null`` in JSON), with ``cells``, ``total`` and ``stride`` (the
stride of the finest complete pass, ``None`` before the first pass ends). Both are dicts, so a job
ledger keeps the latest of each rather than appending (``toroid.store.ledger.JobRun.progress``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

__all__ = ["GridOrder", "GridProgress", "first_stride", "grid_order"]

GridOrder = Literal["coarse_to_fine", "rows"]
Progress = Callable[[float, dict[str, Any]], None]


def first_stride(resolution: int) -> int:
    """The stride of the first, coarse pass: the largest power of two s with 3 s <= resolution - 1, so the
    first pass has 4 to 6 cells per axis (1, a single pass, below 7 points per axis)."""
    stride = 1
    while 3 * (2 * stride) <= resolution - 1:
        stride *= 2
    return stride


def _passes(resolution: int, order: GridOrder) -> list[tuple[int, list[tuple[int, int]]]]:
    """(stride, cells (i, j) first visited in this pass) of every pass."""
    if order == "rows":
        return [(1, [(i, j) for j in range(resolution) for i in range(resolution)])]
    if order != "coarse_to_fine":
        raise ValueError(f"order must be 'coarse_to_fine' or 'rows', got {order!r}")
    passes = []
    stride = first_stride(resolution)
    coarser = None
    while stride >= 1:
        cells = [(i, j) for j in range(0, resolution, stride) for i in range(0, resolution, stride)
                 if coarser is None or i % coarser or j % coarser]
        passes.append((stride, cells))
        coarser, stride = stride, stride // 2
    return passes


def grid_order(resolution: int, order: GridOrder = "coarse_to_fine") -> list[tuple[int, int]]:
    """Every cell (i, j) of the grid once, in the order of the visit (``i`` the column, ``j`` the row)."""
    return [cell for _, cells in _passes(resolution, order) for cell in cells]


class GridProgress:
    """The train and test grids of a progressive computation, and its reports (module docstring).

    ``positions``: visit only the cells at these positions of the visit order (``grid_order``), the others stay
    ``NaN``: one chunk of a grid split over several jobs (docs/operations.md, "Chunks"). ``static``: the fields of
    the result known before the first cell (axes, the networks' coordinates), copied
    into every ``grid`` report. Iterate over :meth:`cells`, and :meth:`record` each cell's errors.
    """

    def __init__(self, resolution: int, order: GridOrder = "coarse_to_fine", progress: Progress | None = None,
                 static: Mapping[str, Any] | None = None, positions: Sequence[int] | None = None) -> None:
        self.resolution = resolution
        self.passes = _passes(resolution, order)
        if positions is not None:  # a chunk (docs/operations.md, "Chunks"): these positions of the visit only
            wanted, start, kept = {int(p) for p in positions}, 0, []
            if wanted and (min(wanted) < 0 or max(wanted) >= resolution * resolution):
                raise ValueError(f"cell positions must lie in [0, {resolution * resolution - 1}]")
            for stride, cells in self.passes:
                kept.append((stride, [c for k, c in enumerate(cells, start) if k in wanted]))
                start += len(cells)
            self.passes = kept
        self.total = sum(len(cells) for _, cells in self.passes)
        self.train = [[math.nan] * resolution for _ in range(resolution)]
        self.test = [[math.nan] * resolution for _ in range(resolution)]
        self.progress = progress
        self.static = dict(static or {})
        self.done = 0
        self.stride: int | None = None  # of the finest complete pass
        first = len(self.passes[0][1]) if order == "coarse_to_fine" and len(self.passes) > 1 else resolution
        self.chunk = max(first, math.ceil(self.total / 32), 1)  # at most ~32 + passes grid reports
        self._pass_end = 0
        self._since_report = 0

    def cells(self) -> Iterator[tuple[int, int]]:
        for stride, cells in self.passes:
            self._pass_end += len(cells)
            self._pass_stride = stride
            yield from cells

    def record(self, i: int, j: int, result: Mapping[str, float], **coords: float) -> None:
        self.train[j][i], self.test[j][i] = result["train_error"], result["test_error"]
        self.done += 1
        self._since_report += 1
        if self.done == self._pass_end:
            self.stride = self._pass_stride
        if self.progress is None:
            return
        info: dict[str, Any] = {"cell": {"i": i, "j": j, **coords, **result}}
        if self.done == self._pass_end or self._since_report >= self.chunk:
            self._since_report = 0
            info["grid"] = self.snapshot()
        self.progress(self.done / max(self.total, 1), info)

    def snapshot(self) -> dict[str, Any]:
        """The result so far: ``static`` with the grids (``NaN`` where not computed yet) and the counts."""
        return {**self.static, "train_error": [row[:] for row in self.train],
                "test_error": [row[:] for row in self.test], "cells": self.done, "total": self.total,
                "stride": self.stride}
