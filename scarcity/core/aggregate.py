"""Aggregation math as small pure functions: no state, no I/O; the classes call them.

- `fedavg`: Federated Averaging, the sample-count-weighted mean of client models
  (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
  Decentralized Data").
- `pairwise_average`: the gossip step, both peers keep the plain mean of their weights
  (Boyd et al. 2006, "Randomized Gossip Algorithms").
- `ema`: exponential moving average used by the meta-learner's running statistics.
- `reptile_step`: the serial/batched Reptile outer update θ ← θ + ε·mean_i(θ_i − θ)
  (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms").

Weights are `dict[str, Tensor]` (a module's `state_dict`); inputs are never modified. The
`*_stacked` forms take every client's weights stacked along a leading client axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

Weights = Mapping[str, Tensor]


def fedavg(states: Sequence[Weights], sample_counts: Sequence[float]) -> dict[str, Tensor]:
    """Mean of the client weights, each weighted by its number of training samples."""
    if not states:
        raise ValueError("fedavg needs at least one client state")
    if len(states) != len(sample_counts):
        raise ValueError("fedavg needs one sample count per client state")
    total = float(sum(sample_counts))
    if total <= 0:
        raise ValueError("fedavg needs a positive total sample count")
    pairs = list(zip(states, sample_counts, strict=True))
    return {
        key: sum(
            (state[key] * (count / total) for state, count in pairs),
            start=torch.zeros_like(states[0][key]),
        )
        for key in states[0]
    }


def pairwise_average(a: Weights, b: Weights) -> dict[str, Tensor]:
    """The weights both gossip peers hold after a sync: (a + b) / 2, key by key."""
    if a.keys() != b.keys():
        raise ValueError("pairwise_average needs weights of the same architecture")
    return {key: (a[key] + b[key]) / 2 for key in a}


def weighted_pair(a: Weights, b: Weights, weight_a: float) -> dict[str, Tensor]:
    """The weights both gossip peers hold after a weighted sync: w·a + (1 − w)·b, key by key."""
    if a.keys() != b.keys():
        raise ValueError("weighted_pair needs weights of the same architecture")
    return {key: weight_a * a[key] + (1.0 - weight_a) * b[key] for key in a}


def ema(previous: float, observation: float, alpha: float) -> float:
    """One exponential-moving-average step: (1 − α)·previous + α·observation."""
    return (1.0 - alpha) * previous + alpha * observation


def reptile_step(
    global_state: Weights, client_states: Sequence[Weights], step_size: float
) -> dict[str, Tensor]:
    """Reptile outer step: move θ a fraction ε toward the mean of the adapted θ_i."""
    if not client_states:
        raise ValueError("reptile_step needs at least one client state")
    n = len(client_states)
    return {
        key: theta
        + step_size
        * sum((state[key] - theta for state in client_states), start=torch.zeros_like(theta))
        / n
        for key, theta in global_state.items()
    }


def fedavg_stacked(states: Weights, sample_counts: Tensor) -> dict[str, Tensor]:
    """`fedavg` of weights stacked as [N, ...], with sample counts [N]."""
    total = float(sample_counts.sum())
    if total <= 0:
        raise ValueError("fedavg needs a positive total sample count")
    share = sample_counts.float() / total
    return {key: torch.tensordot(share, value, dims=1) for key, value in states.items()}


def reptile_step_stacked(
    global_state: Weights, client_states: Weights, step_size: float
) -> dict[str, Tensor]:
    """`reptile_step` with the client weights stacked as [N, ...]."""
    return {
        key: theta + step_size * (client_states[key] - theta).mean(dim=0)
        for key, theta in global_state.items()
    }
