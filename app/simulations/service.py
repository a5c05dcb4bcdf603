"""Simulations: what the `/simulations` routes do, one function each; the route's session owns
the transaction.

A submission is resolved to a full engine config and checked against every limit here (the
work budget included) before the admission queues it; sweeps check each of their runs the same
way (`app/sweeps/service.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi import Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app import idempotency, search
from app.admission import Admission
from app.datasets.service import owned_by, require_owned
from app.errors import Conflict, NotFound, Unprocessable, config_error_detail
from app.pagination import decode_cursor, decode_offset_cursor, encode_offset, encode_position
from app.schemas import (
    FIELD_LIMITS,
    MAX_TAGS,
    RUN_FIELDS,
    SimulationPublic,
    SimulationsPublic,
    SimulationUpdate,
    field_caps,
)
from models import FINISHED_STATUSES, Simulation, SimulationStatus, results_repo, simulations_repo
from models.settings import Settings
from scarcity.config import SimulationConfig, resolve_config
from scarcity.plan import ConfigError, RunPlan, plan

ENDPOINT = "POST /simulations"  # what an Idempotency-Key is scoped to


def check_limits(run_plan: RunPlan, settings: Settings) -> None:
    """The resolved config (preset defaults included) against every limit: 422 naming the field.

    The request schema caps the fields a client sends; a preset's default can still exceed a
    limit the operator lowered, and the work budget spans several fields.
    """
    config = run_plan.config
    caps = field_caps(settings)
    errors = [
        {
            "field": name,
            "message": f"{name} = {getattr(config, name)} (default of the preset or data set) "
            f"exceeds limit {cap} (SCARCITY_{FIELD_LIMITS[name].upper()})",
        }
        for name, cap in caps.items()
        # memory_capacity is capped only where a client sets it: its default (50) is no workload
        if name in FIELD_LIMITS and name != "memory_capacity" and getattr(config, name) > cap
    ]
    if errors:
        raise Unprocessable(errors)
    # The work estimate of the run plan: the clients drawn each round × rounds × the largest
    # client's rows × passes over them (local training, plus the autoencoders' in stage 8).
    work = run_plan.work
    if work > settings.max_work:
        raise Unprocessable(
            [
                {
                    "field": "num_clients",
                    "message": "work budget exceeded: clients per round (num_clients, or "
                    "clients_per_round / fraction_fit) × rounds × samples per client "
                    "(the largest client's rows) × (local_epochs + ssl_epochs "
                    f"with structure_discovery) = {work:,} > limit {settings.max_work:,} "
                    "(SCARCITY_MAX_WORK)",
                }
            ]
        )


def resolved_config(
    body: BaseModel, settings: Settings, owns: Callable[[str], bool]
) -> SimulationConfig:
    """The request's preset and overrides resolved to a full config, checked against the limits.
    `owns(dataset)`: whether the caller may run on that data set (an upload of theirs)."""
    require_owned(owns, getattr(body, "dataset", None))
    config = resolve_config(body.model_dump(exclude_none=True, exclude=set(RUN_FIELDS)))
    try:
        run_plan = plan(config)
    except ConfigError as error:  # the data cannot be split as asked
        raise Unprocessable([config_error_detail(error)]) from None
    check_limits(run_plan, settings)
    return config


def run_attrs(body: BaseModel) -> dict[str, Any]:
    """The request's name, tags and notes: the run's own columns, not engine settings."""
    return {name: value for name in RUN_FIELDS if (value := getattr(body, name)) is not None}


async def create_simulation(
    body: BaseModel,
    owner: str,
    settings: Settings,
    admission: Admission,
    response: Response,
    idempotency_key: str | None,
) -> Any:
    """Resolve and check the request, then queue the run once per Idempotency-Key."""
    config = resolved_config(body, settings, owned_by(owner))

    async def create() -> tuple[SimulationPublic, str]:
        simulation = await admission.submit(owner, config.model_dump(), run_attrs(body))
        return SimulationPublic.from_row(simulation), f"/simulations/{simulation.id}"

    return await idempotency.created_once(owner, idempotency_key, ENDPOINT, body, create, response)


def get_simulation(session: Session, simulation_id: uuid.UUID, owner: str) -> Simulation:
    """The owner's run, or 404 (another owner's run is not found either)."""
    simulation = simulations_repo.get_simulation(session, simulation_id, owner)
    if simulation is None:
        raise NotFound(f"simulation {simulation_id} not found")
    return simulation


def to_public(session: Session, rows: list[Simulation]) -> list[SimulationPublic]:
    """The public resources of `rows`, with their final metrics loaded in one query."""
    finals = results_repo.final_metrics(session, rows)
    return [SimulationPublic.from_row(row, finals.get(row.id)) for row in rows]


def read_simulation(session: Session, simulation_id: uuid.UUID, owner: str) -> SimulationPublic:
    return to_public(session, [get_simulation(session, simulation_id, owner)])[0]


def list_simulations(
    session: Session,
    owner: str,
    *,
    status: str | None,
    preset: str | None,
    filter: str | None = None,
    order_by: str | None = None,
    limit: int,
    cursor: str | None,
) -> SimulationsPublic:
    """A page of the owner's runs matching `filter`, sorted by `order_by` (app/search.py)."""
    conditions, order = search.parse_filter(filter), search.parse_order(order_by)
    offset = decode_offset_cursor(cursor) if cursor and order else 0
    rows = simulations_repo.list_simulations(
        session,
        owner=owner,
        status=status,
        preset=preset,
        conditions=conditions,
        order=order,
        limit=limit + 1,
        after=decode_cursor(cursor) if cursor and not order else None,
        offset=offset,
    )
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = (
            encode_offset(offset + limit) if order else encode_position(last.created_at, last.id)
        )
    return SimulationsPublic(data=to_public(session, rows[:limit]), next_cursor=next_cursor)


def update_simulation(
    session: Session, simulation_id: uuid.UUID, owner: str, body: SimulationUpdate
) -> SimulationPublic:
    """Name, notes (null clears) and tags (merged: null removes a key) of any run, running too."""
    simulation = get_simulation(session, simulation_id, owner)
    sent = body.model_fields_set
    changes: dict[str, Any] = {
        name: getattr(body, name) for name in ("name", "notes") if name in sent
    }
    if "tags" in sent:
        tags = dict(simulation.tags or {})
        for key, value in (body.tags or {}).items():
            if value is None:
                tags.pop(key, None)
            else:
                tags[key] = value
        if body.tags is None:  # `"tags": null` removes them all, as RFC 7396 reads it
            tags = {}
        if len(tags) > MAX_TAGS:
            raise Unprocessable(
                [
                    {
                        "field": "tags",
                        "message": f"at most {MAX_TAGS} tags, this would make {len(tags)}",
                    }
                ]
            )
        changes["tags"] = tags
    simulations_repo.update_simulation(session, simulation, changes)
    return to_public(session, [simulation])[0]


def cancel_simulation(session: Session, simulation_id: uuid.UUID, owner: str) -> SimulationPublic:
    """A queued run at once, a running one after its current round; 409 once finished."""
    simulation = get_simulation(session, simulation_id, owner)
    if simulation.status in FINISHED_STATUSES:
        raise Conflict(f"simulation {simulation_id} already finished ({simulation.status})")
    simulations_repo.request_cancel(session, simulation)
    return to_public(session, [simulation])[0]


def delete_simulation(session: Session, simulation_id: uuid.UUID, owner: str) -> None:
    """A run that is not running, with all its rounds; 409 while it runs."""
    simulation = get_simulation(session, simulation_id, owner)
    if simulation.status == SimulationStatus.running:
        raise Conflict(f"simulation {simulation_id} is running: cancel it first")
    simulations_repo.delete_simulation(session, simulation)
