"""IFCA: Ghosh, Chung, Yin & Ramchandran (2020), "An Efficient Framework for Clustered Federated
Learning", NeurIPS, Algorithm 2 with model averaging.

Update rule: the server keeps k = `num_clusters` models θ_1 … θ_k (θ_1 the run's initial model,
the others drawn from a stream of their own, so each starts elsewhere). Each round every
participant receives all k, estimates its cluster ĵ_i = argmin_j F_i(θ_j), the lowest mean loss
on its own training rows (the clients' `ClusterChoice`; ties to the lowest j), trains θ_ĵ
locally and sends it back. The server replaces each θ_j by the sample-weighted mean of the
models returned for it, θ_j ← Σ_{i: ĵ_i = j} n_i·θ_i / Σ_{i: ĵ_i = j} n_i (the paper's machines
hold equal data and average unweighted; FedAvg's weights for unequal ones); a cluster no
participant chose stays. With k = 1 this is FedAvg.

Each client keeps its last estimate: personal metrics score the current model of that cluster
(a client that has not taken part yet, the cluster it would choose now). `test_loss` and
`test_accuracy` are the mean over all clients of their cluster model's on the test set. The
round reports `ifca_clusters_chosen` (the clusters some participant chose) and logs who chose
which. Default k = 2. A round moves all k models down to each participant and its model and
its cluster's index (int64) up (`traffic`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from scarcity.accounting import Traffic, tensor_bytes
from scarcity.params import Param, RunConfig
from scarcity.strategies.base import (
    ClientModel,
    ClientUpdates,
    FitInstructions,
    Strategy,
    Weights,
)
from scarcity.strategies.functions import cluster_means, option

NUM_CLUSTERS = Param(
    "num_clusters", int | None, None, "IFCA: cluster models the server keeps.", ge=1, le=100
)


class IFCA(Strategy):
    name: ClassVar[str] = "ifca"
    paper: ClassVar[str] = (
        "Ghosh, Chung, Yin & Ramchandran 2020, An Efficient Framework for Clustered Federated "
        "Learning (NeurIPS)"
    )
    summary: ClassVar[str] = (
        "k cluster models; each client trains the one with its lowest loss, each is averaged."
    )
    params: ClassVar[tuple[Param, ...]] = (NUM_CLUSTERS,)
    defaults: ClassVar[Mapping[str, Any]] = {"num_clusters": 2}
    client_model: ClassVar[ClientModel] = "cluster"

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.clusters: dict[str, Tensor] | None = None
        self._chosen: tuple[Tensor, Tensor] | None = None  # (participants, choice) of the round

    @property
    def num_models(self) -> int:
        return int(option(self, "num_clusters"))

    def start(self, models: Mapping[str, Tensor]) -> None:
        self.clusters = {key: value.clone() for key, value in models.items()}

    def candidates(self) -> dict[str, Tensor] | None:
        if self.clusters is None:
            raise ValueError("ifca: the cluster models were never started")
        return self.clusters

    def traffic(
        self, global_weights: Weights, instructions: FitInstructions, updates: ClientUpdates
    ) -> Traffic:
        """Each participant receives every cluster model and returns its trained model with
        the index of the cluster it chose (asked before `aggregate`: the models it received)."""
        clusters = self.candidates()
        assert clusters is not None and updates.choice is not None
        participants = int(updates.participants.shape[0])
        up = tensor_bytes(updates.weights) + tensor_bytes([updates.choice])
        return Traffic(up=up, down=participants * tensor_bytes(clusters))

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        if updates.choice is None:
            raise ValueError("ifca: the participants' cluster choices are missing")
        clusters = self.candidates()
        assert clusters is not None
        self.clusters = cluster_means(
            clusters, updates.weights, updates.sample_counts, updates.choice, updates.sequential
        )
        self._chosen = (updates.participants, updates.choice)
        return dict(global_weights)  # unused: each client uses its cluster's model

    def round_metrics(self) -> dict[str, float]:
        if self._chosen is None:
            return {}
        return {"ifca_clusters_chosen": float(len(torch.unique(self._chosen[1])))}

    def round_lines(self, detail: bool) -> list[str]:
        if self._chosen is None:
            return []
        participants, choice = self._chosen
        parts = []
        for j in range(self.num_models):
            members = participants[choice == j].tolist()
            if detail:
                parts.append(f"{j} ← clients {', '.join(map(str, members)) or 'none'}")
            else:
                parts.append(f"{j} ← {len(members)} clients")
        return ["IFCA clusters: " + "; ".join(parts)]

    def state_dict(self) -> dict[str, Any]:
        return {"clusters": self.clusters}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        clusters = state["clusters"]
        self.clusters = None if clusters is None else dict(clusters)
