"""Client sampling: which clients take part in a round (Flower's `fraction_fit`, `min_fit_clients`).

Each round `participants_per_round(config)` clients are drawn without replacement from the
run's numpy generator, so the same config and seed give the same draws. When every client takes
part nothing is drawn, so runs without sampling take exactly the draws they took before.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from scarcity.config import SimulationConfig, participants_per_round


def draw_participants(config: SimulationConfig, rng: np.random.Generator) -> Tensor:
    """This round's participants, ascending client ids [P] (int64)."""
    n, p = config.num_clients, participants_per_round(config)
    if p >= n:
        return torch.arange(n)
    chosen = np.sort(rng.choice(n, size=p, replace=False))
    return torch.from_numpy(chosen.astype(np.int64))
