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

from app import search
from app.errors import Conflict, NotAcceptable, NotFound, Unprocessable, config_error_detail
from app.schemas import (
    FIELD_LIMITS,
    MAX_TAGS,
    RUN_FIELDS,
    ComparePublic,
    CompareRun,
    SimulationPublic,
    SimulationUpdate,
    field_caps,
)
from models import (
    FINISHED_STATUSES,
    ClientInsight,
    MetaParams,
    Simulation,
    SimulationLog,
    SimulationStatus,
    results_repo,
    simulations_repo,
)
from models.base import as_utc
from models.settings import Settings
from scarcity.config import SimulationConfig, resolve_config
from scarcity.core.data import describe_clients
from scarcity.plan import ConfigError, RunPlan, plan


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


def resolved_config(body: BaseModel, settings: Settings) -> SimulationConfig:
    """The request's preset and overrides resolved to a full config, checked against the limits."""
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


def get_simulation(session: Session, simulation_id: uuid.UUID, owner: str) -> Simulation:
    simulation = simulations_repo.get_simulation(session, simulation_id, owner)
    if simulation is None:
        raise NotFound(f"simulation {simulation_id} not found")
    return simulation


def to_public(session: Session, rows: list[Simulation]) -> list[SimulationPublic]:
    """The public resources of `rows`, with their final metrics loaded in one query."""
    finals = results_repo.final_metrics(session, rows)
    return [SimulationPublic.from_row(row, finals.get(row.id)) for row in rows]


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def encode_position(created_at: datetime, row_id: uuid.UUID) -> str:
    """A newest-first page's cursor: the (created_at, id) of its last row."""
    return _encode(f"{created_at.isoformat()}|{row_id}")


def encode_cursor(row: Simulation) -> str:
    return encode_position(row.created_at, row.id)


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, sim_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(sim_id)
    except ValueError as exc:
        raise Unprocessable(
            [{"field": "cursor", "message": "not a cursor from a previous page"}]
        ) from exc


def decode_offset_cursor(cursor: str) -> int:
    """Pages of an `order_by` list: the cursor is the count of rows already shown."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if text.startswith("@") and text[1:].isdigit():
            return int(text[1:])
    except ValueError:
        pass
    raise Unprocessable(
        [{"field": "cursor", "message": "not a cursor from a previous page of this order_by"}]
    )


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
) -> tuple[list[Simulation], str | None]:
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
        next_cursor = _encode(f"@{offset + limit}") if order else encode_cursor(rows[limit - 1])
    return rows[:limit], next_cursor


def update_simulation(
    session: Session, simulation_id: uuid.UUID, owner: str, body: SimulationUpdate
) -> Simulation:
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
    return simulation


def cancel_simulation(session: Session, simulation_id: uuid.UUID, owner: str) -> Simulation:
    simulation = get_simulation(session, simulation_id, owner)
    if simulation.status in FINISHED_STATUSES:
        raise Conflict(f"simulation {simulation_id} already finished ({simulation.status})")
    simulations_repo.request_cancel(session, simulation)
    return simulation


def delete_simulation(session: Session, simulation_id: uuid.UUID, owner: str) -> None:
    simulation = get_simulation(session, simulation_id, owner)
    if simulation.status == SimulationStatus.running:
        raise Conflict(f"simulation {simulation_id} is running: cancel it first")
    simulations_repo.delete_simulation(session, simulation)


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
    rows = results_repo.round_metrics(session, simulation_id, from_round, to_round)
    return [
        {
            "round": row.round,
            "metrics": {k: v for k, v in row.metrics.items() if names is None or k in names},
            "expert_usage": row.expert_usage,
            "gossip_pairs": row.gossip_pairs,
            "participants": row.participants,
        }
        for row in rows
    ]


def meta_params_rows(
    session: Session, simulation_id: uuid.UUID, *, from_round: int | None, to_round: int | None
) -> list[MetaParams]:
    check_round_range(from_round, to_round)
    return results_repo.meta_params(session, simulation_id, from_round, to_round)


def insights(
    session: Session,
    simulation_id: uuid.UUID,
    *,
    round: int | None,
    client_id: int | None,
    limit: int,
    offset: int,
) -> list[ClientInsight]:
    return results_repo.insights(
        session, simulation_id, round=round, client_id=client_id, limit=limit, offset=offset
    )


def log_lines(session: Session, simulation_id: uuid.UUID, after_id: int) -> list[SimulationLog]:
    return results_repo.logs(session, simulation_id, after_id)


def attempts(session: Session, simulation_id: uuid.UUID, owner: str) -> list[dict[str, Any]]:
    """Provenance: who ran each attempt, on what software and machine (oldest first)."""
    get_simulation(session, simulation_id, owner)
    return [
        {
            "attempt": row.attempt,
            "worker": row.worker,
            "started_at": as_utc(row.started_at),  # SQLite hands it back naive
            "environment": row.environment,
        }
        for row in results_repo.attempts(session, simulation_id)
    ]


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


def wants_csv(format: str | None, accept: str | None) -> bool:
    """CSV or JSON for a table: `format=csv|json` wins, else `Accept` is negotiated (q-values
    honoured; nothing acceptable is a 406)."""
    if format is not None:
        return format == "csv"
    return negotiate(accept) == "text/csv"


def metrics_csv(rows: list[dict[str, Any]]) -> str:
    """One line per round: `round` then every metric name seen, sorted; blanks where absent.
    When a listed round was sampled, a last `participants` column: its clients' ids separated
    by spaces (blank where every client took part)."""
    names = sorted({name for row in rows for name in row["metrics"]})
    sampled = any(row.get("participants") is not None for row in rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["round", *names, *(["participants"] if sampled else [])])
    for row in rows:
        line = [row["round"], *(row["metrics"].get(n, "") for n in names)]
        if sampled:
            line.append(" ".join(map(str, row.get("participants") or [])))
        writer.writerow(line)
    return out.getvalue()


#: Synthetic rows the API makes itself to describe a run the worker has not started yet;
#: beyond, the worker writes the description when it builds the data anyway.
MAX_DESCRIBED_ROWS = 1_000_000


def client_data(session: Session, simulation_id: uuid.UUID, owner: str) -> list[dict[str, Any]]:
    """Each client's data: the rows the worker wrote when the run started, or, before then,
    made from the run's config and stored (a pure function of it, so a queued run shows the
    data it will train on)."""
    simulation = get_simulation(session, simulation_id, owner)
    rows = results_repo.client_data(session, simulation_id)
    if not rows:
        config = SimulationConfig.model_validate(simulation.config)
        synthetic_rows = config.num_clients * config.samples_per_client
        if config.dataset == "synthetic" and synthetic_rows > MAX_DESCRIBED_ROWS:
            raise Conflict(
                f"simulation {simulation_id}: its {synthetic_rows:,} synthetic rows are "
                "described when a worker starts it; ask again once it is running"
            )
        results_repo.save_client_data(
            session, simulation_id, [c.to_dict() for c in describe_clients(config)]
        )
        rows = results_repo.client_data(session, simulation_id)
    return [row.to_dict() for row in rows]


def client_data_csv(clients: list[dict[str, Any]]) -> str:
    """One line per client: its rows, whether it is an attacker (`true` / `false`, empty when
    not recorded), then one column per class (or per target's mean, std)."""
    first = clients[0] if clients else {}
    labels = len(first.get("label_counts") or [])
    targets = len(first.get("target_mean") or [])
    header = ["client_id", "train_samples", "test_samples", "malicious"]
    header += [f"label_{k}" for k in range(labels)]
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
                {True: "true", False: "false", None: ""}[c["malicious"]],
                *(c["label_counts"] or []),
                *moments,
            ]
        )
    return out.getvalue()


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


def shown(value: Any) -> str:
    """A config value as a label shows it: `0.1`, `true`, `null`, `digits`."""
    if isinstance(value, float):
        return f"{value:g}"
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


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
