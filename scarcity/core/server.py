"""The coordinating server (seed stages 1–3): FedAvg, broadcast, evaluation, insight memory.

`aggregate_models` is Federated Averaging (McMahan et al. 2017): the global model becomes the
sample-count-weighted mean of the client models (the seed's API). A simulation aggregates with
its strategy (`scarcity.strategies`) and sets the result with `set_global_weights`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from scarcity.backbones import Backbone
from scarcity.backbones.linear import LinearBackbone
from scarcity.core.aggregate import fedavg
from scarcity.core.training import Task, mean_loss, per_sample_loss
from scarcity.results import Insight


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# The seed keeps every insight in `memory`; at 10,000 clients that is 10,000 dicts a round, so
# a long run would grow without bound. The most recent ones stay (every insight of a small run,
# as the seed shows); all of them are in the round results, and `insights_received` counts them.
INSIGHT_MEMORY = 10_000


class Server:
    """Holds the global model and the clients' recent insights (`memory`)."""

    def __init__(
        self,
        num_clients: int = 5,
        input_dim: int = 10,
        output_dim: int = 1,
        task: Task = "regression",
        generator: torch.Generator | None = None,
        memory_size: int = INSIGHT_MEMORY,
        backbone: Backbone | None = None,
    ) -> None:
        self.num_clients = num_clients
        self.task: Task = task
        self.logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        model = backbone if backbone is not None else LinearBackbone(input_dim, output_dim)
        self.global_model = model.make(gen)
        self.memory: deque[Mapping[str, Any]] = deque(maxlen=memory_size)
        #: Insights received over the whole run, including rounds before a restore.
        self.insights_received = 0

    # -- shared model ---------------------------------------------------------------------
    def global_weights(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.global_model.state_dict().items()}

    def broadcast_model(self, clients: Sequence[Any]) -> None:
        """Every client starts its round from the global weights."""
        weights = self.global_weights()
        for client in clients:
            client.set_model_weights(weights)

    def set_global_weights(self, weights: Mapping[str, Tensor]) -> None:
        """The global model becomes `weights` (a strategy's aggregate)."""
        state = self.global_model.state_dict(keep_vars=True)
        if state.keys() != weights.keys() or any(
            state[key].shape != value.shape for key, value in weights.items()
        ):  # let load_state_dict say what is wrong
            self.global_model.load_state_dict(dict(weights))
            return
        with torch.no_grad():  # its checks and hooks cost more than the copy at small models
            for key, value in weights.items():
                state[key].copy_(value)

    def aggregate_models(
        self, client_weights: Sequence[Mapping[str, Tensor]], sample_counts: Sequence[int]
    ) -> dict[str, Tensor]:
        """FedAvg: the global model becomes the sample-weighted mean of the client models."""
        averaged = fedavg(client_weights, sample_counts)
        self.global_model.load_state_dict(averaged)
        self.logger.debug("FedAvg over %d clients", len(client_weights))
        return averaged

    def evaluate(self, x: Tensor, y: Tensor) -> dict[str, float]:
        """Global model on held-out data: `test_loss`, plus `test_accuracy` for classification."""
        with torch.no_grad():
            prediction = self.global_model(x)
            result = {"test_loss": float(mean_loss(self.task, prediction, y))}
            if self.task == "classification":
                result["test_accuracy"] = float((prediction.argmax(dim=1) == y).float().mean())
        return result

    def evaluate_clients(self, x: Tensor, y: Tensor, owner: Tensor, num_clients: int) -> Tensor:
        """Global model on every client's own held-out rows (`owner` of each row): accuracy per
        client for classification, mean loss per client for regression; NaN for a client
        with no held-out row. [num_clients], float64."""
        with torch.no_grad():
            prediction = self.global_model(x)
            if self.task == "classification":
                score = (prediction.argmax(dim=1) == y).double()
            else:
                score = per_sample_loss(self.task, prediction, y).double()
        sums = torch.zeros(num_clients, dtype=torch.float64).index_add_(0, owner, score)
        return sums / torch.bincount(owner, minlength=num_clients).double()

    # -- insights -------------------------------------------------------------------------
    def receive_insight(self, insight: Mapping[str, Any]) -> None:
        self.receive_insights((insight,))

    def receive_insights(self, insights: Sequence[Mapping[str, Any]]) -> None:
        """Keep a round's insights in `memory` (the most recent), in one call for all."""
        self.memory.extend(insights)
        self.insights_received += len(insights)

    def run_insight_round(self, clients: Sequence[Any]) -> list[Insight]:
        """Collect one insight per client and keep them in `memory` (the most recent)."""
        insights = [client.generate_insight() for client in clients]
        self.receive_insights(insights)
        return insights

    def aggregate_insights(self, insights: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Cross-client averages of the insights' statistics (stage 1's aggregation)."""
        return insight_statistics(insights)

    def state_dict(self) -> dict[str, Any]:
        """Global model and insight count; the insights themselves live in the round results."""
        return {"global_model": self.global_weights(), "insights_received": self.insights_received}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.global_model.load_state_dict(state["global_model"])
        self.insights_received = state["insights_received"]


def insight_statistics(insights: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Cross-client averages of the insights' statistics (stage 1's aggregation)."""

    def summary(expert: str, key: str) -> list[float]:
        return [
            float(i["experts"][expert]["summary"][key]) for i in insights if expert in i["experts"]
        ]

    def metric(key: str) -> list[float]:
        return [
            float(m["metrics"][key])
            for i in insights
            for m in i["experts"].values()
            if key in m["metrics"]
        ]

    result = {
        "data_mean": _mean(summary("StructureExpert", "mean")),
        "data_std": _mean(summary("StructureExpert", "std")),
        "drift": _mean(summary("DriftExpert", "drift")),
        "avg_uncertainty": _mean([float(i["uncertainty"]) for i in insights]),
    }
    if any("MemoryConsolidationExpert" in i["experts"] for i in insights):
        result["replay_error"] = _mean(summary("MemoryConsolidationExpert", "avg_replay_error"))
    recon = metric("recon_loss")
    if recon:
        result["recon_loss"] = _mean(recon)
    return result
