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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

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


class DPFedAvg(Strategy):
    name: ClassVar[str] = "dp_fedavg"
    paper: ClassVar[str] = (
        "McMahan, Ramage, Talwar & Zhang 2018, Learning Differentially Private Recurrent "
        "Language Models (ICLR)"
    )
    summary: ClassVar[str] = "FedAvg of updates clipped to norm C, plus Gaussian noise z·C/P."
    params: ClassVar[tuple[Param, ...]] = (DP_CLIPPING_NORM, DP_NOISE_MULTIPLIER, DP_CLIPPING)
    defaults: ClassVar[Mapping[str, Any]] = {
        "dp_clipping_norm": 1.0,
        "dp_noise_multiplier": 1.0,
        "dp_clipping": "server",
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
        std = multiplier * clip / int(updates.sample_counts.shape[0])
        self._metrics = {"dp_noise_multiplier": multiplier, "dp_noise_std": std}
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
