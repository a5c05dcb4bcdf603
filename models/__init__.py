"""Persistence: ORM tables, sessions and the queries on them; the one place that knows tables."""

from models.attempt import Attempt
from models.base import Base
from models.checkpoint import Checkpoint
from models.client_data import ClientData
from models.client_insight import ClientInsight
from models.dataset import UploadedDataset
from models.idempotency import IdempotencyKey
from models.meta_params import MetaParams
from models.round_metrics import RoundMetrics
from models.simulation import FINISHED_STATUSES, Simulation, SimulationStatus
from models.simulation_log import SimulationLog
from models.sweep import Sweep

__all__ = [
    "Attempt",
    "Base",
    "Checkpoint",
    "ClientData",
    "ClientInsight",
    "IdempotencyKey",
    "FINISHED_STATUSES",
    "MetaParams",
    "RoundMetrics",
    "Simulation",
    "SimulationLog",
    "SimulationStatus",
    "Sweep",
    "UploadedDataset",
]
