"""Local training: no federation, the baseline every personalised FL paper reports beside its
method (e.g. the "local" rows of Li, Hu, Beirami & Smith 2021, "Ditto: Fair and Robust Federated
Learning Through Personalization", ICML, and of Ghosh, Chung, Yin & Ramchandran 2020, "An
Efficient Framework for Clustered Federated Learning", NeurIPS).

Update rule: every client starts from the common initial model w⁰ (the server's, given to all
clients before round 1) and from then on trains only its own model, w_i ← LocalSGD_i(w_i), in
the rounds it takes part in; nothing is broadcast or averaged. The server's model stays w⁰.
Personal metrics score each client's own model on its own held-out rows; `test_loss` and
`test_accuracy` are the mean over all clients of their own models' loss and accuracy on the
test set (`Simulation`). A round moves nothing (`traffic`); the initial model each client got
before round 1 is not a round's.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from scarcity.accounting import Traffic
from scarcity.strategies.base import (
    ClientModel,
    ClientUpdates,
    FitInstructions,
    Strategy,
    Weights,
)


class Local(Strategy):
    name: ClassVar[str] = "local"
    paper: ClassVar[str] = (
        "Local training alone, the baseline of personalised FL (e.g. Li et al. 2021, Ditto "
        "(ICML); Ghosh et al. 2020, IFCA (NeurIPS))"
    )
    summary: ClassVar[str] = (
        "No federation: each client trains its own model from a common start, nothing averaged."
    )
    client_model: ClassVar[ClientModel] = "own"

    def traffic(
        self, global_weights: Weights, instructions: FitInstructions, updates: ClientUpdates
    ) -> Traffic:
        return Traffic()  # no broadcast, no upload

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        return dict(global_weights)
