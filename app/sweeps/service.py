"""Sweeps: what the `/sweeps` routes do, one function each. A sweep expands into ordinary
simulations.

`POST /sweeps` checks every run of the sweep as `POST /simulations` would (schema, limits, work
budget) before anything is stored, so a bad point is a 422 naming it and nothing is created.
Runs are stored together (`models/sweep.py`: pending until a slot of `max_concurrent` frees)
and run by the same workers as any simulation.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import random
import statistics
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app import idempotency
from app.admission import Admission
from app.datasets.service import owned_by
from app.errors import Conflict, NotFound, Unprocessable, validation_detail
from app.labels import shown
from app.negotiation import table
from app.pagination import decode_cursor, encode_position
from app.schemas import (
    MetricSummary,
    SimulationCreate,
    SpaceRange,
    SpaceValues,
    SweepCreate,
    SweepProgress,
    SweepPublic,
    SweepResultRow,
    SweepResultsPublic,
    SweepsPublic,
)
from app.simulations.service import resolved_config
from models import (
    FINISHED_STATUSES,
    Simulation,
    SimulationStatus,
    Sweep,
    results_repo,
    simulations_repo,
    sweeps_repo,
)
from models.db import session_scope
from models.settings import Settings
from scarcity.config import SimulationConfig

NOT_VARIABLE = ("seed",)  # the sweep's `seeds` set it
ENDPOINT = "POST /sweeps"  # what an Idempotency-Key is scoped to


def _problem(field: str, message: str) -> Unprocessable:
    return Unprocessable([{"field": field, "message": message}])


def _check_space(body: SweepCreate) -> None:
    if getattr(body.base, "seed", None) is not None:  # each run's seed comes from `seeds`
        raise _problem("base.seed", "a sweep takes its runs' seeds from `seeds`: set that instead")
    for key, param in body.space.items():
        if key not in SimulationConfig.model_fields or key in NOT_VARIABLE:
            hint = "set `seeds` instead" if key in NOT_VARIABLE else "not a config field"
            raise _problem(f"space.{key}", f"cannot vary {key!r}: {hint}")
        if isinstance(param, SpaceRange):
            if body.method == "grid":
                raise _problem(
                    f"space.{key}",
                    "a grid takes `values`; uniform and log_uniform ranges need method random",
                )
            if not param.min < param.max:
                raise _problem(f"space.{key}", f"min {param.min} must be below max {param.max}")
            if param.distribution == "log_uniform" and param.min <= 0:
                raise _problem(f"space.{key}", "log_uniform needs min > 0")
    if body.method == "random" and body.run_cap is None:
        raise _problem("run_cap", "random search needs run_cap: how many runs to draw")
    if len(set(body.seeds)) < len(body.seeds):
        raise _problem("seeds", "a seed is given twice")


def _size(body: SweepCreate) -> int:
    """How many runs the sweep makes, computed before any is generated."""
    if body.method == "random":
        assert body.run_cap is not None
        return body.run_cap
    grid = math.prod(len(p.values) for p in body.space.values() if isinstance(p, SpaceValues))
    total = grid * len(body.seeds)
    return min(total, body.run_cap) if body.run_cap is not None else total


def _draw(param: SpaceValues | SpaceRange, rng: random.Random) -> Any:
    if isinstance(param, SpaceValues):
        return rng.choice(param.values)
    if param.distribution == "uniform":
        return rng.uniform(param.min, param.max)
    return math.exp(rng.uniform(math.log(param.min), math.log(param.max)))


def expand(body: SweepCreate) -> list[tuple[dict[str, Any], int]]:
    """The sweep's runs as (point: varied field → value, seed), in order: every configuration
    with each seed, configurations in grid order (the space's first field slowest) or drawn."""
    total = _size(body)
    configs_needed = math.ceil(total / len(body.seeds))
    keys = list(body.space)
    points: list[dict[str, Any]]
    if body.method == "grid":
        grids = [p.values for p in body.space.values() if isinstance(p, SpaceValues)]
        combos = itertools.islice(itertools.product(*grids), configs_needed)
        points = [dict(zip(keys, combo, strict=True)) for combo in combos]
    else:
        rng = random.Random(body.random_seed)
        points = [
            {key: _draw(param, rng) for key, param in body.space.items()}
            for _ in range(configs_needed)
        ]
    return [(point, seed) for point in points for seed in body.seeds][:total]


def _shown(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={shown(v)}" for k, v in point.items())


def _run_error(exc: ValidationError | Unprocessable, point: dict[str, Any], index: int) -> Any:
    """A run's error with its field as the sweep request names it (`space.x`, `seeds`, `base.x`)."""
    details: list[Any]
    if isinstance(exc, ValidationError):
        details = validation_detail(list(exc.errors()))
    else:
        details = list(exc.detail) if isinstance(exc.detail, list) else [exc.detail]
    where = f"run {index + 1}" + (f" ({_shown(point)})" if point else "")
    out = []
    for detail in details:
        field = str(detail.get("field") or "")
        head = field.split(".")[0]
        if head in point:
            named = f"space.{field}"
        else:
            named = "seeds" if head == "seed" else f"base.{field}"
        out.append({"field": named, "message": f"{where}: {detail.get('message')}"})
    return Unprocessable(out)


def plan_runs(
    body: SweepCreate, settings: Settings, sweep_id: uuid.UUID, owner: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every run's resolved config and attrs (name, tags, notes), each checked as a submission."""
    _check_space(body)
    total = _size(body)
    if total > settings.max_sweep_runs:
        field = "run_cap" if body.method == "random" else "space"
        raise _problem(
            field,
            f"the sweep makes {total:,} runs (configurations × seeds, capped by run_cap), over "
            f"the limit of {settings.max_sweep_runs:,} (SCARCITY_MAX_SWEEP_RUNS)",
        )
    base = body.base.model_dump(exclude_none=True)  # type: ignore[attr-defined]
    if "name" in base:
        raise _problem("base.name", "name the sweep (`name`); its runs are named after it")
    tags = {**base.pop("tags", {}), "sweep": str(sweep_id)}
    notes = base.pop("notes", None)
    title = body.name or f"sweep {str(sweep_id)[:8]}"
    owns = owned_by(owner)  # asked once per data set the runs name
    runs = []
    for index, (point, seed) in enumerate(expand(body)):
        try:
            request = SimulationCreate.model_validate({**base, **point, "seed": seed})
            config = resolved_config(request, settings, owns)
        except (ValidationError, Unprocessable) as exc:
            raise _run_error(exc, point, index) from None
        name = " · ".join(part for part in (title, _shown(point), f"seed {seed}") if part)
        attrs = {"name": name[:200], "tags": tags, "notes": notes}
        runs.append((config.model_dump(), attrs))
    return runs


def stored_request(body: SweepCreate) -> dict[str, Any]:
    """The request as sent, with the early-stopping rule in full (the worker reads it)."""
    request = body.model_dump(mode="json", exclude_unset=True)
    if body.early_stop is not None:
        request["early_stop"] = body.early_stop.model_dump(mode="json")
    return request


async def create_sweep(
    body: SweepCreate,
    owner: str,
    settings: Settings,
    admission: Admission,
    response: Response,
    idempotency_key: str | None,
) -> Any:
    """Store and queue the sweep once per Idempotency-Key (`store_sweep`, off the event loop),
    then hand the runs it released to the admission."""

    async def create() -> tuple[SweepPublic, str]:
        public, released = await run_in_threadpool(store_sweep, body, owner, settings)
        admission.publish(released)
        return public, f"/sweeps/{public.id}"

    return await idempotency.created_once(owner, idempotency_key, ENDPOINT, body, create, response)


def store_sweep(
    body: SweepCreate, owner: str, settings: Settings
) -> tuple[SweepPublic, list[uuid.UUID]]:
    """Store the sweep with all its runs and queue the first ones; (resource, ids to publish).

    Committed here, before the ids are published: a worker must find the rows it is sent.
    """
    sweep_id = uuid.uuid4()
    runs = plan_runs(body, settings, sweep_id, owner)
    cap = settings.max_active_per_owner
    with session_scope() as session:
        if simulations_repo.count_active(session, owner, up_to=cap) >= cap:
            raise Conflict(
                f"too many active simulations: limit {cap} queued or running per owner "
                "(SCARCITY_MAX_ACTIVE_PER_OWNER)"
            )
        sweep = sweeps_repo.create_sweep(
            session,
            sweep_id=sweep_id,
            owner=owner,
            name=body.name,
            request=stored_request(body),
            varied=list(body.space),
            method=body.method,
            max_concurrent=body.max_concurrent,
            runs=runs,
        )
        released = sweeps_repo.release_pending(
            session,
            sweep.id,
            max_active_per_owner=cap,
            lease_seconds=settings.worker_lease_seconds,
        )
        public = to_public(session, [sweep])[0]
    return public, released


def get_sweep(session: Session, sweep_id: uuid.UUID, owner: str) -> Sweep:
    """The owner's sweep, or 404 (another owner's sweep is not found either)."""
    sweep = sweeps_repo.get_sweep(session, sweep_id, owner)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} not found")
    return sweep


def read_sweep(session: Session, sweep_id: uuid.UUID, owner: str) -> SweepPublic:
    return to_public(session, [get_sweep(session, sweep_id, owner)])[0]


def _status(sweep: Sweep, counts: Mapping[str, int]) -> str:
    if sweep.cancel_requested:
        return "cancelled"
    unfinished = sum(n for status, n in counts.items() if status not in FINISHED_STATUSES)
    return "running" if unfinished else "finished"


def to_public(session: Session, sweeps: list[Sweep]) -> list[SweepPublic]:
    counts = sweeps_repo.sweep_status_counts(session, [s.id for s in sweeps])
    out = []
    for sweep in sweeps:
        by_status = counts.get(sweep.id, {})
        progress = {status.value: by_status.get(status.value, 0) for status in SimulationStatus}
        out.append(
            SweepPublic(
                id=sweep.id,
                name=sweep.name,
                status=_status(sweep, by_status),  # type: ignore[arg-type]
                method=sweep.method,  # type: ignore[arg-type]
                varied=sweep.varied,
                max_concurrent=sweep.max_concurrent,
                progress=SweepProgress(total=sweep.total, **progress),
                created_at=sweep.created_at,
                request=sweep.request,
            )
        )
    return out


def list_sweeps(session: Session, owner: str, *, limit: int, cursor: str | None) -> SweepsPublic:
    """A page of the owner's sweeps, newest first."""
    after = decode_cursor(cursor) if cursor else None
    rows = sweeps_repo.list_sweeps(session, owner=owner, limit=limit + 1, after=after)
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_position(last.created_at, last.id)
    return SweepsPublic(data=to_public(session, rows[:limit]), next_cursor=next_cursor)


def cancel_sweep(session: Session, sweep_id: uuid.UUID, owner: str) -> SweepPublic:
    sweep = get_sweep(session, sweep_id, owner)
    public = to_public(session, [sweep])[0]
    if public.status != "running":
        raise Conflict(f"sweep {sweep_id} already {public.status}")
    sweeps_repo.cancel_sweep(session, sweep)
    return to_public(session, [sweep])[0]


def delete_sweep(session: Session, sweep_id: uuid.UUID, owner: str) -> None:
    sweep = get_sweep(session, sweep_id, owner)
    running = sweeps_repo.sweep_status_counts(session, [sweep.id])[sweep.id].get("running", 0)
    if running:
        raise Conflict(f"sweep {sweep_id} has {running} running simulation(s): cancel it first")
    sweeps_repo.delete_sweep(session, sweep)


def _key(run: Simulation, varied: list[str]) -> str:
    return json.dumps([run.config.get(field) for field in varied])


def results(session: Session, sweep_id: uuid.UUID, owner: str) -> SweepResultsPublic:
    """One row per configuration: mean ± std of the succeeded runs' final metrics over seeds."""
    sweep = get_sweep(session, sweep_id, owner)
    runs = sweeps_repo.sweep_runs(session, sweep.id)
    finals = results_repo.final_metrics(session, runs)
    groups: dict[str, list[Simulation]] = {}
    for run in runs:  # plan order: the first run of a configuration places its row
        groups.setdefault(_key(run, sweep.varied), []).append(run)
    rows = []
    for members in groups.values():
        done = [r for r in members if r.status == SimulationStatus.succeeded]
        values: dict[str, list[float]] = {}
        for run in done:
            for name, value in finals.get(run.id, {}).items():
                values.setdefault(name, []).append(value)
        metrics = {
            name: MetricSummary(
                mean=statistics.fmean(vs),
                std=statistics.stdev(vs) if len(vs) > 1 else None,
                count=len(vs),
            )
            for name, vs in sorted(values.items())
        }
        params = {field: members[0].config.get(field) for field in sweep.varied}
        rows.append(
            SweepResultRow(params=params, runs=len(members), succeeded=len(done), metrics=metrics)
        )
    return SweepResultsPublic(sweep_id=sweep.id, varied=sweep.varied, rows=rows)


def results_csv(body: SweepResultsPublic) -> str:
    """One line per configuration: the varied fields, runs, succeeded, then `<metric>_mean`,
    `<metric>_std` and `<metric>_count` for every metric seen, sorted; blanks where absent."""
    names = sorted({name for row in body.rows for name in row.metrics})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = [f"{n}_{part}" for n in names for part in ("mean", "std", "count")]
    writer.writerow([*body.varied, "runs", "succeeded", *columns])
    for row in body.rows:
        cells: list[Any] = [row.params.get(f) for f in body.varied] + [row.runs, row.succeeded]
        for name in names:
            summary = row.metrics.get(name)
            cells += ["", "", ""] if summary is None else [summary.mean, summary.std, summary.count]
        writer.writerow(["" if c is None else c for c in cells])
    return out.getvalue()


def results_table(
    session: Session, sweep_id: uuid.UUID, owner: str, *, format: str | None, accept: str | None
) -> Any:
    """The sweep's results as JSON (`SweepResultsPublic`) or CSV, as negotiated."""
    body = results(session, sweep_id, owner)
    return table(body, lambda: results_csv(body), format=format, accept=accept)
