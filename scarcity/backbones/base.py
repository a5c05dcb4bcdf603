"""What a backbone is: the supervised model that stands where the seed's `nn.Linear` stood.

A backbone is one `nn.Module` architecture, defined once. The reference execution trains an
instance per model (`make`); the batched execution calls the same module with stacked
parameters [R, ...] through `torch.func.functional_call` under `vmap` (`scarcity.batched.models`),
so both compute the same function. Every parameter is drawn as PyTorch initialises
`nn.Linear` and `nn.Conv2d`: uniform(±1/√fan_in), fan_in = inputs per output unit (weight
then bias of each layer, in `named_parameters` order), from the caller's generator.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from scarcity.params import Param


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its `named_parameters` name, shape and the fan-in of its uniform init."""

    name: str
    shape: tuple[int, ...]
    fan_in: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class Backbone(ABC):
    """A model architecture of `input_dim` features and `output_dim` outputs."""

    #: Registry name (the config's `model`).
    name: ClassVar[str]
    #: One line for `GET /models` and the docs.
    description: ClassVar[str]
    #: The config fields it reads besides the data's dimensions, declared here: `scarcity.config`
    #: assembles the config from them.
    params: ClassVar[tuple[Param, ...]] = ()
    #: Their names (set from `params`).
    parameters: ClassVar[tuple[str, ...]] = ()
    #: How the batched execution runs a stack of these models (`scarcity.batched.models`):
    #: `vmap`, one vectorised call over the stacked parameters, or `loop`, the module once per
    #: model. Part of the numbers (the two take different kernels), so fixed per backbone.
    stacking: ClassVar[Literal["vmap", "loop"]] = "vmap"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.parameters = tuple(param.name for param in cls.params)

    def __init__(self, input_dim: int, output_dim: int) -> None:
        self.input_dim, self.output_dim = input_dim, output_dim

    @abstractmethod
    def layers(self) -> nn.Module:
        """The architecture (its parameters are overwritten by `make`)."""

    def template(self) -> nn.Module:
        """The architecture without initialised values (for `functional_call`)."""
        with torch.device("meta"):
            module = self.layers()
        return module.to_empty(device="cpu")

    def specs(self) -> list[ParamSpec]:
        """Every parameter in `named_parameters` order, with its initialisation's fan-in
        (worked out once per backbone: `make` runs for every model of every client)."""
        cached: list[ParamSpec] | None = getattr(self, "_specs", None)
        if cached is None:
            cached = self._specs = self._find_specs()
        return list(cached)

    def _find_specs(self) -> list[ParamSpec]:
        module = self.template()
        specs = []
        for layer in module.modules():
            weight = getattr(layer, "weight", None)
            if not isinstance(weight, nn.Parameter):
                continue
            fan_in = math.prod(weight.shape[1:])
            for name, param in layer.named_parameters(recurse=False):
                specs.append(ParamSpec(name, tuple(param.shape), fan_in))
        names = [name for name, _ in module.named_parameters()]
        if len(names) != len(specs):
            raise TypeError(f"{self.name}: a parameter outside a weighted layer")
        return [ParamSpec(n, s.shape, s.fan_in) for n, s in zip(names, specs, strict=True)]

    def make(self, generator: torch.Generator) -> nn.Module:
        """A trainable instance, its parameters drawn from `generator` in `specs` order."""
        module = self.template()
        params = dict(module.named_parameters())
        with torch.no_grad():
            for name, value in self.draw(generator).items():
                params[name].copy_(value)
        return module

    def draw(self, generator: torch.Generator) -> dict[str, Tensor]:
        """`make`'s parameters alone, by `named_parameters` name, without building a module
        (a stacked population draws them into its own tensors)."""
        values = {}
        for spec in self.specs():
            bound = 1.0 / math.sqrt(spec.fan_in)
            draw = torch.rand(spec.shape, generator=generator)
            values[spec.name] = draw * (2 * bound) - bound
        return values

    @property
    def closed_form(self) -> bool:
        """Whether the batched execution may train it by hand-derived gradients (Linear)."""
        return False
