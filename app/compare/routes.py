"""Compare: what sets a few runs apart, and their metrics side by side; the route calls
`app/compare/service.py`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from app.compare import service
from app.deps import OwnerDep, ReadSessionDep, reject_unknown_query
from app.responses import SIMULATION_ERRORS as ERRORS
from app.schemas import ComparePublic

router = APIRouter(tags=["compare"], dependencies=[Depends(reject_unknown_query)])


@router.get("/compare", status_code=200, response_model=ComparePublic, responses=ERRORS)
def compare_simulations(
    session: ReadSessionDep,
    owner: OwnerDep,
    ids: str = Query(
        max_length=1000,
        description="2–20 distinct simulation ids, comma-separated.",
    ),
) -> ComparePublic:
    """The config fields whose values differ between the runs (with each run's value and a
    legend label), and every metric's series per run aligned on one list of rounds."""
    return service.compare_simulations(session, owner, ids)
