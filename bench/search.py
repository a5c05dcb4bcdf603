"""Search benchmark: `GET /simulations` filters over 10,000 stored runs, SQLite and PostgreSQL.

Stores 10,000 finished stage2 runs of one owner (4 data sets × 5 learning rates × 5 seeds,
each with a final round's metrics), then times `simulations_repo.list_simulations` for a page
of 20 with three queries — a config filter, a config and final-metric filter, and a config
filter ordered by a final metric — and prints p50 / p99 over the repetitions and the
database's plan. PostgreSQL is used when it answers at BENCH_POSTGRES_ADMIN_URL (default:
loopback, user postgres), in a database of its own, dropped afterwards. `--quick`: 1,000 runs,
fewer repeats.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from app.search import parse_filter, parse_order
from models import RoundMetrics, Simulation, search, simulations_repo
from models.db import dispose_engines, session_scope
from models.migrate import upgrade_to_head
from scarcity.config import resolve_config

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
QUERIES = (
    ("config.dataset = 'digits'", None),
    ("config.dataset = 'digits' and metrics.test_accuracy >= 0.9", None),
    ("config.dataset = 'digits'", "metrics.loss asc"),
)


def fill(url: str, runs: int) -> None:
    upgrade_to_head(url)
    configs = [
        resolve_config(
            {"preset": "stage2", "dataset": d, "learning_rate": lr, "seed": s}
        ).model_dump()
        for d in ("digits", "wine", "iris", "breast_cancer")
        for lr in (0.01, 0.05, 0.1, 0.2, 0.5)
        for s in range(5)
    ]
    rows = []
    for i in range(runs):
        row = simulations_repo.new_simulation(owner="", config=configs[i % len(configs)])
        row.status, row.rounds_completed = "succeeded", 2
        rows.append(row)
    columns = [c.key for c in Simulation.__table__.columns]
    with session_scope(url) as session:
        session.execute(insert(Simulation), [{k: getattr(r, k) for k in columns} for r in rows])
        metrics = [
            {
                "simulation_id": r.id,
                "round": 2,
                "metrics": {"loss": (i % 97) / 97, "test_accuracy": (i % 89) / 89},
                "expert_usage": {},
                "gossip_pairs": [],
                "duration_seconds": 0.0,
            }
            for i, r in enumerate(rows)
        ]
        session.execute(insert(RoundMetrics), metrics)
        if url.startswith("postgresql"):
            session.execute(text("ANALYZE"))


def measure(url: str, repeats: int) -> None:
    for filter_text, order_text in QUERIES:
        conditions, order = parse_filter(filter_text), parse_order(order_text)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            with session_scope(url, read_only=True) as session:
                simulations_repo.list_simulations(
                    session, owner="", conditions=conditions, order=order, limit=21
                )
            times.append(time.perf_counter() - started)
        times.sort()
        p50, p99 = times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
        shown = filter_text + (f"  order_by={order_text}" if order_text else "")
        print(f"  {shown}: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
        query = search.apply(select(Simulation).where(Simulation.owner == ""), conditions, order)
        query = query.order_by(Simulation.created_at.desc(), Simulation.id.desc()).limit(21)
        is_pg = url.startswith("postgresql")
        sql = str(
            query.compile(
                dialect=postgresql.dialect() if is_pg else sqlite.dialect(),
                compile_kwargs={"literal_binds": True},
            )
        )
        with session_scope(url, read_only=True) as session:
            plan = session.execute(text(("EXPLAIN " if is_pg else "EXPLAIN QUERY PLAN ") + sql))
            for line in plan:
                print("      " + str(line[-1]))


def main(quick: bool = False) -> None:
    runs, repeats = (1_000, 20) if quick else (10_000, 200)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'search.db'}"
        fill(url, runs)
        print(f"SQLite, {runs:,} runs:")
        measure(url, repeats)
        dispose_engines()
    try:
        import psycopg

        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:  # no PostgreSQL here: SQLite alone
        print(f"PostgreSQL not reachable ({type(exc).__name__}): skipped")
        return
    name = f"scarcity_bench_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = ADMIN_URL.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
            url = f"{url}/{name}"
            fill(url, runs)
            print(f"PostgreSQL, {runs:,} runs:")
            measure(url, repeats)
            dispose_engines()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
