"""GET /api/results/{id} (JSON) and GET /api/results/{id}.csv (the result's arrays, one row per point or cell)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Response, status
from sqlalchemy.orm import Session

from toroid.backend.api.deps import AUTH_RESPONSES
from toroid.backend.auth import require_read
from toroid.backend.schemas import ResultRecord
from toroid.store.db import get_session
from toroid.store.models import Result

router = APIRouter(
    prefix="/results", tags=["results"], dependencies=[Depends(require_read)], responses=AUTH_RESPONSES
)

PROFILE_COLUMNS = ("x", "distance", "train_error", "test_error", "train_loss", "test_loss")


def _get_result(session: Session, result_id: str) -> Result:
    result = session.get(Result, result_id)
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no result with id {result_id!r}")
    return result


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None


def _profile_rows(profile: dict[str, Any], prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    for i in range(len(profile.get("x") or [])):
        yield (*prefix, *(_at(profile.get(c), i) for c in PROFILE_COLUMNS))


def _grid_rows(data: dict[str, Any], xs: str, ys: str) -> Iterator[tuple[Any, ...]]:
    train, test = data.get("train_error") or [], data.get("test_error") or []
    for j, y in enumerate(data.get(ys) or []):
        for i, x in enumerate(data.get(xs) or []):
            yield x, y, _at(_at(train, j), i), _at(_at(test, j), i)


def result_table(result: Result) -> tuple[tuple[str, ...], Iterator[tuple[Any, ...]]]:
    """Header and rows of a result's arrays, by kind."""
    data = result.data or {}
    if result.kind == "path" and "profiles" in data:  # one_bend: two segments
        rows = (row for s, p in enumerate(data["profiles"]) for row in _profile_rows(p, (s,)))
        return ("segment", *PROFILE_COLUMNS), rows
    if result.kind == "path":
        return PROFILE_COLUMNS, _profile_rows(data)
    if result.kind == "flatness":
        columns = ("sigma", "mean", "std", "stderr", "samples")
        keys = ("sigmas", "mean", "std", "stderr", "samples")
        n = len(data.get("sigmas") or [])
        return columns, (tuple(_at(data.get(k), i) for k in keys) for i in range(n))
    if result.kind == "distances":
        ids, names, matrices = data.get("ids") or [], data.get("names") or [], data.get("matrices") or {}
        metrics = sorted(matrices)
        rows = (
            (ids[i], _at(names, i), ids[j], _at(names, j), *(_at(_at(matrices[m], i), j) for m in metrics))
            for i in range(len(ids)) for j in range(len(ids)) if i < j
        )
        return ("id_a", "name_a", "id_b", "name_b", *metrics), rows
    if result.kind == "section":
        return ("x", "y", "train_error", "test_error"), _grid_rows(data, "x", "y")
    if result.kind == "torus":
        return ("phi1", "phi2", "train_error", "test_error"), _grid_rows(data, "phi1", "phi2")
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"results of kind {result.kind!r} have no CSV form")


@router.get("/{result_id}.csv", summary="The result's arrays as CSV",
            responses={200: {"content": {"text/csv": {}}, "description": "CSV"}, 404: {"description": "unknown"}})
def read_result_csv(result_id: str, session: Session = Depends(get_session)) -> Response:
    result = _get_result(session, result_id)
    header, rows = result_table(result)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        out.getvalue(), media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{result.kind}-{result.id}.csv"'},
    )


@router.get("/{result_id}", response_model=ResultRecord, responses={404: {"description": "unknown result"}})
def read_result(result_id: str, session: Session = Depends(get_session)) -> dict:
    return _get_result(session, result_id).to_record()
