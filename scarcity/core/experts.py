"""The expert portfolio: small specialised models each client holds (seed stages 1, 4, 7, 8).

Every expert owns a supervised head (input → output, trained by SGD, stage 1: the configured
backbone, `scarcity.backbones`, the seed's Linear by default) and a linear autoencoder
(encoder → latent → decoder, trained by Adam, stage 8's self-supervised structure discovery).
The subclasses differ in what they summarise and in one training hook:

- `StructureExpert`: data statistics (mean, std, variance, min, max).
- `DriftExpert`: |mean − previous mean| between consecutive observations (one per round);
  with `drift_detector`, a river detector on the client's training-loss stream.
- `MemoryConsolidationExpert`: bounded replay buffer of (input, latent) pairs; the replay error
  is the mean squared distance between the current and the stored latent of the same inputs,
  and self-supervised training adds it as a consolidation term (latent replay against
  catastrophic forgetting).
- `MetaAdaptationExpert`: after every epoch, learning rate ×`decrease` if the loss rose,
  ×`increase` if it dropped by more than `threshold` (per objective); running lr statistics.

`EXPERT_TYPES` is the registry by name; `BASE_PORTFOLIO` / `EXTENDED_PORTFOLIO` name the
experts a client holds without / with `extended_experts`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from scarcity import messages
from scarcity.backbones import Backbone
from scarcity.backbones.linear import LinearBackbone
from scarcity.components.adaptation import LearningRateRule
from scarcity.components.drift_detection import LossDetector
from scarcity.components.memory import REPLAY_WEIGHT, ReplayBuffer
from scarcity.components.structure_discovery import (
    autoencoder_loss,
    per_sample_errors,
    reconstruction_loss,
)
from scarcity.components.summaries import DriftMeter, structure_summary
from scarcity.components.training import fit, rows, train_supervised
from scarcity.core.arrays import as_features, as_targets
from scarcity.core.training import Task, make_linear

if TYPE_CHECKING:
    from scarcity.config import SimulationConfig


class Expert:
    """One specialised model: a supervised head (the configured backbone, the seed's Linear by
    default) plus a linear autoencoder."""

    name = "Expert"

    def __init__(
        self,
        expert_id: int = 0,
        input_dim: int = 10,
        output_dim: int = 1,
        latent_dim: int = 4,
        learning_rate: float = 0.01,
        ssl_learning_rate: float = 0.01,
        task: Task = "regression",
        generator: torch.Generator | None = None,
        backbone: Backbone | None = None,
    ) -> None:
        self.expert_id = expert_id
        self.task: Task = task
        self.learning_rate = learning_rate
        self.ssl_learning_rate = ssl_learning_rate
        self.logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        gen = generator if generator is not None else torch.Generator().manual_seed(expert_id)
        model = backbone if backbone is not None else LinearBackbone(input_dim, output_dim)
        self.model = model.make(gen)
        self.encoder = make_linear(input_dim, latent_dim, gen)
        self.decoder = make_linear(latent_dim, input_dim, gen)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=learning_rate)
        self.ssl_optimizer = torch.optim.Adam(
            [*self.encoder.parameters(), *self.decoder.parameters()],
            lr=ssl_learning_rate,
            fused=True,
        )

    # -- weights -------------------------------------------------------------------------
    def get_weights(self) -> dict[str, Tensor]:
        """All trainable weights (head and autoencoder), detached copies keyed `part.param`."""
        return {
            f"{part}.{key}": value.detach().clone()
            for part, module in self._parts().items()
            for key, value in module.state_dict().items()
        }

    def set_weights(self, weights: dict[str, Tensor]) -> None:
        """Load weights in place (optimisers keep pointing at the same parameters)."""
        for part, module in self._parts().items():
            prefix = f"{part}."
            module.load_state_dict(
                {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
            )

    def _parts(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model, "encoder": self.encoder, "decoder": self.decoder}

    # -- training ------------------------------------------------------------------------
    def set_learning_rate(self, lr: float) -> None:
        """The supervised head's base rate from now on (the meta-learner's broadcast)."""
        self.learning_rate = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def set_ssl_learning_rate(self, lr: float) -> None:
        """The autoencoder's base rate from now on (a label-free client's broadcast)."""
        self.ssl_learning_rate = lr
        for group in self.ssl_optimizer.param_groups:
            group["lr"] = lr

    def start_round(self) -> None:
        """Hook run by the client at the start of each round."""

    def train(
        self,
        x: Tensor | np.ndarray,
        y: Tensor | np.ndarray,
        epochs: int = 1,
        batch_size: int = 0,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """Supervised local training of the head on NumPy arrays or tensors; returns loss
        before/after and mean |grad|."""
        x, y = as_features(x), as_targets(y, self.task)
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        return train_supervised(
            self.model,
            self.optimizer,
            self.task,
            x,
            y,
            epochs,
            batch_size,
            gen,
            before_fit=lambda: self._before_train(x, gen),
            on_epoch=lambda loss: self._on_epoch("supervised", loss),
        )

    def reconstruction_loss(self, x: Tensor) -> float:
        return reconstruction_loss(self.encoder, self.decoder, x)

    def reconstruction_errors(self, x: Tensor) -> Tensor:
        """Each sample's mean squared reconstruction error [n]."""
        return per_sample_errors(self.encoder, self.decoder, x)

    def train_self_supervised(
        self,
        x: Tensor | np.ndarray,
        epochs: int = 1,
        batch_size: int = 0,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """Autoencoder training on unlabelled data (NumPy or tensor); returns reconstruction
        loss before/after."""
        x = as_features(x)
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        initial = self.reconstruction_loss(x)
        self._before_train(x, gen)
        stats = fit(
            lambda idx: self._ssl_loss(rows(x, idx)),
            [*self.encoder.parameters(), *self.decoder.parameters()],
            self.ssl_optimizer,
            len(x),
            epochs,
            batch_size,
            gen,
            on_epoch=lambda loss: self._on_epoch("self_supervised", loss),
        )
        return {
            "initial_recon_loss": initial,
            "recon_loss": self.reconstruction_loss(x),
            "mean_grad": stats.mean_grad,
        }

    def _ssl_loss(self, xb: Tensor) -> Tensor:
        return autoencoder_loss(self.encoder, self.decoder, xb)

    def _before_train(self, x: Tensor, generator: torch.Generator) -> None:
        """Hook before every training call (the memory expert stores latents here)."""

    def _on_epoch(self, objective: str, loss: float) -> None:
        """Hook after every epoch (the meta-adaptation expert adapts its lr here)."""

    # -- summaries and state --------------------------------------------------------------
    def summarize(self, x: Tensor) -> dict[str, float]:
        """Statistics of the data this expert saw (called once per round)."""
        std, mean = torch.std_mean(x, correction=0)
        return {"mean": float(mean), "std": float(std)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": self.get_weights(),
            "optimizer": self.optimizer.state_dict(),
            "ssl_optimizer": self.ssl_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_weights(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ssl_optimizer.load_state_dict(state["ssl_optimizer"])


class StructureExpert(Expert):
    """Structure statistics of the data (mean, std, variance, min, max)."""

    name = "StructureExpert"

    def summarize(self, x: Tensor) -> dict[str, float]:
        return structure_summary(x)


class DriftExpert(Expert):
    """Concept drift: |mean − previous mean| between consecutive observations; with a
    `drift_detector`, also the detector on the client's training-loss stream
    (`scarcity.components.drift_detection`), which the client consults after each round."""

    name = "DriftExpert"

    def __init__(self, *args: Any, drift_detector: str = "none", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drift = DriftMeter()
        self.detector = LossDetector(drift_detector) if drift_detector != "none" else None

    def summarize(self, x: Tensor) -> dict[str, float]:
        return self.drift.observe(x)

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "previous_mean": self.drift.previous_mean}
        if self.detector is not None:  # only then: a stored run's layout is unchanged
            state["losses"] = self.detector.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.drift.previous_mean = state["previous_mean"]
        if self.detector is not None:
            self.detector.load_state_dict(state["losses"])


class MemoryConsolidationExpert(Expert):
    """Bounded replay buffer of (input, latent) pairs and latent replay error."""

    name = "MemoryConsolidationExpert"

    def __init__(self, *args: Any, memory_capacity: int = 50, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.memory_capacity = memory_capacity
        self.memory = ReplayBuffer(
            memory_capacity, self.encoder.in_features, self.encoder.out_features
        )

    @property
    def memory_x(self) -> Tensor:
        """The buffered inputs, oldest first."""
        return self.memory.x

    def replay_error(self) -> float:
        """Mean squared distance between current and stored latents of the buffered inputs."""
        return self.memory.replay_error(self.encoder)

    def _before_train(self, x: Tensor, generator: torch.Generator) -> None:
        self.memory.store(x, self.encoder, generator)
        self.logger.debug(messages.replayed(self.replay_error()))

    def _ssl_loss(self, xb: Tensor) -> Tensor:
        return super()._ssl_loss(xb) + REPLAY_WEIGHT * self.memory.replay_term(self.encoder)

    def train_self_supervised(
        self, x: Tensor | np.ndarray, *args: Any, **kwargs: Any
    ) -> dict[str, float]:
        return {
            **super().train_self_supervised(x, *args, **kwargs),
            "replay_error": self.replay_error(),
        }

    def summarize(self, x: Tensor) -> dict[str, float]:
        return self.memory.summary(self.encoder)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory.load_state_dict(state)


class MetaAdaptationExpert(Expert):
    """Adaptive learning rate: ×decrease when the epoch loss rises, ×increase on a big drop."""

    name = "MetaAdaptationExpert"

    def __init__(
        self,
        *args: Any,
        lr_decrease_factor: float = 0.9,
        lr_increase_factor: float = 1.05,
        lr_improvement_threshold: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rule = LearningRateRule(
            self.learning_rate, lr_decrease_factor, lr_increase_factor, lr_improvement_threshold
        )

    @property
    def current_lr(self) -> float:
        return self.learning_rate * self.rule.scale

    def start_round(self) -> None:
        self.rule.start_round()

    def set_learning_rate(self, lr: float) -> None:
        """A new base rate, still scaled by this expert's own adaptation."""
        self.learning_rate = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr * self.rule.scale

    def set_ssl_learning_rate(self, lr: float) -> None:
        """A new autoencoder base rate, still scaled by this expert's own adaptation."""
        self.ssl_learning_rate = lr
        for group in self.ssl_optimizer.param_groups:
            group["lr"] = lr * self.rule.scale

    def adapt(self, objective: str, loss: float) -> None:
        """Apply the seed's rule to one epoch loss of `objective` and record the new lr."""
        if not self.rule.adapt(objective, loss, self.learning_rate):
            return
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate * self.rule.scale
        for group in self.ssl_optimizer.param_groups:
            group["lr"] = self.ssl_learning_rate * self.rule.scale

    _on_epoch = adapt

    def summarize(self, x: Tensor) -> dict[str, float]:
        self.logger.debug(messages.adjusted(self.rule.round_adjustments, self.current_lr))
        return self.rule.summary(self.learning_rate)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.rule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rule.load_state_dict(state)


EXPERT_TYPES: dict[str, type[Expert]] = {
    cls.name: cls
    for cls in (StructureExpert, DriftExpert, MemoryConsolidationExpert, MetaAdaptationExpert)
}
BASE_PORTFOLIO = ("StructureExpert", "DriftExpert")
EXTENDED_PORTFOLIO = (*BASE_PORTFOLIO, "MemoryConsolidationExpert", "MetaAdaptationExpert")


def portfolio(config: SimulationConfig) -> tuple[str, ...]:
    """The experts a client of `config` holds: none, 2, or 4 with `extended_experts`."""
    if not config.expert_ensemble:
        return ()
    return EXTENDED_PORTFOLIO if config.extended_experts else BASE_PORTFOLIO


def expert_index(names: tuple[str, ...], name: str) -> int | None:
    """Where `name` is in a portfolio `names`, None when it is not there."""
    return names.index(name) if name in names else None
