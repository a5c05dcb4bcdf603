"""The catalogue: what a config can name (presets, strategies, scenarios, partitions, models),
listed from the engine's registries so the API never goes stale when the engine gains one. CPU
only."""

from __future__ import annotations

from app.schemas import (
    ModelPublic,
    PartitionPublic,
    PresetPublic,
    ScenarioPublic,
    StrategyPublic,
)
from scarcity.backbones import BACKBONES
from scarcity.config import PRESETS, SimulationConfig, resolve_config
from scarcity.partitions import PARTITIONERS
from scarcity.scenarios import SCENARIOS
from scarcity.strategies import STRATEGIES


def presets() -> list[PresetPublic]:
    return [
        PresetPublic(
            name=p.name,
            description=p.description,
            config=resolve_config({"preset": p.name}).model_dump(),
        )
        for p in PRESETS.values()
    ]


def strategies() -> list[StrategyPublic]:
    return [
        StrategyPublic(
            name=name, summary=cls.summary, paper=cls.paper, parameters=dict(cls.defaults)
        )
        for name, cls in STRATEGIES.items()
    ]


def scenarios() -> list[ScenarioPublic]:
    return [
        ScenarioPublic(
            name=name,
            summary=cls.summary,
            paper=cls.paper,
            parameters={p.name: cls.defaults.get(p.name) for p in cls.params},
        )
        for name, cls in SCENARIOS.items()
    ]


def partitions() -> list[PartitionPublic]:
    fields = SimulationConfig.model_fields
    return [
        PartitionPublic(
            name=name,
            summary=p.summary,
            mirrors=p.mirrors,
            parameters={f: fields[f].default for f in p.parameters},
            by_label=p.by_label,
        )
        for name, p in PARTITIONERS.items()
    ]


def models() -> list[ModelPublic]:
    fields = SimulationConfig.model_fields
    return [
        ModelPublic(
            name=name,
            description=cls.description,
            parameters={f: fields[f].default for f in cls.parameters},
        )
        for name, (cls, _) in BACKBONES.items()
    ]
