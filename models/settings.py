"""Service settings: one pydantic-settings class read by app/, worker/, models/ and migrations/.

Every value comes from the environment with the `SCARCITY_` prefix (or a `.env` file); the
README lists each with its default. The engine (`scarcity/`) never reads these.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCARCITY_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///./scarcity.db", description="SQLAlchemy URL: SQLite file or PostgreSQL."
    )
    broker_url: str | None = Field(
        None, description="Redis URL of the Celery broker; unset = embedded in-process worker."
    )
    api_keys: str | None = Field(
        None, description="Comma-separated bearer tokens; unset = open API (no auth)."
    )
    host: str = Field("127.0.0.1", description="`scarcity serve` bind address.")
    port: int = Field(8000, description="`scarcity serve` port.")
    auto_migrate: bool | None = Field(
        None,
        description="Apply migrations at start-up; unset = yes for SQLite, no for PostgreSQL.",
    )

    # Reliability (docs/reliability.md): the database is the record, the queue a doorbell.
    worker_lease_seconds: float = Field(
        60.0, gt=0, description="A running simulation with an older heartbeat is taken over."
    )
    max_attempts: int = Field(
        5, ge=1, description="Claims after which a simulation that keeps dying is failed."
    )
    simulation_time_limit_seconds: float = Field(
        3600.0, gt=0, description="Wall-clock limit of one simulation; then it fails."
    )
    db_retry_seconds: float = Field(
        60.0,
        gt=0,
        description="How long a worker retries a failing database write before it releases "
        "the simulation (it stays running and is resumed; no attempt is charged).",
    )
    checkpoint_seconds: float = Field(
        5.0,
        ge=0,
        description="A running simulation's engine checkpoint is written at most this often "
        "(and after its last round and when its worker stops it); a resume recomputes the "
        "rounds after it, identically. 0: after every round.",
    )
    round_write_seconds: float = Field(
        0.2,
        ge=0,
        description="Rounds are written in one transaction per this much time (progress, "
        "events and cancel checks follow it); 0: a transaction per round.",
    )
    publish_timeout_seconds: float = Field(
        2.0, gt=0, description="Bound on enqueueing a job; past it the reaper publishes later."
    )
    event_poll_seconds: float = Field(
        5.0,
        gt=0,
        description="Live events: how often a feed reads the database when no change "
        "notification came (one lost); a notification is read at once.",
    )

    # Input limits: over one → 422 naming the field and the limit.
    max_clients: int = Field(10_000, ge=1)
    max_rounds: int = Field(1_000, ge=1)
    max_samples_per_client: int = Field(10_000, ge=2)
    max_dim: int = Field(1_024, ge=1, description="Cap on input_dim and output_dim.")
    max_local_epochs: int = Field(100, ge=1)
    max_work: int = Field(
        500_000_000,
        ge=1,
        description="Cap on num_clients × rounds × samples_per_client × epochs per round.",
    )
    max_active_per_owner: int = Field(100, ge=1, description="Queued + running per owner.")
    max_sweep_runs: int = Field(
        1_000, ge=1, description="Runs of one sweep (configurations × seeds, after run_cap)."
    )
    max_body_bytes: int = Field(65_536, ge=1_024, description="Request body size cap.")
    max_page_size: int = Field(100, ge=1)

    # Uploaded data sets (POST /datasets): where they are stored and how big they may be.
    datasets_dir: str = Field(
        "datasets",
        description="The upload store: the API writes uploads here and every worker reads "
        "them (one directory, or volume, shared by all).",
    )
    max_upload_bytes: int = Field(
        64 * 1024 * 1024, ge=1_024, description="Request body cap of an upload (413 above)."
    )
    max_upload_rows: int = Field(1_000_000, ge=10, description="Rows of an uploaded file.")
    max_upload_columns: int = Field(
        1_024, ge=1, description="Feature columns of an uploaded file (label and clients aside)."
    )
    max_upload_classes: int = Field(1_024, ge=2, description="Classes of an uploaded label.")
    max_upload_cells: int = Field(
        32_000_000,
        ge=10,
        description="Rows × features of an upload (8 bytes each in memory): bounds what a "
        "compressed Parquet or .npz file may unpack to.",
    )

    torch_threads: int = Field(
        1, ge=1, description="Torch threads per running simulation (small ops: 1 is fastest)."
    )
    model_replay_seconds: float = Field(
        120.0,
        ge=0,
        description="GET /simulations/{id}/model recomputes the run up to the round asked "
        "for; it refuses (409) when the stored rounds it would recompute took longer than "
        "this. 0: only a running run's checkpointed round, which needs no recomputing.",
    )
    worker_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="`scarcity worker` serves Prometheus metrics here (pool process i: port+i).",
    )
    log_dir: str = Field("logs", description="Directory of scarcity.log.")
    log_format: Literal["text", "json"] = Field(
        "text", description="`json`: one JSON object a line, with simulation_id and attempt."
    )

    @property
    def api_key_list(self) -> list[str]:
        return [k.strip() for k in (self.api_keys or "").split(",") if k.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate


@lru_cache
def get_settings() -> Settings:
    return Settings()


#: The engine reads its upload store from the environment (`scarcity.datasets.uploaded`).
DATASETS_DIR_ENV = "SCARCITY_DATASETS_DIR"


def export_datasets_dir(settings: Settings) -> Path:
    """Hand the store directory to the engine in this process and the processes it starts
    (the embedded engine process, Celery's pool): a value read from `.env` is not in the
    environment otherwise. Made absolute, so a later change of directory keeps it."""
    path = Path(settings.datasets_dir).resolve()
    os.environ[DATASETS_DIR_ENV] = str(path)
    return path
