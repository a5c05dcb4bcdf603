"""What the routes do, one function each; the route's session owns the transaction."""

from __future__ import annotations

import base64
import csv
import io
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.errors import Conflict, NotAcceptable, NotFound, Unprocessable
from app.schemas import FIELD_LIMITS, SimulationPublic, field_caps
from models import (
    FINISHED_STATUSES,
    ClientInsight,
    MetaParams,
    Simulation,
    SimulationLog,
    SimulationStatus,
    store,
)
from models.settings import Settings
from scarcity.config import SimulationConfig, participants_per_round, resolve_config
from scarcity.core.data import client_sizes, describe_clients


def check_limits(config: SimulationConfig, settings: Settings) -> None:
    """The resolved config (preset defaults included) against every limit: 422 naming the field.

    The request schema caps the fields a client sends; a preset's default can still exceed a
    limit the operator lowered, and the work budget spans several fields.
    """
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
    # Passes over the data per round: local training, plus the autoencoders' in stage 8, by
    # the clients drawn each round (all of them without sampling). With quantity skew the
    # batched execution pads every client to the largest one.
    epochs = config.local_epochs + (config.ssl_epochs if config.structure_discovery else 0)
    size = max(client_sizes(config))
    work = participants_per_round(config) * config.rounds * size * epochs
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


def resolved_config(body: BaseModel, settings: Settings) -> SimulationConfig:
    """The request's preset and overrides resolved to a full config, checked against the limits."""
    config = resolve_config(body.model_dump(exclude_none=True))
    check_limits(config, settings)
    return config


def get_simulation(session: Session, simulation_id: uuid.UUID, owner: str) -> Simulation:
    simulation = store.get_simulation(session, simulation_id, owner)
    if simulation is None:
        raise NotFound(f"simulation {simulation_id} not found")
    return simulation


def to_public(session: Session, rows: list[Simulation]) -> list[SimulationPublic]:
    """The public resources of `rows`, with their final metrics loaded in one query."""
    finals = store.final_metrics(session, rows)
    return [SimulationPublic.from_row(row, finals.get(row.id)) for row in rows]


def encode_cursor(row: Simulation) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, sim_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(sim_id)
    except ValueError as exc:
        raise Unprocessable(
            [{"field": "cursor", "message": "not a cursor from a previous page"}]
        ) from exc


def list_simulations(
    session: Session,
    owner: str,
    *,
    status: str | None,
    preset: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Simulation], str | None]:
    rows = store.list_simulations(
        session,
        owner=owner,
        status=status,
        preset=preset,
        limit=limit + 1,
        after=decode_cursor(cursor) if cursor else None,
    )
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def cancel_simulation(session: Session, simulation_id: uuid.UUID, owner: str) -> Simulation:
    simulation = get_simulation(session, simulation_id, owner)
    if simulation.status in FINISHED_STATUSES:
        raise Conflict(f"simulation {simulation_id} already finished ({simulation.status})")
    store.request_cancel(session, simulation)
    return simulation


def delete_simulation(session: Session, simulation_id: uuid.UUID, owner: str) -> None:
    simulation = get_simulation(session, simulation_id, owner)
    if simulation.status == SimulationStatus.running:
        raise Conflict(f"simulation {simulation_id} is running: cancel it first")
    store.delete_simulation(session, simulation)


def check_round_range(from_round: int | None, to_round: int | None) -> None:
    if from_round is not None and to_round is not None and from_round > to_round:
        raise Unprocessable(
            [
                {
                    "field": "from_round",
                    "message": f"from_round ({from_round}) is after to_round ({to_round})",
                }
            ]
        )


def metrics_rows(
    session: Session,
    simulation_id: uuid.UUID,
    *,
    from_round: int | None,
    to_round: int | None,
    names: list[str] | None,
) -> list[dict[str, Any]]:
    check_round_range(from_round, to_round)
    rows = store.round_metrics(session, simulation_id, from_round, to_round)
    return [
        {
            "round": row.round,
            "metrics": {k: v for k, v in row.metrics.items() if names is None or k in names},
            "expert_usage": row.expert_usage,
            "gossip_pairs": row.gossip_pairs,
        }
        for row in rows
    ]


def meta_params_rows(
    session: Session, simulation_id: uuid.UUID, *, from_round: int | None, to_round: int | None
) -> list[MetaParams]:
    check_round_range(from_round, to_round)
    return store.meta_params(session, simulation_id, from_round, to_round)


def insights(
    session: Session,
    simulation_id: uuid.UUID,
    *,
    round: int | None,
    client_id: int | None,
    limit: int,
    offset: int,
) -> list[ClientInsight]:
    return store.insights(
        session, simulation_id, round=round, client_id=client_id, limit=limit, offset=offset
    )


def log_lines(session: Session, simulation_id: uuid.UUID, after_id: int) -> list[SimulationLog]:
    return store.logs(session, simulation_id, after_id)


METRICS_MEDIA_TYPES = ("application/json", "text/csv")


def negotiate(accept: str | None, offered: tuple[str, ...] = METRICS_MEDIA_TYPES) -> str:
    """The offered media type the `Accept` header prefers (RFC 9110 §12.5.1): the highest q,
    the most specific match deciding each type's q, ties going to the first offered; q=0 means
    "not this". No header = the first offered; nothing acceptable = 406."""
    if not accept or not accept.strip():
        return offered[0]
    ranges: list[tuple[str, str, float]] = []
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        kind, _, sub = media.lower().partition("/")
        ranges.append((kind, sub or "*", q))

    def quality(media_type: str) -> float:
        kind, _, sub = media_type.partition("/")
        best, specificity = 0.0, -1
        for r_kind, r_sub, q in ranges:
            if (r_kind, r_sub) == (kind, sub):
                rank = 2
            elif r_kind == kind and r_sub == "*":
                rank = 1
            elif (r_kind, r_sub) == ("*", "*"):
                rank = 0
            else:
                continue
            if rank > specificity:
                best, specificity = q, rank
        return best

    scored = [(quality(media), -i, media) for i, media in enumerate(offered)]
    q, _, media = max(scored)
    if q <= 0:
        raise NotAcceptable(
            f"no acceptable representation; this resource offers {', '.join(offered)}"
        )
    return media


def metrics_csv(rows: list[dict[str, Any]]) -> str:
    """One line per round: `round` then every metric name seen, sorted; blanks where absent."""
    names = sorted({name for row in rows for name in row["metrics"]})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["round", *names])
    for row in rows:
        writer.writerow([row["round"], *(row["metrics"].get(n, "") for n in names)])
    return out.getvalue()


#: Synthetic rows the API makes itself to describe a run the worker has not started yet;
#: beyond, the worker writes the description when it builds the data anyway.
MAX_DESCRIBED_ROWS = 1_000_000


def client_data(session: Session, simulation_id: uuid.UUID, owner: str) -> list[dict[str, Any]]:
    """Each client's data: the rows the worker wrote when the run started, or, before then,
    made from the run's config and stored (a pure function of it, so a queued run shows the
    data it will train on)."""
    simulation = get_simulation(session, simulation_id, owner)
    rows = store.client_data(session, simulation_id)
    if not rows:
        config = SimulationConfig.model_validate(simulation.config)
        synthetic_rows = config.num_clients * config.samples_per_client
        if config.dataset == "synthetic" and synthetic_rows > MAX_DESCRIBED_ROWS:
            raise Conflict(
                f"simulation {simulation_id}: its {synthetic_rows:,} synthetic rows are "
                "described when a worker starts it; ask again once it is running"
            )
        store.save_client_data(
            session, simulation_id, [c.to_dict() for c in describe_clients(config)]
        )
        rows = store.client_data(session, simulation_id)
    return [row.to_dict() for row in rows]


def client_data_csv(clients: list[dict[str, Any]]) -> str:
    """One line per client: its rows, then one column per class (or per target's mean, std)."""
    first = clients[0] if clients else {}
    labels = len(first.get("label_counts") or [])
    targets = len(first.get("target_mean") or [])
    header = ["client_id", "train_samples", "test_samples", *(f"label_{k}" for k in range(labels))]
    header += [f"target_{j}_{stat}" for j in range(targets) for stat in ("mean", "std")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for c in clients:
        moments = [
            value for j in range(targets) for value in (c["target_mean"][j], c["target_std"][j])
        ]
        writer.writerow(
            [
                c["client_id"],
                c["train_samples"],
                c["test_samples"],
                *(c["label_counts"] or []),
                *moments,
            ]
        )
    return out.getvalue()
