"""The Alembic revisions build exactly `models.Base.metadata`, on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, delete, func, inspect, pool, select, text
from sqlalchemy.orm import Session

from models import (
    Base,
    Checkpoint,
    ClientInsight,
    RoundMetrics,
    Simulation,
    lease,
    migrate,
    simulations_repo,
)
from models.db import dispose_engines, make_engine
from models.settings import Settings

TABLES = set(Base.metadata.tables)


@pytest.fixture(params=["sqlite_url", "postgres_url"], ids=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of each kind."""
    return str(request.getfixturevalue(request.param))


def schema_diff(url: str) -> list[Any]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_head_on_an_empty_database_matches_the_models(empty_url: str) -> None:
    migrate.upgrade_to_head(empty_url)

    assert migrate.current_revision(empty_url) == migrate.head_revision()
    assert migrate.is_at_head(empty_url)
    assert table_names(empty_url) == TABLES | {"alembic_version"}
    assert schema_diff(empty_url) == []


def test_downgrade_to_base_drops_every_table_and_upgrade_rebuilds_them(empty_url: str) -> None:
    migrate.upgrade_to_head(empty_url)

    command.downgrade(migrate.alembic_config(empty_url), "base")
    assert migrate.current_revision(empty_url) is None
    assert table_names(empty_url) <= {"alembic_version"}

    migrate.upgrade_to_head(empty_url)
    assert schema_diff(empty_url) == []


def test_each_revision_steps_down_and_up_keeping_the_rows(empty_url: str) -> None:
    """0002 alters `simulations`, which the per-round tables reference with ON DELETE CASCADE:
    a SQLite table rebuild with foreign keys on would wipe their rows."""
    migrate.upgrade_to_head(empty_url)
    engine = make_engine(empty_url)
    try:
        with Session(engine) as session, session.begin():
            config = {"preset": "stage1", "rounds": 1}
            sim = simulations_repo.create_simulation(session, owner="", config=config)
            session.add(
                RoundMetrics(
                    simulation_id=sim.id,
                    round=1,
                    metrics={"loss": 1.0},
                    expert_usage={},
                    gossip_pairs=[],
                    duration_seconds=0.1,
                )
            )
    finally:
        engine.dispose()
    config = migrate.alembic_config(empty_url)
    for step in ("-1", "+1"):
        (command.downgrade if step == "-1" else command.upgrade)(config, step)
        counts = [count_rows(empty_url, table) for table in ("simulations", "round_metrics")]
        assert counts == [1, 1], step
    assert migrate.is_at_head(empty_url) and schema_diff(empty_url) == []


def count_rows(url: str, table: str) -> int:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(empty_url: str) -> None:
    migrate.upgrade_to_head(empty_url)
    migrate.upgrade_to_head(empty_url)
    assert migrate.is_at_head(empty_url)


def test_concurrent_migrators_queue_instead_of_colliding(empty_url: str) -> None:
    """The `migrate` service and several API processes may start at once."""
    code = "import sys; from models.migrate import upgrade_to_head; upgrade_to_head(sys.argv[1])"
    root = Path(migrate.__file__).resolve().parents[1]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, empty_url],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    for run in runs:
        output, _ = run.communicate(timeout=120)
        assert run.returncode == 0, output
    assert migrate.is_at_head(empty_url)
    assert schema_diff(empty_url) == []


def test_postgres_gets_native_jsonb_uuid_and_timestamptz(postgres_url: str) -> None:
    migrate.upgrade_to_head(postgres_url)
    engine = create_engine(postgres_url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        types = dict(
            connection.execute(
                text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'simulations'"
                )
            ).all()
        )
        cascades = connection.execute(
            text(
                "SELECT count(*) FROM information_schema.referential_constraints "
                "WHERE delete_rule = 'CASCADE'"
            )
        ).scalar_one()
    engine.dispose()
    assert types["config"] == "jsonb"
    assert types["id"] == "uuid"
    assert types["created_at"] == "timestamp with time zone"
    # every per-round table references simulations; simulations, sweeps, idempotency_keys and
    # datasets (an upload outlives the runs on it, and DELETE refuses while one names it)
    # reference nothing
    assert cascades == len(TABLES) - 4


def test_per_round_rows_are_deleted_with_their_simulation(database_url: str) -> None:
    from scarcity.results import Insight, RoundResult

    engine = make_engine(database_url)  # the service's engine: SQLite enforces foreign keys
    try:
        with Session(engine) as session, session.begin():
            config = {"preset": "stage8", "rounds": 2}
            simulation = simulations_repo.create_simulation(session, owner="", config=config)
            claim = lease.claim(session, simulation.id, lease_seconds=60, max_attempts=5)
            assert claim is not None
            insight = Insight.of(0, 1.0, 0.0, 0.0, 0.0, "0", {})
            result = RoundResult(round=1, metrics={"loss": 1.0}, insights=(insight,))
            assert lease.save_round(session, claim, result, b"state") is False
        with Session(engine) as session, session.begin():
            session.execute(delete(Simulation).execution_options(synchronize_session=False))
            for table in (RoundMetrics, ClientInsight, Checkpoint):
                assert session.scalar(select(func.count()).select_from(table)) == 0
    finally:
        engine.dispose()


def test_offline_sql_for_postgres_uses_native_types(capsys: pytest.CaptureFixture[str]) -> None:
    config = migrate.alembic_config("postgresql+psycopg://nobody@invalid.invalid/none")
    command.upgrade(config, "head", sql=True)
    sql = capsys.readouterr().out
    assert "JSONB" in sql and "UUID" in sql and "TIMESTAMP WITH TIME ZONE" in sql
    assert "ON DELETE CASCADE" in sql


def test_alembic_cli_works_from_another_directory(sqlite_url: str, tmp_path: Path) -> None:
    ini = Path(migrate.__file__).resolve().parents[1] / "alembic.ini"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(ini),
            "-x",
            f"url={sqlite_url}",
            "upgrade",
            "head",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert migrate.is_at_head(sqlite_url)


# --- ensure_schema: what the service runs at start-up ------------------------------------------


def test_ensure_schema_refuses_a_database_behind_and_says_how_to_migrate(empty_url: str) -> None:
    with pytest.raises(RuntimeError, match="scarcity migrate"):
        migrate.ensure_schema(empty_url, auto_migrate=False)
    assert migrate.current_revision(empty_url) is None  # untouched


def test_ensure_schema_with_auto_migrate_brings_the_database_to_head(
    empty_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not the repo root
    migrate.ensure_schema(empty_url, auto_migrate=True)
    assert migrate.is_at_head(empty_url)
    migrate.ensure_schema(empty_url, auto_migrate=False)  # at head: nothing to do


def test_ensure_schema_by_default_migrates_sqlite_but_not_postgres(
    sqlite_url: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrate, "get_settings", lambda: Settings(auto_migrate=None))
    migrate.ensure_schema(sqlite_url)
    assert migrate.is_at_head(sqlite_url)
    with pytest.raises(RuntimeError, match="scarcity migrate"):
        migrate.ensure_schema(postgres_url)


def test_ensure_schema_refuses_tables_created_without_alembic(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url, poolclass=pool.NullPool)
    Base.metadata.create_all(engine)
    engine.dispose()
    with pytest.raises(RuntimeError, match="stamp head"):
        migrate.ensure_schema(sqlite_url, auto_migrate=True)


def test_ensure_schema_refuses_a_revision_from_a_newer_version(sqlite_url: str) -> None:
    migrate.upgrade_to_head(sqlite_url)
    engine = create_engine(sqlite_url, poolclass=pool.NullPool)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'fffffffff'"))
    engine.dispose()
    assert not migrate.is_at_head(sqlite_url)
    with pytest.raises(RuntimeError, match="does not know"):
        migrate.ensure_schema(sqlite_url, auto_migrate=True)


def test_stored_configs_on_real_data_keep_their_resampled_standardised_data(
    empty_url: str,
) -> None:
    """Revision 0004: a simulation stored on a real data set before natural sizes gets
    `resample_to_size` and `feature_scaling` written into its config, and every stored run
    `engine_version` 1, so the worker resolves it to the data and the arithmetic it had (the
    same as `scarcity.config.stored_config`); fields already explicit stay as they are;
    downgrading takes them out again."""
    import json
    import uuid

    from scarcity.config import resolve_config, stored_config

    golden = json.loads(
        (Path(__file__).parents[1] / "scarcity" / "fixtures" / "before_strategies.json").read_text()
    )["cases"]
    config = migrate.alembic_config(empty_url)
    command.upgrade(config, "0002")
    stored = {
        "digits": golden["stage2_digits_batched"]["config"],
        "wine": golden["stage8_wine_reference"]["config"],
        "synthetic": golden["stage8_skew_batched"]["config"],
        "explicit": {**golden["stage2_digits_batched"]["config"], "resample_to_size": False},
    }
    ids = {name: str(uuid.uuid4()) for name in stored}
    engine = create_engine(empty_url, poolclass=pool.NullPool)

    def stored_configs() -> dict[str, dict[str, object]]:
        # In SQL: the ORM's table is the head revision's, not this one's.
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, config FROM simulations")).all()
        by_id = {str(row.id): row.config for row in rows}
        return {
            name: json.loads(c) if isinstance(c, str) else c
            for name, c in ((name, by_id[ids[name]]) for name in stored)
        }

    try:
        with engine.begin() as connection:
            for name, fields in stored.items():
                connection.execute(
                    text(
                        "INSERT INTO simulations (id, owner, preset, status, config, "
                        "rounds_total, rounds_completed, created_at, attempt, cancel_requested) "
                        "VALUES (:id, '', :preset, 'succeeded', :config, :rounds, 0, :now, 0, "
                        "false)"
                    ),
                    {
                        "id": ids[name],
                        "preset": fields["preset"],
                        "config": json.dumps(fields),
                        "rounds": fields["rounds"],
                        "now": "2026-11-30 12:00:00+00:00",
                    },
                )
        command.upgrade(config, "head")
        migrated = stored_configs()
        for name in ("digits", "wine"):
            assert migrated[name] == {
                **stored[name],
                "resample_to_size": True,
                "feature_scaling": "standard",
                "engine_version": 1,
                "apply_meta_params": False,
                "ensemble_evaluation": False,
                "label_free": False,
            }
            assert resolve_config(migrated[name]) == resolve_config(stored_config(stored[name]))
            assert resolve_config(migrated[name]).resample_to_size
        assert migrated["synthetic"] == {
            **stored["synthetic"],
            "engine_version": 1,
            "apply_meta_params": False,
            "ensemble_evaluation": False,
            "label_free": False,
        }
        assert resolve_config(migrated["synthetic"]) == resolve_config(
            stored_config(stored["synthetic"])
        )
        assert migrated["explicit"] == {
            **stored["explicit"],
            "feature_scaling": "standard",
            "engine_version": 1,
            "apply_meta_params": False,
            "ensemble_evaluation": False,
            "label_free": False,
        }
        command.downgrade(config, "0002")
        assert stored_configs()["digits"] == stored["digits"]
    finally:
        engine.dispose()


def test_stored_stage5_and_later_configs_keep_the_meta_parameters_unused(empty_url: str) -> None:
    """Revision 0008: a config stored before `apply_meta_params` gets it off, so the worker's
    `SimulationConfig.model_validate` accepts it (its preset now switches it on) and the run
    trains as it did; downgrading takes it out again."""
    import json
    import uuid

    from scarcity.config import SimulationConfig, resolve_config

    fields = resolve_config(preset="stage8").model_dump(mode="json")
    del fields["apply_meta_params"]
    with pytest.raises(ValueError, match="apply_meta_params"):
        SimulationConfig.model_validate(fields)  # what the worker would read, unmigrated
    config = migrate.alembic_config(empty_url)
    command.upgrade(config, "0007")
    engine = create_engine(empty_url, poolclass=pool.NullPool)
    simulation_id = str(uuid.uuid4())

    def stored() -> dict[str, object]:
        with engine.connect() as connection:
            value = connection.execute(text("SELECT config FROM simulations")).scalar_one()
        return json.loads(value) if isinstance(value, str) else value

    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO simulations (id, owner, preset, status, config, rounds_total, "
                    "rounds_completed, created_at, attempt, cancel_requested) VALUES (:id, '', "
                    "'stage8', 'running', :config, 5, 2, :now, 1, false)"
                ),
                {"id": simulation_id, "config": json.dumps(fields), "now": "2026-12-01"},
            )
        command.upgrade(config, "0008")
        assert stored() == {**fields, "apply_meta_params": False}
        assert not SimulationConfig.model_validate(stored()).apply_meta_params
        command.downgrade(config, "0007")
        assert stored() == fields
    finally:
        engine.dispose()


def test_runs_stored_before_0005_get_no_name_tags_or_notes(empty_url: str) -> None:
    """Revision 0005 adds the run's name, tags and notes; a stored run keeps everything else
    (0004 writes `engine_version` 1 into every stored config, 0008 `apply_meta_params` off)."""
    config = migrate.alembic_config(empty_url)
    command.upgrade(config, "0002")
    engine = create_engine(empty_url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO simulations (id, owner, preset, status, config, rounds_total, "
                    "rounds_completed, created_at, attempt, cancel_requested) VALUES "
                    "(:id, '', 'stage1', 'queued', :config, 2, 0, :now, 0, false)"
                ),
                {
                    "id": "6f7c3b1e-0000-4000-8000-000000000001",
                    "config": '{"preset": "stage1", "rounds": 2}',
                    "now": "2026-11-30 12:00:00+00:00",
                },
            )
    finally:
        engine.dispose()
    migrate.upgrade_to_head(empty_url)
    engine = make_engine(empty_url)
    try:
        with Session(engine) as session:
            (row,) = session.scalars(select(Simulation)).all()
            assert (row.name, row.tags, row.notes) == (None, None, None)
            assert row.config == {
                "preset": "stage1",
                "rounds": 2,
                "engine_version": 1,
                "apply_meta_params": False,
                "ensemble_evaluation": False,
                "label_free": False,
            }
            assert row.status == "queued"
            from app.schemas import SimulationPublic

            assert SimulationPublic.from_row(row).tags == {}
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("before", "revision", "field"),
    [("0008", "0009", "ensemble_evaluation"), ("0009", "0010", "label_free")],
)
def test_runs_stored_before_a_new_field_keep_its_old_value(
    empty_url: str, before: str, revision: str, field: str
) -> None:
    """Revision 0009 writes `ensemble_evaluation: false` into every stored config (a new
    request has it on), so a resumed run reports the metrics it did; 0010 `label_free: false`
    (a new stage 8 request trains without labels), so it trains as it did. A config that says
    keeps its value; downgrading takes out the false ones."""
    import json

    from scarcity.config import SimulationConfig

    config = migrate.alembic_config(empty_url)
    command.upgrade(config, before)
    stored = {
        "6f7c3b1e-0000-4000-8000-000000000001": {"preset": "stage1", "rounds": 2},
        "6f7c3b1e-0000-4000-8000-000000000002": {
            "preset": "stage1",
            "rounds": 2,
            field: True,
        },
    }
    engine = create_engine(empty_url, poolclass=pool.NullPool)

    def configs() -> dict[str, dict[str, object]]:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, config FROM simulations")).all()
        return {
            str(row.id): json.loads(row.config) if isinstance(row.config, str) else row.config
            for row in rows
        }

    try:
        with engine.begin() as connection:
            for sim_id, fields in stored.items():
                connection.execute(
                    text(
                        "INSERT INTO simulations (id, owner, preset, status, config, "
                        "rounds_total, rounds_completed, created_at, attempt, cancel_requested) "
                        "VALUES (:id, '', 'stage1', 'running', :config, 2, 1, :now, 1, false)"
                    ),
                    {"id": sim_id, "config": json.dumps(fields), "now": "2026-12-01 12:00:00"},
                )
        command.upgrade(config, revision)
        old, explicit = (configs()[sim_id] for sim_id in stored)
        assert old == {"preset": "stage1", "rounds": 2, field: False}
        assert explicit == stored["6f7c3b1e-0000-4000-8000-000000000002"]
        assert getattr(SimulationConfig.model_validate(old), field) is False  # the worker
        command.downgrade(config, before)
        old, explicit = (configs()[sim_id] for sim_id in stored)
        assert old == {"preset": "stage1", "rounds": 2} and explicit[field]
    finally:
        engine.dispose()


def test_a_run_stored_before_0011_answers_and_resumes_naming_the_new_rounds_participants(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revision 0011 adds `round_metrics.participants` and `client_data.malicious`. A sampled,
    attacked run stored before it (2 of 4 rounds, its checkpoint, its clients' data) answers:
    its stored rounds with null participants, its clients' flags not recorded (null: SQL cannot
    replay the attackers' draw), while the clients of runs without attackers (the field 0 or
    absent) are not malicious; the worker resumes it and the rounds it computes name their
    participants, and every round's metrics are the uninterrupted run's."""
    import uuid

    import sqlalchemy as sa

    from app.results import service
    from models.base import JSONType
    from models.settings import get_settings
    from scarcity.config import resolve_config
    from scarcity.core.data import describe_clients
    from scarcity.simulation import Simulation as Engine
    from worker import tasks

    config = resolve_config(
        preset="baseline",
        num_clients=8,
        clients_per_round=3,
        rounds=4,
        samples_per_client=20,
        seed=5,
        malicious_fraction=0.25,
        attack="sign_flip",
    )
    fields = config.model_dump(mode="json")
    uninterrupted = [r.to_dict() for r in Engine(config).rounds()]
    engine_run = Engine(config)
    first = [engine_run.run_round().to_dict() for _ in range(2)]
    checkpoint = engine_run.checkpoint()
    old_clients = [c.to_dict() for c in describe_clients(config)]
    for row in old_clients:
        del row["malicious"]  # what the worker wrote before 0011

    no_attackers = {k: v for k, v in fields.items() if k != "malicious_fraction"}
    peaceful = {uuid.uuid4(): {**fields, "malicious_fraction": 0.0}, uuid.uuid4(): no_attackers}

    alembic_config = migrate.alembic_config(empty_url)
    command.upgrade(alembic_config, "0010")
    sim_id = uuid.uuid4()
    # The tables as revision 0010 has them (the ORM's are the head's).
    simulations = sa.table(
        "simulations",
        *(sa.column(name, kind) for name, kind in (("id", sa.Uuid()), ("config", JSONType))),
        *(sa.column(name) for name in ("owner", "preset", "status", "rounds_total")),
        *(sa.column(name) for name in ("rounds_completed", "created_at", "attempt")),
        sa.column("cancel_requested"),
    )
    round_metrics = sa.table(
        "round_metrics",
        sa.column("simulation_id", sa.Uuid()),
        sa.column("round"),
        *(sa.column(name, JSONType) for name in ("metrics", "expert_usage", "gossip_pairs")),
        sa.column("duration_seconds"),
    )
    client_data = sa.table(
        "client_data",
        sa.column("simulation_id", sa.Uuid()),
        *(sa.column(name) for name in ("client_id", "train_samples", "test_samples")),
        *(sa.column(name, JSONType) for name in ("label_counts", "target_mean", "target_std")),
    )
    checkpoints = sa.table(
        "checkpoints",
        sa.column("simulation_id", sa.Uuid()),
        sa.column("round"),
        sa.column("state", sa.LargeBinary()),
    )

    def insert_simulation(
        connection: Any, id: uuid.UUID, config: dict, status: str, rounds_completed: int = 0
    ) -> None:
        connection.execute(
            simulations.insert().values(
                id=id,
                config=config,
                owner="",
                preset="baseline",
                status=status,
                rounds_total=4,
                rounds_completed=rounds_completed,
                created_at=sa.func.current_timestamp(),
                attempt=1,
                cancel_requested=False,
            )
        )

    engine = create_engine(empty_url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            # released (no heartbeat): the next claim resumes it
            insert_simulation(connection, sim_id, fields, "running", rounds_completed=2)
            connection.execute(
                round_metrics.insert(),
                [
                    {
                        "simulation_id": sim_id,
                        "round": r["round"],
                        "metrics": r["metrics"],
                        "expert_usage": r["expert_usage"],
                        "gossip_pairs": r["gossip_pairs"],
                        "duration_seconds": r["duration_seconds"],
                    }
                    for r in first
                ],
            )
            connection.execute(
                client_data.insert(), [{"simulation_id": sim_id, **c} for c in old_clients]
            )
            connection.execute(
                checkpoints.insert().values(simulation_id=sim_id, round=2, state=checkpoint)
            )
            for peaceful_id, peaceful_config in peaceful.items():
                insert_simulation(connection, peaceful_id, peaceful_config, "succeeded")
                connection.execute(
                    client_data.insert(), [{"simulation_id": peaceful_id, **old_clients[0]}]
                )
    finally:
        engine.dispose()
    command.upgrade(alembic_config, "head")

    def answers() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        service_engine = make_engine(empty_url)
        try:
            with Session(service_engine) as session:
                rows = service.metrics_rows(
                    session, sim_id, from_round=None, to_round=None, names=None
                )
                return rows, service.client_data(session, sim_id, owner="")
        finally:
            service_engine.dispose()

    rows, clients = answers()
    assert [row["participants"] for row in rows] == [None, None]
    assert [row["metrics"] for row in rows] == [r["metrics"] for r in first]
    assert [row["metrics"]["clients_sampled"] for row in rows] == [3.0, 3.0]  # sampled, though
    assert [c["malicious"] for c in clients] == [None] * 8
    service_engine = make_engine(empty_url)
    try:
        with Session(service_engine) as session:
            for peaceful_id in peaceful:
                assert [c["malicious"] for c in service.client_data(session, peaceful_id, "")] == [
                    False
                ]
    finally:
        service_engine.dispose()
    assert [c["label_counts"] for c in clients] == [c["label_counts"] for c in old_clients]

    monkeypatch.setenv("SCARCITY_DATABASE_URL", empty_url)
    get_settings.cache_clear()
    try:
        assert tasks.execute(sim_id) == "succeeded"
    finally:
        dispose_engines()
        get_settings.cache_clear()
    rows, _ = answers()
    assert [row["round"] for row in rows] == [1, 2, 3, 4]
    assert [row["metrics"] for row in rows] == [r["metrics"] for r in uninterrupted]
    assert [row["participants"] for row in rows] == [None, None] + [
        r["participants"] for r in uninterrupted[2:]
    ]
    assert all(len(r["participants"]) == 3 for r in uninterrupted)
