"""DP-FedAvg with fixed clipping: McMahan, Ramage, Talwar & Zhang (2018), "Learning
Differentially Private Recurrent Language Models", ICLR.

Update rule (Flower's `DifferentialPrivacyServerSideFixedClipping` /
`DifferentialPrivacyClientSideFixedClipping` wrapping `FedAvg`): each participant's update
Δ_i = w_i − w is clipped to L2 norm C over all its parameters, Δ_i ← Δ_i·min(1, C/‖Δ_i‖);
the new model is the sample-weighted FedAvg of w + Δ_i plus Gaussian noise N(0, σ²) on every
coordinate, σ = z·C/P (z = `dp_noise_multiplier`, P the participants; Flower divides by the
configured number of sampled clients). `dp_clipping` "server": the server clips every
update here; "client": `configure_fit` asks the clients to clip (`clip_norm`), the engine
clips the honest ones, and the server does not clip again. The noise comes from the
strategy's own generator, seeded from the run's seed and checkpointed. Defaults C = 1.0,
z = 1.0, server-side clipping.

Privacy spent (from `engine_version` 8): each round reports `epsilon`, the ε of the (ε, δ)-DP
guarantee after the rounds so far at δ = `dp_delta`, from Opacus' RDP accountant (Mironov 2017;
Mironov, Talwar & Zhang 2019, the sampled Gaussian mechanism; Balle et al. 2020's conversion
to (ε, δ)) for noise multiplier z, sampling rate q = P / N (participants per round over all
clients) and T = the rounds so far, the minimum over Opacus' default RDP orders. It is
user-level DP as in McMahan et al. 2018: one user is one client, all its rows at once. What the
accountant assumes, and where this engine differs:
- Poisson sampling, each client in a round independently with probability q; the engine draws
  exactly P clients without replacement (`clients_per_round` / `fraction_fit`). The figure is
  the customary approximation for fixed-size draws, not a proof for them.
- The noise is z times the sensitivity of the aggregate. Here σ = z·C/P on the sample-weighted
  mean of the clipped models, so a client's sensitivity is C/P only when the participants hold
  equal sample counts (McMahan et al.'s fixed-denominator estimator with equal weights); with
  unequal counts a client of n_i rows moves the mean by up to C·n_i/Σn, more than C/P for the
  larger clients, and the reported ε understates their loss.
- The server is trusted with the clipped updates (central DP); with `dp_clipping: client`
  attackers do not clip, so the bound holds for the honest clients only.
z = 0 (no noise) gives ε = ∞: the metric is omitted then (a round's metrics are finite).
δ defaults to 1e-5: it must be well below 1/N (a δ near 1/N allows publishing one client's
data outright), which 1e-5 is for every population under 100,000 clients, and it is the value
DP papers and Opacus report most, so ε compares across runs of different N. McMahan et al.
2018 used 1e-9 for 763,430 users: set `dp_delta` below 1/N for a large population.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from scarcity.errors import ConfigError
from scarcity.params import Param, RunConfig
from scarcity.strategies.base import ClientUpdates, FitInstructions, Strategy, Weights
from scarcity.strategies.functions import clip_updates, option, weighted_mean


def noise_seed(seed: int) -> int:
    """The noise generator's seed: a fixed function of the run's seed, apart from its other
    streams."""
    return (seed * 1_000_003 + 0xD9) % (1 << 63)


DP_CLIPPING_NORM = Param(
    "dp_clipping_norm", float | None, None, "DP-FedAvg: L2 bound C of each client update.", gt=0
)
DP_NOISE_MULTIPLIER = Param(
    "dp_noise_multiplier",
    float | None,
    None,
    "DP-FedAvg: Gaussian noise std = z·C / participants.",
    ge=0,
    le=100,
)
DP_CLIPPING = Param(
    "dp_clipping",
    Literal["server", "client"] | None,
    None,
    "DP-FedAvg: who clips the updates (client: attackers do not clip).",
)


DP_DELTA = Param(
    "dp_delta",
    float | None,
    None,
    "DP-FedAvg: δ of the (ε, δ) guarantee the epsilon metric reports (keep it below 1/N).",
    gt=0,
    lt=1,
)
#: The first engine_version whose rounds report `epsilon` (stored runs report what they did).
PRIVACY_ENGINE_VERSION = 8


@functools.cache
def _rdp_per_round(noise_multiplier: float, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Opacus' default RDP orders and one round's RDP at each (T rounds compose to T times
    it), read-only: computed once per (z, q), tens of milliseconds for q < 1."""
    from opacus.accountants import RDPAccountant  # imported on first use: a 2–4 s import
    from opacus.accountants.analysis.rdp import compute_rdp

    alphas = RDPAccountant.DEFAULT_ALPHAS  # as the accountant passes them (ints among them)
    rdp = np.asarray(
        compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=alphas)
    )
    orders = np.asarray(alphas, dtype=np.float64)  # what get_privacy_spent makes of them
    orders.setflags(write=False)
    rdp.setflags(write=False)
    return orders, rdp


def epsilon(noise_multiplier: float, sample_rate: float, rounds: int, delta: float) -> float:
    """ε after `rounds` rounds of the sampled Gaussian mechanism (z, q) at `delta`: what Opacus'
    `RDPAccountant` with history [(z, q, rounds)] answers, with one round's RDP computed once
    per run. ∞ without noise."""
    if noise_multiplier == 0:
        return math.inf
    from opacus.accountants.analysis.rdp import get_privacy_spent

    orders, rdp = _rdp_per_round(noise_multiplier, sample_rate)
    with warnings.catch_warnings():  # "optimal order is the largest alpha": still a bound
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = get_privacy_spent(orders=orders, rdp=rdp * rounds, delta=delta)
    return float(eps)


class DPFedAvg(Strategy):
    name: ClassVar[str] = "dp_fedavg"
    paper: ClassVar[str] = (
        "McMahan, Ramage, Talwar & Zhang 2018, Learning Differentially Private Recurrent "
        "Language Models (ICLR)"
    )
    summary: ClassVar[str] = "FedAvg of updates clipped to norm C, plus Gaussian noise z·C/P."
    params: ClassVar[tuple[Param, ...]] = (
        DP_CLIPPING_NORM,
        DP_NOISE_MULTIPLIER,
        DP_CLIPPING,
        DP_DELTA,
    )
    defaults: ClassVar[Mapping[str, Any]] = {
        "dp_clipping_norm": 1.0,
        "dp_noise_multiplier": 1.0,
        "dp_clipping": "server",
        "dp_delta": 1e-5,
    }

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.generator = torch.Generator().manual_seed(noise_seed(int(config.seed)))
        self._metrics: dict[str, float] = {}

    def clipping_norm(self) -> float:
        return float(option(self, "dp_clipping_norm"))

    def client_side(self) -> bool:
        mode = option(self, "dp_clipping")
        if mode not in ("server", "client"):
            raise ConfigError("dp_clipping", f"'server' or 'client', got {mode!r}")
        return bool(mode == "client")

    def configure_fit(
        self, round_index: int, global_weights: Weights, participants: Tensor
    ) -> FitInstructions:
        if self.client_side():
            return FitInstructions(clip_norm=self.clipping_norm())
        return FitInstructions()

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        clip = self.clipping_norm()
        multiplier = float(option(self, "dp_noise_multiplier"))
        models: Mapping[str, Tensor] = updates.weights
        if not self.client_side():
            models = clip_updates(models, global_weights, clip)
        averaged = weighted_mean(models, updates.sample_counts, updates.sequential)
        participants = int(updates.sample_counts.shape[0])
        std = multiplier * clip / participants
        self._metrics = {"dp_noise_multiplier": multiplier, "dp_noise_std": std}
        if int(self.config.engine_version) >= PRIVACY_ENGINE_VERSION:
            rate = participants / updates.num_clients
            spent = epsilon(multiplier, rate, round_index, float(option(self, "dp_delta")))
            if math.isfinite(spent):  # z = 0: no guarantee, no metric
                self._metrics["epsilon"] = spent
        return {
            key: value
            + std
            * torch.randn(value.shape, generator=self.generator, dtype=value.dtype).to(value.device)
            for key, value in averaged.items()
        }

    def round_metrics(self) -> dict[str, float]:
        return dict(self._metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
