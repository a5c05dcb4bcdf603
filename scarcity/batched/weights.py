"""The pool's stacked weights: their keys and the reference's initial draw.

Every client's shared model, its experts' heads ([N, K, ...] per backbone parameter) and
autoencoders live in one dict of tensors, under the keys checkpoints have always used:
`shared_w` / `head_b` for Linear's parameters, `head.0.weight` for another backbone's,
`enc_w` … for the autoencoders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scarcity.backbones import Backbone

#: The autoencoder's stacked weights and their names in `Expert.get_weights`.
AUTOENCODER_KEYS = {
    "enc_w": "encoder.weight",
    "enc_b": "encoder.bias",
    "dec_w": "decoder.weight",
    "dec_b": "decoder.bias",
}
#: Stacked keys of the Linear backbone's parameters, as checkpoints have always named them.
LINEAR_KEYS = {"weight": "_w", "bias": "_b"}


def model_key(owner: str, name: str) -> str:
    """The pool's key of parameter `name` of the shared model (`owner` "shared") or of the
    experts' heads ("head"): `shared_w` / `head_b` for Linear's, `head.0.weight` else."""
    suffix = LINEAR_KEYS.get(name)
    return f"{owner}{suffix}" if suffix is not None else f"{owner}.{name}"


@dataclass(frozen=True)
class WeightKeys:
    """The backbone's parameters (`named_parameters` names) → the pool's keys."""

    shared: dict[str, str]
    head: dict[str, str]
    #: Every stacked tensor of an expert → its name in `Expert.get_weights`.
    expert: dict[str, str]

    @classmethod
    def of(cls, backbone: Backbone) -> WeightKeys:
        names = [spec.name for spec in backbone.specs()]
        head = {name: model_key("head", name) for name in names}
        return cls(
            shared={name: model_key("shared", name) for name in names},
            head=head,
            expert={**{key: f"model.{name}" for name, key in head.items()}, **AUTOENCODER_KEYS},
        )


def initial_weights(
    backbone: Backbone,
    keys: WeightKeys,
    num_clients: int,
    num_experts: int,
    input_dim: int,
    latent_dim: int,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """The reference's initial weights: per client, each expert's head (the backbone's
    parameters in order), encoder and decoder (`make_linear`: weight then bias), then the
    shared model — one uniform draw."""
    d, latent = input_dim, latent_dim
    specs = backbone.specs()
    expert_parts = [(keys.head[s.name], s.shape, s.fan_in) for s in specs] + [
        ("enc_w", (latent, d), d),
        ("enc_b", (latent,), d),
        ("dec_w", (d, latent), latent),
        ("dec_b", (d,), latent),
    ]
    shared_parts = [(keys.shared[s.name], s.shape, s.fan_in) for s in specs]
    per_expert = sum(math.prod(shape) for _, shape, _ in expert_parts)
    per_client = num_experts * per_expert + sum(math.prod(s) for _, s, _ in shared_parts)
    draw = torch.rand(num_clients, per_client, generator=generator)
    offset = 0
    pieces: dict[str, list[Tensor]] = {}
    for _ in range(num_experts):
        for name, shape, fan_in in expert_parts:
            pieces.setdefault(name, []).append(_uniform(draw, offset, num_clients, shape, fan_in))
            offset += math.prod(shape)
    w = {name: torch.stack(parts, dim=1).contiguous() for name, parts in pieces.items()}
    if not num_experts:  # the baseline: no experts, empty expert tensors keep shapes uniform
        w = {name: torch.zeros(num_clients, 0, *shape) for name, shape, _ in expert_parts}
    for name, shape, fan_in in shared_parts:
        w[name] = _uniform(draw, offset, num_clients, shape, fan_in).contiguous()
        offset += math.prod(shape)
    return w


def _uniform(
    draw: Tensor, offset: int, clients: int, shape: tuple[int, ...], fan_in: int
) -> Tensor:
    """`make_linear`'s uniform(±1/√fan_in) from a slice of the shared draw."""
    bound = 1.0 / math.sqrt(fan_in)
    piece = draw[:, offset : offset + math.prod(shape)].reshape(clients, *shape)
    return piece * (2 * bound) - bound
