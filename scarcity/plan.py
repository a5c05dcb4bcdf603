"""The run plan: what a valid config means for one run, worked out once, before it runs.

Validating a `SimulationConfig` checks each field and every combination of fields without
reading any data. What needs the data set comes here: the split of a real data set among the
clients (a partitioner may find it cannot be made, e.g. more clients than rows), each client's
size, the clients drawn per round and the work estimate the API budgets, and whether a
scenario can deal its rows (a class-incremental task sequence needs every client to hold every
task's classes). `plan` raises
`ConfigError` naming the field to change; the API answers it as a 422 on that field.
"""

from __future__ import annotations

from dataclasses import dataclass

from scarcity.config import SimulationConfig, participants_per_round
from scarcity.core.data import (
    NaturalSplit,
    client_sizes,
    make_federated_data,
    natural_split,
    scenario_rows,
)
from scarcity.errors import ConfigError
from scarcity.scenarios import make_scenario

__all__ = ["ConfigError", "RunPlan", "plan"]


@dataclass(frozen=True)
class RunPlan:
    """One run as it will happen: its config and what follows from it and its data."""

    config: SimulationConfig
    #: A real data set's split at natural sizes; None for synthetic data and
    #: `resample_to_size` (their clients hold the requested sizes).
    split: NaturalSplit | None
    #: Training samples of each client (its own held-out rows excluded).
    client_sizes: tuple[int, ...]
    #: Clients drawn each round (all of them without sampling).
    participants_per_round: int
    #: Passes over a client's data per round: local training, plus the autoencoders' in stage 8.
    passes_per_round: int

    @property
    def work(self) -> int:
        """The work estimate: participants × rounds × the largest client's rows × passes (the
        batched execution pads every client to the largest one), plus the replayed rows of
        each local epoch (`replay_size`)."""
        cfg = self.config
        replayed = cfg.replay_size * cfg.local_epochs
        rows = max(self.client_sizes) * self.passes_per_round + replayed
        return self.participants_per_round * cfg.rounds * rows


def plan(config: SimulationConfig) -> RunPlan:
    """The plan of `config`; raises `ConfigError` when its data cannot be split as asked."""
    natural = config.dataset != "synthetic" and not config.resample_to_size
    split = natural_split(config) if natural else None  # a PartitionError is a ConfigError
    passes = config.local_epochs + (config.ssl_epochs if config.structure_discovery else 0)
    if config.scenario == "tasks" and getattr(config, "task_kind") == "class_split":  # noqa: B009
        # every client must hold a row of every task's classes: the scenario checks its rows
        make_scenario(config, scenario_rows(make_federated_data(config)), config.output_dim)
    return RunPlan(
        config=config,
        split=split,
        client_sizes=tuple(client_sizes(config)),
        participants_per_round=participants_per_round(config),
        passes_per_round=passes,
    )
