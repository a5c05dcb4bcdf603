"""Char RNN: the next-character LSTM of FedAvg's and LEAF's Shakespeare task.

The model of McMahan et al. (AISTATS 2017, "Communication-Efficient Learning of Deep Networks
from Decentralized Data") as LEAF ships it (Caldas et al. 2018, `models/shakespeare/
stacked_lstm.py`): each of the `input_dim` characters of a row is looked up in an 8-dimensional
embedding of the `output_dim` symbols, a stack of LSTM layers reads the sequence, and a linear
layer maps the last step's hidden state to the next symbol's logits. LEAF stacks 2 layers of 256
units (TensorFlow's `BasicLSTMCell`, forget-gate bias 1); the defaults here are 1 layer of 64
units (`rnn_layers`, `rnn_hidden`), sized for training many clients on a few CPU cores.

The rows hold the symbols' integer codes as floats (a data set with feature scaling `none`,
e.g. `shakespeare`); the model rounds them to integers and clamps them into [0, output_dim).

The recurrence is written out step by step from matrix products, sigmoid and tanh rather than
`nn.LSTM`, because the batched execution calls the module under `torch.func.vmap`, which has no
batching rule for PyTorch's fused LSTM. Per layer: the inputs' projection W_x·x_t + b for all
steps in one product, then for t = 1 … T: [i, f, o, g] = that + W_h·h_{t−1};
c_t = σ(f + 1)·c_{t−1} + σ(i)·tanh(g); h_t = σ(o)·tanh(c_t), from h_0 = c_0 = 0 (TensorFlow's
LSTM cell, whose gate order differs, which only permutes rows of the weights). Parameters are
drawn as every backbone's: uniform(±1/√fan_in) per layer, the embedding's fan-in its width 8.
The batched execution keeps `vmap` stacking: a stage-2 round of 20 `shakespeare` clients took
2.2–2.7 s vmapped against 4.5–4.7 s with the models looped one by one (2 quiet cores).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from scarcity.backbones.base import Backbone
from scarcity.errors import ConfigError
from scarcity.params import Param

#: LEAF's embedding width.
EMBEDDING_DIM = 8
#: TensorFlow's `BasicLSTMCell` adds 1 to the forget gate's pre-activation (LEAF's cell).
FORGET_BIAS = 1.0


class Embedding(nn.Module):
    """A lookup table [symbols, width] (as `nn.Embedding`, whose own initial N(0, 1) draw the
    backbone replaces anyway and which is slow to make on the meta device the first time)."""

    def __init__(self, symbols: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(symbols, width))

    def forward(self, codes: Tensor) -> Tensor:
        return F.embedding(codes, self.weight)


class CharLSTM(nn.Module):
    """Embedding → `layers` LSTM layers of `hidden` units → linear on the last step."""

    def __init__(self, symbols: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.symbols, self.hidden = symbols, hidden
        self.embedding = Embedding(symbols, EMBEDDING_DIM)
        widths = [EMBEDDING_DIM] + [hidden] * (layers - 1)
        # Gates in the order input, forget, output (sigmoid), candidate (tanh).
        self.inputs = nn.ModuleList(nn.Linear(w, 4 * hidden) for w in widths)
        self.recurrent = nn.ModuleList(
            nn.Linear(hidden, 4 * hidden, bias=False) for _ in range(layers)
        )
        self.output = nn.Linear(hidden, symbols)

    def forward(self, x: Tensor) -> Tensor:
        hidden, layers = self.hidden, len(self.inputs)
        codes = x.round().long().clamp(0, self.symbols - 1)  # [m, T]
        sequence = self.embedding(codes)  # [m, T, 8]
        # The forget gate's constant bias, added once to every step's input term.
        offset = torch.zeros(4 * hidden)
        offset[hidden : 2 * hidden] = FORGET_BIAS
        h = sequence.new_zeros(len(codes), hidden)
        for layer, (inputs, recurrent) in enumerate(zip(self.inputs, self.recurrent, strict=True)):
            projected = inputs(sequence) + offset  # [m, T, 4H]: every step's input term at once
            h = c = projected.new_zeros(projected.shape[0], hidden)
            outputs = []
            # unbind, not projected[:, t]: its backward is one stack, not T zero-filled copies.
            for step in projected.unbind(dim=1):
                gated, candidate = (step + recurrent(h)).split([3 * hidden, hidden], dim=1)
                i, f, o = torch.sigmoid(gated).chunk(3, dim=1)
                c = f * c + i * torch.tanh(candidate)
                h = o * torch.tanh(c)
                if layer < layers - 1:
                    outputs.append(h)
            if outputs:
                sequence = torch.stack(outputs, dim=1)  # the next layer's inputs
        return self.output(h)


class CharRNNBackbone(Backbone):
    name = "char_rnn"
    description = (
        "Next-character LSTM (FedAvg's and LEAF's Shakespeare model): 8-dim embedding of the "
        "codes → rnn_layers LSTM layers of rnn_hidden units → linear on the last step."
    )
    params = (
        Param(
            "rnn_hidden",
            int,
            64,
            "char_rnn: units of each LSTM layer (LEAF: 256).",
            ge=1,
            le=1024,
        ),
        Param("rnn_layers", int, 1, "char_rnn: stacked LSTM layers (LEAF: 2).", ge=1, le=4),
    )

    def __init__(
        self, input_dim: int, output_dim: int, hidden: int, layers: int, scaling: str | None
    ) -> None:
        super().__init__(input_dim, output_dim)
        if output_dim < 2:
            raise ConfigError(
                "model", "char_rnn predicts the next of output_dim symbols: needs 2 or more classes"
            )
        if scaling != "none":
            raise ConfigError(
                "model",
                "char_rnn reads each feature as a symbol's integer code and needs a data set "
                "of codes stored unscaled (feature_scaling none), such as shakespeare",
            )
        self.hidden, self.layers_count = hidden, layers

    def layers(self) -> nn.Module:
        return CharLSTM(self.output_dim, self.hidden, self.layers_count)
