"""`arrivals`: clients that never train, judged as newcomers — the participation gap.

Yuan, Morningstar, Ning & Singhal (2022), "What Do We Mean by Generalization in Federated
Learning?", ICLR: a federated model must serve clients that never took part in training, and the
gap between its accuracy on the participating clients and on the non-participating ones (the
participation gap) is what a held-out set of participants' rows cannot show. Here a share
`unseen_fraction` of the clients (round(fraction · N), at least one, at most N − 1, drawn once
from the scenario's own stream) never trains: a drawn unseen client is left out of its round (when
every drawn client is unseen, one seen client drawn from the scenario's stream trains instead).

After every round each unseen client receives the shared model (the new global model of
federated averaging), adapts it by k steps of plain mini-batch SGD on its own training rows
(cross-entropy, the run's `learning_rate`; each step `batch_size` rows, or all it holds, drawn
without replacement from the scenario's stream of the round and the client; no strategy term) and
is scored on its own held-out rows: `unseen_accuracy_k0`, `…_k1`, `…_k5` are the mean over the
unseen clients (with a held-out row) of the accuracy after k = 0, 1, 5 steps (`adapt_steps` picks
which are reported). The adaptation works on a copy: the global model, every client's state and
the run's random streams stay as they were, so every other number of the run is what it would be.
The seen clients' usual metrics stay (the personal metrics, over every client, include the
unseen ones).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scarcity.errors import ConfigError
from scarcity.params import Param, RunConfig
from scarcity.scenarios.base import ClientRows, Scenario, keep_allowed, scenario_rng

UNSEEN_FRACTION = Param(
    "unseen_fraction",
    float | None,
    None,
    "arrivals: share of the clients that never train and are scored as newcomers (at least "
    "one, at most all but one; default 0.2).",
    gt=0,
    lt=1,
)
ADAPT_STEPS = Param(
    "adapt_steps",
    list[Literal[0, 1, 5]] | None,
    None,
    "arrivals: local SGD steps after which each unseen client is scored "
    "(unseen_accuracy_k0/_k1/_k5; default [0, 1, 5]).",
    min_length=1,
    max_length=3,
)

_UNSEEN, _FALLBACK, _BATCHES = 0xA441, 0xA442, 0xA443


class Arrivals(Scenario):
    name: ClassVar[str] = "arrivals"
    paper: ClassVar[str] = (
        "Yuan, Morningstar, Ning & Singhal 2022, What Do We Mean by Generalization in "
        "Federated Learning? (ICLR)"
    )
    summary: ClassVar[str] = (
        "Some clients never train; each round they are scored on the shared model after 0, 1 "
        "and 5 local steps (the participation gap)."
    )
    params: ClassVar[tuple[Param, ...]] = (UNSEEN_FRACTION, ADAPT_STEPS)
    defaults: ClassVar[Mapping[str, Any]] = {"unseen_fraction": 0.2, "adapt_steps": [0, 1, 5]}
    moves_data: ClassVar[bool] = False
    needs_labels: ClassVar[bool] = True

    @classmethod
    def resolve(cls, config: RunConfig, classification: bool) -> dict[str, Any]:
        values = super().resolve(config, classification)
        if "adapt_steps" in values:  # the config's own list, not the class's
            values["adapt_steps"] = list(values["adapt_steps"])
        if not config.federated_averaging:
            raise ConfigError(
                "scenario",
                "arrivals scores the shared model a newcomer receives: needs federated_averaging",
            )
        if config.num_clients < 2:
            raise ConfigError("unseen_fraction", "arrivals needs at least two clients")
        return values

    def __init__(self, config: RunConfig, base: ClientRows, classes: int) -> None:
        super().__init__(config, base, classes)
        n = base.num_clients
        count = min(n - 1, max(1, round(float(config.unseen_fraction) * n)))
        #: The clients that never train, ascending ids.
        self.unseen = np.sort(scenario_rng(config, _UNSEEN).choice(n, size=count, replace=False))
        self.steps = sorted(set(config.adapt_steps))

    def available(self, round_index: int, drawn: Tensor) -> Tensor:
        seen = np.ones(self.base.num_clients, dtype=bool)
        seen[self.unseen] = False
        return keep_allowed(self.config, round_index, drawn, seen, _FALLBACK)

    def model_metrics(self, round_index: int, model: nn.Module) -> dict[str, float]:
        scores: dict[int, list[float]] = {k: [] for k in self.steps}
        for c in self.unseen.tolist():
            if len(self.base.eval_y[c]) == 0:
                continue
            for k, accuracy in self.adapted_accuracy(round_index, c, model).items():
                scores[k].append(accuracy)
        return {f"unseen_accuracy_k{k}": float(np.mean(v)) for k, v in scores.items() if v}

    def adapted_accuracy(self, round_index: int, client: int, model: nn.Module) -> dict[int, float]:
        """Client `client`'s accuracy on its held-out rows after each of `steps` SGD steps on its
        training rows, starting from `model` (a copy is trained)."""
        x, y = self.base.train_x[client], self.base.train_y[client]
        eval_x, eval_y = self.base.eval_x[client], self.base.eval_y[client]
        local = copy.deepcopy(model)
        optimizer = torch.optim.SGD(local.parameters(), lr=self.config.learning_rate)
        rng = scenario_rng(self.config, _BATCHES, round_index, client)
        batch = min(int(self.config.batch_size), len(x))
        out: dict[int, float] = {}
        for step in range(max(self.steps) + 1):
            if step in self.steps:
                with torch.no_grad():
                    right = local(eval_x).argmax(dim=1) == eval_y
                out[step] = float(right.double().mean())
            if step == max(self.steps) or batch == 0:
                continue
            rows = torch.from_numpy(rng.choice(len(x), size=batch, replace=False))
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(local(x[rows]), y[rows]).backward()
            optimizer.step()
        return out
