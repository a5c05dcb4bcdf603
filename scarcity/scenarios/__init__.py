"""Scenarios over time: the registry of every `Scenario` by its config name
(`RunConfig.scenario`), and `make_scenario` to build the configured one.

A scenario decides which rows each client holds in each round (`scarcity.scenarios.base`);
`static` (the default) is every run as it always was.
"""

from __future__ import annotations

from scarcity.errors import ConfigError
from scarcity.params import Param, RunConfig, unique
from scarcity.scenarios.arrivals import Arrivals
from scarcity.scenarios.availability import Availability
from scarcity.scenarios.base import ClientRows, EvalSets, Scenario, Score
from scarcity.scenarios.drift import Drift
from scarcity.scenarios.few_labels import FewLabels
from scarcity.scenarios.static import Static
from scarcity.scenarios.tasks import Tasks

SCENARIOS: dict[str, type[Scenario]] = {
    "static": Static,
    "drift": Drift,
    "tasks": Tasks,
    "availability": Availability,
    "few_labels": FewLabels,
    "arrivals": Arrivals,
}


def scenario_params() -> list[Param]:
    """The config fields the scenarios declare, each once, in registry order."""
    return unique(param for cls in SCENARIOS.values() for param in cls.params)


def scenario_class(name: str) -> type[Scenario]:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigError(
            "scenario", f"unknown {name!r}, expected one of {', '.join(SCENARIOS)}"
        ) from None


def make_scenario(config: RunConfig, base: ClientRows, classes: int) -> Scenario:
    """The scenario `config.scenario` names over the clients' `base` rows."""
    return scenario_class(config.scenario)(config, base, classes)


__all__ = [
    "SCENARIOS",
    "Arrivals",
    "Availability",
    "ClientRows",
    "Drift",
    "EvalSets",
    "FewLabels",
    "Scenario",
    "Score",
    "Static",
    "Tasks",
    "make_scenario",
    "scenario_class",
    "scenario_params",
]
