"""The catalogue: presets, strategies, scenarios, partitions and models a config can name. Each
route calls one function of `app/catalogue/service.py`; all are CPU only, so `async` keeps them
off the thread pool."""

from __future__ import annotations

from fastapi import APIRouter

from app.catalogue import service
from app.deps import OwnerDep
from app.responses import UNAUTHORIZED
from app.schemas import (
    ModelPublic,
    PartitionPublic,
    PresetPublic,
    ScenarioPublic,
    StrategyPublic,
)

# Tagged "system" as they were before the catalogue had a package: the tag is part of the
# published document (generated clients group operations by it).
router = APIRouter(tags=["system"])


@router.get(
    "/presets", status_code=200, response_model=list[PresetPublic], responses={401: UNAUTHORIZED}
)
async def list_presets(_: OwnerDep) -> list[PresetPublic]:
    """Every preset with its description and fully resolved default config."""
    return service.presets()


@router.get(
    "/strategies",
    status_code=200,
    response_model=list[StrategyPublic],
    responses={401: UNAUTHORIZED},
)
async def list_strategies(_: OwnerDep) -> list[StrategyPublic]:
    """Every federated strategy (`strategy` in a config) with its parameters and paper."""
    return service.strategies()


@router.get(
    "/scenarios",
    status_code=200,
    response_model=list[ScenarioPublic],
    responses={401: UNAUTHORIZED},
)
async def list_scenarios(_: OwnerDep) -> list[ScenarioPublic]:
    """Every scenario over time (`scenario` in a config), its parameters and its paper."""
    return service.scenarios()


@router.get(
    "/partitions",
    status_code=200,
    response_model=list[PartitionPublic],
    responses={401: UNAUTHORIZED},
)
async def list_partitions(_: OwnerDep) -> list[PartitionPublic]:
    """Every split of a real data set (`partition` in a config), its parameters and the
    benchmark it mirrors."""
    return service.partitions()


@router.get(
    "/models", status_code=200, response_model=list[ModelPublic], responses={401: UNAUTHORIZED}
)
async def list_models(_: OwnerDep) -> list[ModelPublic]:
    """Every supervised model (`model` in a config) and the parameters it reads."""
    return service.models()
