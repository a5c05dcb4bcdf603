"""Trained models out of a simulation: the global model or one client's experts after a round,
as safetensors or a torch state dict, with a small JSON description of their architecture.

The store keeps no weights of a finished run (the worker's checkpoint is the engine state of a
*running* one, deleted when it ends), so a round's model is recomputed: `replay` runs the
simulation from its seed, or from a checkpoint taken at or before the round, up to that round.
Runs are deterministic (the same config, engine and torch thread count give the same bits), and
`mismatches` compares the replayed round's metrics with the stored ones, so a replay that does
not reproduce the stored round (another engine, another CPU's float rounding beyond the
tolerance) is refused rather than served (docs/design.md, "Trained models").

The global model's tensors are the backbone's own `state_dict`, so
`make_backbone(config).template().load_state_dict(tensors)` rebuilds it; a client's are every
expert's, named `<expert>.model.<param>` (its supervised head, the same backbone) and
`<expert>.encoder.weight` … (its linear autoencoder, `latent_dim` wide).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from scarcity.backbones import BACKBONES, make_backbone
from scarcity.config import SimulationConfig, is_regression
from scarcity.core.experts import portfolio
from scarcity.results import RoundResult
from scarcity.simulation import Simulation

Format = Literal["safetensors", "torch"]
FORMATS: tuple[Format, ...] = ("safetensors", "torch")
#: The file suffix of each format.
SUFFIXES: Mapping[str, str] = {"safetensors": ".safetensors", "torch": ".pt"}
#: The key of the architecture's JSON in a safetensors file's metadata.
METADATA_KEY = "scarcity.architecture"
#: How far a replayed metric may lie from the stored one, relative to max(1, |stored|): the
#: tolerance stored runs keep on another CPU, which sums float32 in another order.
REPLAY_TOLERANCE = 1e-5


class NoModel(ValueError):
    """The run has no such model (no shared model, no experts, no such client)."""


def _shapes(module: nn.Module, prefix: str = "") -> list[dict[str, Any]]:
    return [
        {
            "name": prefix + name,
            "shape": list(t.shape),
            "dtype": str(t.dtype).removeprefix("torch."),
        }
        for name, t in module.state_dict().items()
    ]


def _autoencoder(config: SimulationConfig) -> dict[str, nn.Module]:
    with torch.device("meta"):  # shapes only
        return {
            "encoder": nn.Linear(config.input_dim, config.latent_dim),
            "decoder": nn.Linear(config.latent_dim, config.input_dim),
        }


def architecture(config: SimulationConfig, client_id: int | None = None) -> dict[str, Any]:
    """What a downloaded model is: the backbone (name, its config fields, input and output
    dims), the task, the input's scaling and every tensor's name, shape and dtype; for a
    client, its experts and their autoencoders' latent width too. Reads no data."""
    backbone = make_backbone(config)
    cls = BACKBONES[config.model][0]
    head = backbone.template()
    described: dict[str, Any] = {
        "kind": "global" if client_id is None else "client_experts",
        "client_id": client_id,
        "backbone": {
            "name": config.model,
            "fields": {name: getattr(config, name) for name in cls.parameters},
            "input_dim": config.input_dim,
            "output_dim": config.output_dim,
            "description": cls.description,
        },
        "task": "regression" if is_regression(config.dataset) else "classification",
        "feature_scaling": config.feature_scaling,
        "engine_version": config.engine_version,
        "experts": None,
        "latent_dim": None,
    }
    if client_id is None:
        described["tensors"] = _shapes(head)
        return described
    experts = list(portfolio(config))
    described["experts"] = experts
    described["latent_dim"] = config.latent_dim
    parts = {"model": head, **_autoencoder(config)}
    described["tensors"] = [
        entry
        for expert in experts
        for part, module in parts.items()
        for entry in _shapes(module, f"{expert}.{part}.")
    ]
    return described


def check_request(config: SimulationConfig, client_id: int | None) -> None:
    """Refuse, naming why, a model the run never has: a global model without FedAvg, a client
    beyond `num_clients` or one that holds no experts (the baseline)."""
    if client_id is None:
        if not config.federated_averaging:
            raise NoModel(
                "this run has no global model (federated_averaging is off: its clients share "
                "insights, not weights); ask for a client's experts with client_id"
            )
        return
    if client_id >= config.num_clients:
        raise NoModel(f"client_id {client_id}: the run has {config.num_clients} clients (0…)")
    if not portfolio(config):
        raise NoModel("this run's clients hold no experts (only the shared model: no client_id)")


def global_model(simulation: Simulation) -> dict[str, Tensor]:
    """The global model's weights as the last round left them (the backbone's state_dict)."""
    return simulation.server.global_weights()


def client_experts(simulation: Simulation, client_id: int) -> dict[str, Tensor]:
    """Every expert of one client as the last round left it: `<expert>.<part>.<param>`."""
    names = portfolio(simulation.config)
    pool = simulation.pool
    out: dict[str, Tensor] = {}
    for index, name in enumerate(names):
        if pool is not None:
            weights = pool.expert_weights(client_id, index)
        else:
            weights = simulation.clients[client_id].get_expert_weights(index)
        out |= {f"{name}.{key}": value.contiguous() for key, value in weights.items()}
    return out


def replay(
    config: SimulationConfig, round: int, checkpoint: bytes | None = None
) -> tuple[Simulation, RoundResult | None]:
    """The simulation after `round`, recomputed from its seed or from `checkpoint` (engine
    state after a round at or before it), and the replayed round's result (None when the
    checkpoint was taken after that very round: nothing was recomputed)."""
    simulation = (
        Simulation.restore(config, checkpoint) if checkpoint is not None else Simulation(config)
    )
    if simulation.rounds_completed > round:
        raise ValueError(f"the checkpoint is after round {round}")
    result = None
    while simulation.rounds_completed < round:
        result = simulation.run_round()
    return simulation, result


def mismatches(
    stored: Mapping[str, float],
    replayed: Mapping[str, float],
    tolerance: float = REPLAY_TOLERANCE,
) -> list[str]:
    """The metrics in which a replayed round differs from the stored one (missing on either
    side, or further apart than `tolerance` × max(1, |stored|)), as `name: stored → replayed`."""
    out = []
    for name in sorted(set(stored) | set(replayed)):
        a, b = stored.get(name), replayed.get(name)
        if a is None or b is None or abs(a - b) > tolerance * max(1.0, abs(a)):
            out.append(f"{name}: {a} → {b}")
    return out


def encode(tensors: Mapping[str, Tensor], format: Format, description: Mapping[str, Any]) -> bytes:
    """The tensors as a file: safetensors (the description in its metadata under
    `METADATA_KEY`) or a `torch.save`d state dict (`torch.load(weights_only=True)` reads it)."""
    tensors = {name: t.detach().contiguous() for name, t in tensors.items()}
    if format == "safetensors":
        from safetensors.torch import save

        return save(tensors, metadata={METADATA_KEY: json.dumps(description)})
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def decode(blob: bytes, format: Format = "safetensors") -> dict[str, Tensor]:
    """The tensors of a file `encode` wrote (no code runs: safetensors, or torch's
    weights-only loader)."""
    if format == "safetensors":
        from safetensors.torch import load

        return load(blob)
    loaded = torch.load(io.BytesIO(blob), weights_only=True)
    return dict(loaded)


def read_description(blob: bytes) -> dict[str, Any]:
    """The architecture a safetensors file of `encode` carries in its metadata."""
    header = int.from_bytes(blob[:8], "little")
    metadata = json.loads(blob[8 : 8 + header]).get("__metadata__") or {}
    return dict(json.loads(metadata[METADATA_KEY]))


__all__ = [
    "FORMATS",
    "METADATA_KEY",
    "NoModel",
    "architecture",
    "check_request",
    "client_experts",
    "decode",
    "encode",
    "global_model",
    "mismatches",
    "read_description",
    "replay",
]
