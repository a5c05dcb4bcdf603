"""CNN: a small convolutional network for the 8×8 digits images.

The rows of `digits` are 8×8 grey images flattened to 64 features. The network is the usual
shape of the small CNNs of FL benchmarks (LEAF's and FedAvg's CNN, McMahan et al. 2017, scaled
down to 8×8): a 3×3 convolution of `cnn_channels` filters (padding 1), ReLU, 2×2 max-pooling to
4×4, and a linear layer from the pooled maps to the classes.
"""

from __future__ import annotations

from torch import nn

from scarcity.backbones.base import Backbone
from scarcity.errors import ConfigError
from scarcity.params import Param

IMAGE_SIDE = 8


class CNNBackbone(Backbone):
    name = "cnn"
    description = "8×8 images: 3×3 conv (cnn_channels filters) → ReLU → 2×2 max-pool → linear."
    params = (Param("cnn_channels", int, 8, "cnn: filters of the 3×3 convolution.", ge=1, le=256),)

    def __init__(self, input_dim: int, output_dim: int, channels: int) -> None:
        super().__init__(input_dim, output_dim)
        if input_dim != IMAGE_SIDE * IMAGE_SIDE:
            raise ConfigError("model", f"cnn takes 8×8 images (64 features), got {input_dim}")
        self.channels = channels

    def layers(self) -> nn.Module:
        pooled = IMAGE_SIDE // 2
        return nn.Sequential(
            nn.Unflatten(1, (1, IMAGE_SIDE, IMAGE_SIDE)),
            nn.Conv2d(1, self.channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(self.channels * pooled * pooled, self.output_dim),
        )
