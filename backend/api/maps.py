"""GET /api/map: the minima map of one family as JSON or CSV (rules: ``toroid.backend.services.maps``).

(No ``from __future__ import annotations`` here: FastAPI reads the query parameters from their annotations.)
"""

from typing import Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from toroid.backend.api.deps import AUTH_RESPONSES, SessionDep
from toroid.backend.auth import require_read
from toroid.backend.services import maps as service
from toroid.backend.services.tables import CSV_MEDIA_TYPE, FORMAT_DOC, TableFormat, attachment

router = APIRouter(tags=["map"], dependencies=[Depends(require_read)], responses=AUTH_RESPONSES)

Metric = Literal["geodesic", "euclidean", "raw", "aligned", "normalized", "normalized_aligned", "hamming",
                 "hamming_raw"]


class MapResponse(BaseModel):
    family: str = Field(description="The family key (every minimum's record carries its 'family').")
    metric: str = Field(description="The distance the map is drawn from (docs/method.md §5); 'euclidean' is 'raw'.")
    method: Literal["smacof", "classical", "error"] = Field(
        description="'smacof': metric MDS refined from the classical solution (kept only when it lowers stress-1); "
                    "'classical': classical MDS; 'error': no distances yet, x = train error and y = test error (%).")
    ids: list[str] = Field(description="The placed minima, in id order.")
    names: list[str]
    samplers: list[str | None]
    x: list[float]
    y: list[float]
    stress: float | None = Field(description="Kruskal's stress-1 of the map (0: planar distances are exact).")
    classical_stress: float | None = Field(description="Stress-1 of classical MDS, for comparison.")
    variance_2d: float | None = Field(
        description="Sum of the two largest positive eigenvalues of the classical MDS Gram matrix over the sum of "
                    "its positive eigenvalues (1: the distances are those of points on a plane).")
    pending: list[str] = Field(description="Minima of the family not placed yet (their distances are missing).")
    result_id: str | None = Field(description="The distances result the map is drawn from (null: method 'error').")
    alignment: Literal["pairwise", "reference"] | None = Field(
        None, description="How the distances removed the permutations: 'pairwise' (every pair aligned, the paper's "
        "way) or 'reference' (every minimum aligned once to the reference: an upper bound on the symmetry-reduced "
        "distance, docs/method.md §5 'Many minima'; POST /api/analyses/distances with two ids gives a pair's "
        "pairwise distance); null: method 'error'.")
    reference: dict | None = Field(
        None, description="With alignment 'reference': the reference minimum (id, name, sha256 of its checkpoint).")


@router.get(
    "/map", response_model=MapResponse, summary="The minima map of one family (MDS of its distances), JSON or CSV",
    responses={200: {"content": {"text/csv": {}}, "description": "the map (format=csv: id,name,sampler,x,y,"
                                                                 "train_error,test_error)"},
               404: {"description": "no minimum belongs to this family"},
               422: {"description": "unknown metric or format, or a metric the family's distances lack"}},
)
def read_map(
    session: SessionDep,
    family: str = Query(..., min_length=1, max_length=64, description="The family key of a minimum's record."),
    metric: Metric = Query("geodesic", description="The distance (docs/method.md §5)."),
    format: TableFormat = Query("json", description=FORMAT_DOC),
):
    if format == "csv":
        text = service.map_csv(session, family, metric)  # NotFound unless the family exists: its key is hex
        return Response(text, media_type=CSV_MEDIA_TYPE, headers=attachment(f"toroid-map-{family[:24]}-{metric}.csv"))
    return service.family_map(session, family, metric)
