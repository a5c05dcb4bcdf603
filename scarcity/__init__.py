"""Scarcity: SF-HFE simulations (Hierarchical Federated Ensembles under data scarcity).

The engine imports torch, numpy, pydantic and the standard library (scikit-learn only when a
bundled data set is used) — never the service (`app`, `worker`, `models`).
"""

from scarcity.config import PRESETS, SimulationConfig, resolve_config
from scarcity.core import (
    Client,
    DriftExpert,
    Expert,
    MemoryConsolidationExpert,
    MetaAdaptationExpert,
    MetaLearner,
    Router,
    Server,
    StructureExpert,
)
from scarcity.results import GossipPair, RoundResult
from scarcity.simulation import Simulation, SimulationError, run_simulation

__all__ = [
    "PRESETS",
    "Client",
    "DriftExpert",
    "Expert",
    "GossipPair",
    "MemoryConsolidationExpert",
    "MetaAdaptationExpert",
    "MetaLearner",
    "RoundResult",
    "Router",
    "Server",
    "Simulation",
    "SimulationConfig",
    "SimulationError",
    "StructureExpert",
    "resolve_config",
    "run_simulation",
]
