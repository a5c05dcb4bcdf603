"""The SF-HFE building blocks: experts, router, client, server, meta-learner, gossip, data."""

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
