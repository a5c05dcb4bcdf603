"""The supervised models a simulation can train (the config's `model`): one module each.

`BACKBONES` is the registry by name; `make_backbone(config)` builds the configured one with
its dimensions. Adding a model is one module defining a `Backbone` and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scarcity.backbones.base import Backbone, ParamSpec
from scarcity.backbones.char_rnn import CharRNNBackbone
from scarcity.backbones.cnn import CNNBackbone
from scarcity.backbones.linear import LinearBackbone
from scarcity.backbones.mlp import MLPBackbone
from scarcity.backbones.simple_cnn import SimpleCNNBackbone
from scarcity.params import Param, unique

#: name → (class, builder from the config's fields).
BACKBONES: dict[str, tuple[type[Backbone], Callable[[Any], Backbone]]] = {
    "linear": (LinearBackbone, lambda c: LinearBackbone(c.input_dim, c.output_dim)),
    "mlp": (MLPBackbone, lambda c: MLPBackbone(c.input_dim, c.output_dim, c.hidden_sizes)),
    "cnn": (CNNBackbone, lambda c: CNNBackbone(c.input_dim, c.output_dim, c.cnn_channels)),
    "simple_cnn": (SimpleCNNBackbone, lambda c: SimpleCNNBackbone(c.input_dim, c.output_dim)),
    "char_rnn": (
        CharRNNBackbone,
        lambda c: CharRNNBackbone(
            c.input_dim, c.output_dim, c.rnn_hidden, c.rnn_layers, c.feature_scaling
        ),
    ),
}


def backbone_params() -> list[Param]:
    """The config fields the backbones declare, each once, in registry order."""
    return unique(param for cls, _ in BACKBONES.values() for param in cls.params)


def make_backbone(config: Any) -> Backbone:
    """The backbone `config.model` names, for `config.input_dim` → `config.output_dim`."""
    return BACKBONES[config.model][1](config)


__all__ = ["BACKBONES", "Backbone", "ParamSpec", "backbone_params", "make_backbone"]
