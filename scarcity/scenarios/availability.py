"""`availability`: clients come and go, each on its own on/off trace.

Cross-device federated learning never reaches every client it samples: a phone drawn for a round
may be offline, busy or on a metered network, and drops out (Bonawitz et al. 2019, "Towards
Federated Learning at Scale: System Design", MLSys; Flower's sampled clients that fail to return
a result). Each client has an on/off trace, a pure function of the seed (the scenario's own
stream), so both executions and a resumed run see the same one (`availability_mode`):

- `random`: client c is online in round r with probability `availability_rate`, independently
  of the other clients and rounds (u[r, c] < rate, u uniform from the round's own stream);
- `periodic`: client c is online for a stretch of L = max(1, round(rate · P)) rounds out of every
  P = `availability_period`, shifted by its own phase φ_c (uniform over 0 … P − 1, drawn once):
  online in round r iff (r − 1 + φ_c) mod P < L (an online share of L / P = rate when rate · P
  is whole).

A round in which the trace has nobody online gets one client online, drawn from the round's
stream, so that every round can train someone. The run draws its participants as it would
(`clients_per_round` / `fraction_fit`; all by default) and the offline ones do not train that
round (their state is untouched, as a sampled client that drops out). When none of the drawn
clients is online, one online client drawn from the scenario's stream trains instead: the
populations, the strategies and every round metric assume at least one participant. The
clients that trained are the round's `participants` (stored with each round: per-client
participation counts are their tally) and `clients_sampled` counts them whenever fewer than all
trained. The data stays the partition's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from torch import Tensor

from scarcity.params import Param, RunConfig
from scarcity.scenarios.base import ClientRows, Scenario, keep_allowed, scenario_rng

AVAILABILITY_RATE = Param(
    "availability_rate",
    float | None,
    None,
    "availability: each client's online share of the rounds (random: its chance to be online "
    "in a round; periodic: its on-stretch over the period); default 0.5.",
    gt=0,
    le=1,
)
AVAILABILITY_MODE = Param(
    "availability_mode",
    Literal["random", "periodic"] | None,
    None,
    "availability: random (each client online in a round independently, with probability "
    "availability_rate; the default) or periodic (online for a stretch then off, each client "
    "with its own phase).",
)
AVAILABILITY_PERIOD = Param(
    "availability_period",
    int | None,
    None,
    "availability, periodic: rounds in one on/off cycle (default 10).",
    ge=1,
    le=10_000,
)

_TRACE, _PHASE, _EMPTY, _FALLBACK = 0xA7A1, 0xA7A2, 0xA7A3, 0xA7A4


class Availability(Scenario):
    name: ClassVar[str] = "availability"
    paper: ClassVar[str] = (
        "Bonawitz et al. 2019, Towards Federated Learning at Scale: System Design (MLSys)"
    )
    summary: ClassVar[str] = (
        "Clients online or offline round by round (random or periodic traces); a drawn client "
        "that is offline does not train."
    )
    params: ClassVar[tuple[Param, ...]] = (
        AVAILABILITY_RATE,
        AVAILABILITY_MODE,
        AVAILABILITY_PERIOD,
    )
    defaults: ClassVar[Mapping[str, Any]] = {
        "availability_rate": 0.5,
        "availability_mode": "random",
        "availability_period": 10,
    }
    moves_data: ClassVar[bool] = False

    def __init__(self, config: RunConfig, base: ClientRows, classes: int) -> None:
        super().__init__(config, base, classes)
        self.rate = float(config.availability_rate)
        self.period = int(config.availability_period)
        #: periodic: rounds online in each period, and each client's phase [N].
        self.stretch = min(self.period, max(1, round(self.rate * self.period)))
        self.phase = scenario_rng(config, _PHASE).integers(0, self.period, size=base.num_clients)

    def online(self, round_index: int) -> np.ndarray:
        """Who is online in round `round_index` (rounds start at 1), [N] bool, at least one."""
        n = self.base.num_clients
        if self.config.availability_mode == "random":
            u = scenario_rng(self.config, _TRACE, round_index).random(n)
            mask = u < self.rate
        else:
            mask = (round_index - 1 + self.phase) % self.period < self.stretch
        if not mask.any():
            mask[scenario_rng(self.config, _EMPTY, round_index).integers(n)] = True
        return mask

    def available(self, round_index: int, drawn: Tensor) -> Tensor:
        return keep_allowed(self.config, round_index, drawn, self.online(round_index), _FALLBACK)
