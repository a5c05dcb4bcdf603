"""Simple CNN: NIID-Bench's convolutional network for 28×28 grey images (MNIST, FMNIST).

Li, Diao, Chen & He, "Federated Learning on Non-IID Data Silos: An Experimental Study",
ICDE 2022 (arXiv:2102.02079); the model is `SimpleCNNMNIST` in `model.py` of
github.com/Xtra-Computing/NIID-Bench (MIT licence), built by `experiments.py` as
`SimpleCNNMNIST(input_dim=16 * 4 * 4, hidden_dims=[120, 84], output_dim=10)` for mnist,
femnist and fmnist. A LeNet-5 shape: 5×5 convolution of 6 filters (no padding) → ReLU → 2×2
max-pool → 5×5 convolution of 16 filters → ReLU → 2×2 max-pool (16 maps of 4×4) → linear
256 → 120 → ReLU → linear 120 → 84 → ReLU → linear 84 → classes; no dropout, no batch norm.
44,426 parameters for 10 classes. The rows are 28×28 images flattened row by row.

The batched execution runs its stacked models one by one (`stacking = "loop"`): vectorised
over the models, each convolution becomes one grouped convolution, which the CPU kernels run
2.7× slower than the models' own convolutions for these shapes (the first layer, 24 clients
× 32 images), making a training step 1.4× slower than the loop.
"""

from __future__ import annotations

from torch import nn

from scarcity.backbones.base import Backbone
from scarcity.errors import ConfigError

IMAGE_SIDE = 28
KERNEL = 5
CHANNELS = (6, 16)
HIDDEN = (120, 84)


class SimpleCNNBackbone(Backbone):
    name = "simple_cnn"
    description = (
        "28×28 images (NIID-Bench's simple CNN): 5×5 conv 6 → ReLU → max-pool → 5×5 conv 16 "
        "→ ReLU → max-pool → linear 256 → 120 → 84 → classes (ReLU between)."
    )

    stacking = "loop"

    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__(input_dim, output_dim)
        if input_dim != IMAGE_SIDE * IMAGE_SIDE:
            raise ConfigError(
                "model", f"simple_cnn takes 28×28 images (784 features), got {input_dim}"
            )

    def layers(self) -> nn.Module:
        side = IMAGE_SIDE
        for _ in CHANNELS:  # each block: a valid 5×5 convolution, then 2×2 pooling
            side = (side - KERNEL + 1) // 2
        return nn.Sequential(
            nn.Unflatten(1, (1, IMAGE_SIDE, IMAGE_SIDE)),
            nn.Conv2d(1, CHANNELS[0], kernel_size=KERNEL),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(CHANNELS[0], CHANNELS[1], kernel_size=KERNEL),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(CHANNELS[1] * side * side, HIDDEN[0]),
            nn.ReLU(),
            nn.Linear(HIDDEN[0], HIDDEN[1]),
            nn.ReLU(),
            nn.Linear(HIDDEN[1], self.output_dim),
        )
