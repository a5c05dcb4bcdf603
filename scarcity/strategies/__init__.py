"""Federated strategies of the shared model: the registry of every `Strategy` by its config
name (`RunConfig.strategy`), and `make_strategy` to build the configured one.

Each module cites its paper and states its update rule; the math lives in
`scarcity.strategies.functions`.
"""

from __future__ import annotations

from scarcity.errors import ConfigError
from scarcity.params import Param, RunConfig, unique
from scarcity.strategies.base import ClientModel, ClientUpdates, FitInstructions, Strategy
from scarcity.strategies.bulyan import Bulyan
from scarcity.strategies.ditto import Ditto
from scarcity.strategies.dp_fedavg import DPFedAvg
from scarcity.strategies.fedavg import FedAvg
from scarcity.strategies.fedavg_ft import FedAvgFT
from scarcity.strategies.fedavgm import FedAvgM
from scarcity.strategies.fedmedian import FedMedian
from scarcity.strategies.fedopt import FedAdagrad, FedAdam, FedYogi
from scarcity.strategies.fedprox import FedProx
from scarcity.strategies.fedtrimmedavg import FedTrimmedAvg
from scarcity.strategies.ifca import IFCA
from scarcity.strategies.krum import Krum, MultiKrum
from scarcity.strategies.local import Local
from scarcity.strategies.qfedavg import QFedAvg
from scarcity.strategies.reptile import Reptile
from scarcity.strategies.scaffold import Scaffold

STRATEGIES: dict[str, type[Strategy]] = {
    "fedavg": FedAvg,
    "reptile": Reptile,
    "fedavgm": FedAvgM,
    "fedprox": FedProx,
    "fedadagrad": FedAdagrad,
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
    "fedmedian": FedMedian,
    "fedtrimmedavg": FedTrimmedAvg,
    "krum": Krum,
    "multikrum": MultiKrum,
    "bulyan": Bulyan,
    "qfedavg": QFedAvg,
    "dp_fedavg": DPFedAvg,
    "scaffold": Scaffold,
    "local": Local,
    "fedavg_ft": FedAvgFT,
    "ditto": Ditto,
    "ifca": IFCA,
}


def strategy_params() -> list[Param]:
    """The config fields the strategies declare, each once, in registry order."""
    return unique(param for cls in STRATEGIES.values() for param in cls.params)


def make_strategy(config: RunConfig) -> Strategy:
    """The strategy `config.strategy` names, reading its parameters from `config`."""
    try:
        cls = STRATEGIES[config.strategy]
    except KeyError:
        raise ConfigError(
            "strategy", f"unknown {config.strategy!r}, expected one of {sorted(STRATEGIES)}"
        ) from None
    return cls(config)


__all__ = [
    "STRATEGIES",
    "Bulyan",
    "ClientModel",
    "ClientUpdates",
    "DPFedAvg",
    "Ditto",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgFT",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "FitInstructions",
    "IFCA",
    "Krum",
    "Local",
    "MultiKrum",
    "QFedAvg",
    "Reptile",
    "Scaffold",
    "Strategy",
    "make_strategy",
    "strategy_params",
]
