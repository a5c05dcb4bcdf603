"""Linear: the seed's model, one `nn.Linear` from the features to the outputs.

Logistic regression (classification) or linear regression; its parameters keep the names
`weight` and `bias`, so stored simulations' checkpoints load as they were written. The batched
execution trains it by closed-form gradients (`scarcity.batched.linear`), which autograd over
the same module reproduces (tests/scarcity/test_backbones.py).
"""

from __future__ import annotations

from torch import nn

from scarcity.backbones.base import Backbone


class LinearBackbone(Backbone):
    name = "linear"
    description = "One linear layer (the seed's nn.Linear): logistic / linear regression."

    def layers(self) -> nn.Module:
        return nn.Linear(self.input_dim, self.output_dim)

    @property
    def closed_form(self) -> bool:
        return True
