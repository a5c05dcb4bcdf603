"""The expert portfolio: small specialised models each client holds (seed stages 1, 4, 7, 8).

Every expert owns a supervised head (input → output, trained by SGD, stage 1: the configured
backbone, `scarcity.backbones`, the seed's Linear by default) and a linear autoencoder
(encoder → latent → decoder, trained by Adam, stage 8's self-supervised structure discovery).
The subclasses differ in what they summarise and in one training hook:

- `StructureExpert`: data statistics (mean, std, variance, min, max).
- `DriftExpert`: |mean − previous mean| between consecutive observations (one per round).
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
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scarcity import messages
from scarcity.backbones import Backbone
from scarcity.backbones.linear import LinearBackbone
from scarcity.core.arrays import as_features, as_targets
from scarcity.core.training import Task, fit, make_linear, rows, train_supervised


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
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(self.decoder(self.encoder(x)), x))

    def reconstruction_errors(self, x: Tensor) -> Tensor:
        """Each sample's mean squared reconstruction error [n]."""
        with torch.no_grad():
            return ((self.decoder(self.encoder(x)) - x) ** 2).mean(dim=1)

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
        return torch.nn.functional.mse_loss(self.decoder(self.encoder(xb)), xb)

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
        var, mean = torch.var_mean(x, correction=0)
        return {
            "mean": float(mean),
            "std": float(var.sqrt()),
            "variance": float(var),
            "min": float(x.min()),
            "max": float(x.max()),
        }


class DriftExpert(Expert):
    """Concept drift: |mean − previous mean| between consecutive observations."""

    name = "DriftExpert"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.previous_mean: float | None = None

    def summarize(self, x: Tensor) -> dict[str, float]:
        current = float(x.mean())
        drift = 0.0 if self.previous_mean is None else abs(current - self.previous_mean)
        self.previous_mean = current
        return {"current_mean": current, "drift": drift}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous_mean": self.previous_mean}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.previous_mean = state["previous_mean"]


class MemoryConsolidationExpert(Expert):
    """Bounded replay buffer of (input, latent) pairs and latent replay error."""

    name = "MemoryConsolidationExpert"
    #: Samples stored per training call, so a full buffer spans several rounds.
    store_fraction = 0.2
    #: Weight of the replay (consolidation) term in the self-supervised loss.
    replay_weight = 0.5

    def __init__(self, *args: Any, memory_capacity: int = 50, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.memory_capacity = memory_capacity
        in_dim, latent = self.encoder.in_features, self.encoder.out_features
        self.memory_x = torch.zeros(0, in_dim)
        self.memory_z = torch.zeros(0, latent)

    def replay_error(self) -> float:
        """Mean squared distance between current and stored latents of the buffered inputs."""
        if len(self.memory_x) == 0:
            return 0.0
        with torch.no_grad():
            return float(((self.encoder(self.memory_x) - self.memory_z) ** 2).sum(1).mean())

    def _before_train(self, x: Tensor, generator: torch.Generator) -> None:
        k = min(len(x), max(1, round(self.memory_capacity * self.store_fraction)))
        idx = torch.randperm(len(x), generator=generator)[:k]
        with torch.no_grad():
            z = self.encoder(x[idx])
        self.memory_x = torch.cat([self.memory_x, x[idx]])[-self.memory_capacity :]
        self.memory_z = torch.cat([self.memory_z, z])[-self.memory_capacity :]
        self.logger.debug(messages.replayed(self.replay_error()))

    def _ssl_loss(self, xb: Tensor) -> Tensor:
        replay = ((self.encoder(self.memory_x) - self.memory_z) ** 2).sum(1).mean()
        return super()._ssl_loss(xb) + self.replay_weight * replay

    def train_self_supervised(
        self, x: Tensor | np.ndarray, *args: Any, **kwargs: Any
    ) -> dict[str, float]:
        return {
            **super().train_self_supervised(x, *args, **kwargs),
            "replay_error": self.replay_error(),
        }

    def summarize(self, x: Tensor) -> dict[str, float]:
        size = len(self.memory_x)
        return {
            "memory_buffer_size": float(size),
            "memory_capacity": float(self.memory_capacity),
            "avg_replay_error": self.replay_error(),
            "memory_utilization": size / self.memory_capacity,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "memory_x": self.memory_x.clone(),
            "memory_z": self.memory_z.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory_x, self.memory_z = state["memory_x"].clone(), state["memory_z"].clone()


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
        self.decrease = lr_decrease_factor
        self.increase = lr_increase_factor
        self.threshold = lr_improvement_threshold
        self.lr_scale = 1.0
        self.last_loss: dict[str, float] = {}
        self.total_adjustments = 0
        self.round_adjustments = 0
        # Running statistics of the lr history (count, mean, M2 of Welford's algorithm).
        self.lr_count, self.lr_mean, self.lr_m2 = 1, self.learning_rate, 0.0

    @property
    def current_lr(self) -> float:
        return self.learning_rate * self.lr_scale

    def start_round(self) -> None:
        self.round_adjustments = 0

    def set_learning_rate(self, lr: float) -> None:
        """A new base rate, still scaled by this expert's own adaptation."""
        self.learning_rate = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr * self.lr_scale

    def set_ssl_learning_rate(self, lr: float) -> None:
        """A new autoencoder base rate, still scaled by this expert's own adaptation."""
        self.ssl_learning_rate = lr
        for group in self.ssl_optimizer.param_groups:
            group["lr"] = lr * self.lr_scale

    def adapt(self, objective: str, loss: float) -> None:
        """Apply the seed's rule to one epoch loss of `objective` and record the new lr."""
        previous = self.last_loss.get(objective)
        self.last_loss[objective] = loss
        if previous is None:
            return
        if loss > previous:
            self.lr_scale *= self.decrease
        elif previous - loss > self.threshold:
            self.lr_scale *= self.increase
        else:
            return
        self.total_adjustments += 1
        self.round_adjustments += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate * self.lr_scale
        for group in self.ssl_optimizer.param_groups:
            group["lr"] = self.ssl_learning_rate * self.lr_scale
        self.lr_count += 1
        delta = self.current_lr - self.lr_mean
        self.lr_mean += delta / self.lr_count
        self.lr_m2 += delta * (self.current_lr - self.lr_mean)

    _on_epoch = adapt

    def summarize(self, x: Tensor) -> dict[str, float]:
        self.logger.debug(messages.adjusted(self.round_adjustments, self.current_lr))
        return {
            "current_lr": self.current_lr,
            "avg_lr": self.lr_mean,
            "lr_history_length": float(self.lr_count),
            "lr_variance": self.lr_m2 / self.lr_count,
            "lr_adjustments": float(self.round_adjustments),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "lr_scale": self.lr_scale,
            "last_loss": dict(self.last_loss),
            "adjustments": [self.total_adjustments, self.round_adjustments],
            "lr_stats": [self.lr_count, self.lr_mean, self.lr_m2],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lr_scale = state["lr_scale"]
        self.last_loss = dict(state["last_loss"])
        self.total_adjustments, self.round_adjustments = state["adjustments"]
        self.lr_count, self.lr_mean, self.lr_m2 = state["lr_stats"]


EXPERT_TYPES: dict[str, type[Expert]] = {
    cls.name: cls
    for cls in (StructureExpert, DriftExpert, MemoryConsolidationExpert, MetaAdaptationExpert)
}
BASE_PORTFOLIO = ("StructureExpert", "DriftExpert")
EXTENDED_PORTFOLIO = (*BASE_PORTFOLIO, "MemoryConsolidationExpert", "MetaAdaptationExpert")
