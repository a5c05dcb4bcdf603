"""Scarcity: SF-HFE simulations (Hierarchical Federated Ensembles under data scarcity).

The engine imports torch, numpy, pydantic and the standard library (scikit-learn only when a
bundled data set is used) — never the service (`app`, `worker`, `models`).

The names below are loaded on first use, so that `import scarcity.cli` (the `scarcity`
command's `--help` and `--version`) does not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scarcity.lazy import lazy_names

if TYPE_CHECKING:
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

#: Each public name → the module that defines it.
_HOMES = {
    "PRESETS": "scarcity.config",
    "SimulationConfig": "scarcity.config",
    "resolve_config": "scarcity.config",
    "Client": "scarcity.core",
    "DriftExpert": "scarcity.core",
    "Expert": "scarcity.core",
    "MemoryConsolidationExpert": "scarcity.core",
    "MetaAdaptationExpert": "scarcity.core",
    "MetaLearner": "scarcity.core",
    "Router": "scarcity.core",
    "Server": "scarcity.core",
    "StructureExpert": "scarcity.core",
    "GossipPair": "scarcity.results",
    "RoundResult": "scarcity.results",
    "Simulation": "scarcity.simulation",
    "SimulationError": "scarcity.simulation",
    "run_simulation": "scarcity.simulation",
}

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


__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())
