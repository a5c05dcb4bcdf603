"""Compare: what the `/compare` route does. What sets 2–20 runs apart (the config fields whose
values differ, and a legend label per run), and their metric series aligned on one list of
rounds."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.errors import NotFound, Unprocessable
from app.labels import shown
from app.schemas import ComparePublic, CompareRun
from models import results_repo, simulations_repo
from scarcity.config import SimulationConfig

COMPARE_MIN, COMPARE_MAX = 2, 20
LABEL_FIELDS = 3  # differing fields shown in a label; the rest are in `differing`


def parse_ids(text: str, *, field: str = "ids") -> list[uuid.UUID]:
    """A comma-separated list of 2–20 distinct simulation ids; 422 naming `field` otherwise."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    ids: list[uuid.UUID] = []
    for part in parts:
        try:
            ids.append(uuid.UUID(part))
        except ValueError:
            raise Unprocessable(
                [{"field": field, "message": f"{part[:40]!r} is not a simulation id"}]
            ) from None
    if not COMPARE_MIN <= len(ids) <= COMPARE_MAX:
        message = f"give {COMPARE_MIN} to {COMPARE_MAX} simulation ids, got {len(ids)}"
        raise Unprocessable([{"field": field, "message": message}])
    if len(set(ids)) < len(ids):
        raise Unprocessable([{"field": field, "message": "an id is given twice"}])
    return ids


def run_label(name: str | None, differing: dict[str, Any], simulation_id: uuid.UUID) -> str:
    """What a legend calls a run among others: its name, then what sets it apart."""
    items = list(differing.items())[:LABEL_FIELDS]
    texts = [f"{field}={shown(value)}" for field, value in items]
    if len(differing) > LABEL_FIELDS:
        texts.append("…")
    parts = [part for part in (name, ", ".join(texts)) if part]
    return " · ".join(parts) or str(simulation_id)[:8]


def differing_fields(configs: list[dict[str, Any]]) -> list[str]:
    """Config fields (in `SimulationConfig` order, then any others) not equal in every config."""
    names = list(SimulationConfig.model_fields)
    names += sorted({key for config in configs for key in config} - set(names))
    return [n for n in names if any(c.get(n) != configs[0].get(n) for c in configs[1:])]


def compare_simulations(session: Session, owner: str, ids_text: str) -> ComparePublic:
    """What sets 2–20 runs apart, and their metric series aligned by round."""
    ids = parse_ids(ids_text)
    found = {row.id: row for row in simulations_repo.get_simulations(session, ids, owner)}
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise NotFound(f"simulation {', '.join(missing)} not found")
    rows = [found[i] for i in ids]
    fields = differing_fields([row.config for row in rows])
    runs = []
    for row in rows:
        differing = {field: row.config.get(field) for field in fields}
        runs.append(
            CompareRun(
                id=row.id,
                name=row.name,
                tags=row.tags or {},
                status=row.status,  # type: ignore[arg-type]
                preset=row.preset,
                differing=differing,
                label=run_label(row.name, differing, row.id),
            )
        )
    stored = results_repo.metrics_of(session, ids)
    rounds = sorted({number for _, number, _ in stored})
    position = {number: k for k, number in enumerate(rounds)}
    column = {simulation_id: k for k, simulation_id in enumerate(ids)}
    series: dict[str, list[list[float | None]]] = {}
    for simulation_id, number, metrics in stored:
        for name, value in metrics.items():
            if name not in series:
                series[name] = [[None] * len(rounds) for _ in ids]
            series[name][column[simulation_id]][position[number]] = value
    return ComparePublic(
        differing_fields=fields,
        runs=runs,
        rounds=rounds,
        metrics=dict(sorted(series.items())),
    )
