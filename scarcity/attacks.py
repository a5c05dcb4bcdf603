"""Byzantine clients: a fixed set of attackers per run, so robust aggregators can be seen working.

`round(malicious_fraction · N)` clients are drawn once from their own stream (seed, "attack"),
so the attackers do not depend on training draws. The attacks (`attack`, strength s =
`attack_scale`):
- `sign_flip`: an attacker sends w_g − s·(w_i − w_g), its honest update reversed and scaled
  (Damaskinos et al. 2018; Allen-Zhu et al. 2021 use it against Krum and the median);
- `gaussian`: an attacker sends w_g + ε with ε ~ N(0, s²) per coordinate instead of its model
  (Blanchard et al. 2017's "Gaussian" Byzantine workers);
- `label_flip`: an attacker trains on flipped labels (class c → C − 1 − c; regression targets
  negated) and sends that model (Fang et al. 2020; Tolpegin et al. 2020).
Update attacks act on what the server receives; label flipping acts on the attacker's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from scarcity.config import SimulationConfig

if TYPE_CHECKING:  # the data module imports this one (`describe_clients` flags attackers)
    from scarcity.core.data import FederatedData

ATTACK_STREAM = 0xA77AC  # second seed word of the attackers' draw and the Gaussian attack's noise


def malicious_clients(config: SimulationConfig) -> Tensor:
    """The attackers' client ids, ascending [M] (fixed for the run)."""
    count = round(config.malicious_fraction * config.num_clients)
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    rng = np.random.default_rng([config.seed, ATTACK_STREAM])
    chosen = np.sort(rng.choice(config.num_clients, size=count, replace=False))
    return torch.from_numpy(chosen.astype(np.int64))


def flip_labels(data: FederatedData, attackers: Tensor, classes: int) -> FederatedData:
    """The data with the attackers' training labels flipped (test set untouched)."""
    ys = list(data.client_y)
    for i in attackers.tolist():
        y = ys[i]
        ys[i] = (classes - 1 - y) if data.task == "classification" else -y
    return replace(data, client_y=tuple(ys))


class Adversary:
    """Replaces the attackers' models among a round's participants before aggregation."""

    def __init__(self, config: SimulationConfig) -> None:
        self.attack = config.attack
        self.scale = config.attack_scale
        self.attackers = malicious_clients(config)
        self.generator = torch.Generator().manual_seed(config.seed * 1_000_003 + ATTACK_STREAM)

    @property
    def active(self) -> bool:
        return len(self.attackers) > 0

    def mask(self, participants: Tensor) -> Tensor:
        """Which participants [P] are attackers (bool)."""
        return torch.isin(participants, self.attackers)

    def tamper(
        self, weights: Mapping[str, Tensor], global_weights: Mapping[str, Tensor], mask: Tensor
    ) -> dict[str, Tensor]:
        """The models the server receives: the attackers' rows replaced (inputs untouched).
        `global_weights` is what they received: one model, or one per participant [P, ...]
        (IFCA's clusters)."""
        if self.attack == "label_flip" or not bool(mask.any()):
            return dict(weights)
        out = {}
        for key, stacked in weights.items():
            g = global_weights[key]
            if g.dim() == stacked.dim():  # each participant's own: the attackers' rows
                g = g[mask]
            sent = stacked.clone()
            if self.attack == "sign_flip":
                sent[mask] = g - self.scale * (stacked[mask] - g)
            else:  # gaussian
                shape = stacked[mask].shape
                noise = torch.randn(shape, generator=self.generator) * self.scale
                sent[mask] = g + noise
            out[key] = sent
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
