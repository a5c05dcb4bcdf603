"""The SF-HFE building blocks: experts, router, client, server, meta-learner, gossip, data.

The names are loaded on first use: a module that needs one piece of `scarcity.core` (say
`core.training`) then does not import the client, which imports the components, which may be
on their way in (an import cycle otherwise hidden only by import order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scarcity.lazy import lazy_names

if TYPE_CHECKING:
    from scarcity.core.client import Client
    from scarcity.core.experts import (
        DriftExpert,
        Expert,
        MemoryConsolidationExpert,
        MetaAdaptationExpert,
        StructureExpert,
    )
    from scarcity.core.meta_learner import MetaLearner
    from scarcity.core.router import Router
    from scarcity.core.server import Server

#: Each public name → the module that defines it.
_HOMES = {
    "Client": "scarcity.core.client",
    "DriftExpert": "scarcity.core.experts",
    "Expert": "scarcity.core.experts",
    "MemoryConsolidationExpert": "scarcity.core.experts",
    "MetaAdaptationExpert": "scarcity.core.experts",
    "StructureExpert": "scarcity.core.experts",
    "MetaLearner": "scarcity.core.meta_learner",
    "Router": "scarcity.core.router",
    "Server": "scarcity.core.server",
}

__all__ = [
    "Client",
    "DriftExpert",
    "Expert",
    "MemoryConsolidationExpert",
    "MetaAdaptationExpert",
    "MetaLearner",
    "Router",
    "Server",
    "StructureExpert",
]


__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())
