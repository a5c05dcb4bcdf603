"""SCAFFOLD: Karimireddy, Kale, Mohri, Reddi, Stich & Suresh (2020), "SCAFFOLD: Stochastic
Controlled Averaging for Federated Learning", ICML. Not in Flower's strategies.

Update rule (Algorithm 1, option II): the server keeps a control variate c and one c_i per
client, all zero at first (shaped like the model, created from the first global weights).
Each participant trains with the gradient g + c − c_i (`FitInstructions.correction`), then

    K_i  = local_epochs·⌈n_i / batch_size⌉ if 0 < batch_size < n_i, else local_epochs
    c_i⁺ = c_i − c + (w − w_i)/(K_i·η_l)           (η_l = the client `learning_rate`)
    w    ← w + η_g·(1/P)·Σ_i (w_i − w)              (unweighted over the P participants)
    c    ← c + (1/N)·Σ_i (c_i⁺ − c_i)               (N = all clients)

and the participants keep c_i⁺ (the others' c_i stay). η_g = `server_learning_rate`,
default 1.0. Each round the server sends (w, c) to each participant and it sends back its model
and Δc_i = c_i⁺ − c_i (`traffic`): twice FedAvg's bytes each way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from scarcity.accounting import Traffic, tensor_bytes
from scarcity.params import Param, RunConfig
from scarcity.strategies.base import ClientUpdates, FitInstructions, Strategy, Weights
from scarcity.strategies.fedavgm import SERVER_LEARNING_RATE
from scarcity.strategies.functions import local_steps, option, rows, scaffold_client_controls


class Scaffold(Strategy):
    name: ClassVar[str] = "scaffold"
    paper: ClassVar[str] = (
        "Karimireddy et al. 2020, SCAFFOLD: Stochastic Controlled Averaging for Federated "
        "Learning (ICML)"
    )
    summary: ClassVar[str] = "Control variates correct each client's drift (c − c_i)."
    params: ClassVar[tuple[Param, ...]] = (SERVER_LEARNING_RATE,)
    defaults: ClassVar[Mapping[str, Any]] = {"server_learning_rate": 1.0}

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.server_control: dict[str, Tensor] | None = None
        self.client_controls: dict[str, Tensor] | None = None

    def _controls(
        self, global_weights: Weights, num_clients: int
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        if self.server_control is None or self.client_controls is None:
            self.server_control = {k: torch.zeros_like(v) for k, v in global_weights.items()}
            self.client_controls = {
                k: torch.zeros((num_clients, *v.shape), dtype=v.dtype, device=v.device)
                for k, v in global_weights.items()
            }
        held = next(iter(self.client_controls.values())).shape[0]
        if held != num_clients:
            raise ValueError(f"scaffold: controls of {held} clients, the run has {num_clients}")
        return self.server_control, self.client_controls

    def configure_fit(
        self, round_index: int, global_weights: Weights, participants: Tensor
    ) -> FitInstructions:
        c, c_clients = self._controls(global_weights, int(self.config.num_clients))
        mine = rows(c_clients, participants)
        return FitInstructions(correction={k: c[k] - value for k, value in mine.items()})

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        c, c_clients = self._controls(global_weights, updates.num_clients)
        participants = updates.participants
        old = rows(c_clients, participants)
        steps = local_steps(
            updates.sample_counts, int(self.config.local_epochs), int(self.config.batch_size)
        )
        new = scaffold_client_controls(
            old, c, global_weights, updates.weights, steps, float(self.config.learning_rate)
        )
        lr = float(option(self, "server_learning_rate"))
        weights = {
            key: value + lr * (updates.weights[key] - value).mean(dim=0)
            for key, value in global_weights.items()
        }
        self.server_control = {
            key: value + (new[key] - old[key]).sum(dim=0) / updates.num_clients
            for key, value in c.items()
        }
        self.client_controls = {
            key: value.index_copy(0, participants, new[key]) for key, value in c_clients.items()
        }
        return weights

    def traffic(
        self, global_weights: Weights, instructions: FitInstructions, updates: ClientUpdates
    ) -> Traffic:
        """FedAvg's bytes plus the control variate c down and Δc_i up, each shaped like the
        model, at the controls' dtype."""
        c, _ = self._controls(global_weights, updates.num_clients)
        control = int(updates.participants.shape[0]) * tensor_bytes(c)
        return super().traffic(global_weights, instructions, updates) + Traffic(control, control)

    def state_dict(self) -> dict[str, Any]:
        return {"server_control": self.server_control, "client_controls": self.client_controls}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        server, clients = state["server_control"], state["client_controls"]
        self.server_control = None if server is None else dict(server)
        self.client_controls = None if clients is None else dict(clients)
