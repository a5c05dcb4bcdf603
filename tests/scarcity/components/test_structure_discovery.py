"""Structure discovery: the stacked autoencoders train as each expert's own Adam does."""

from __future__ import annotations

import pytest
import torch

from scarcity.components.adaptation import LearningRateAdaptation
from scarcity.components.memory import ReplayBuffers
from scarcity.components.structure_discovery import (
    StackedAutoencoders,
    stacked_self_supervised_report,
)
from scarcity.core.experts import Expert

N, K, ROWS, D, LATENT, EPOCHS, LR = 2, 2, 8, 3, 2, 3, 0.05
KEYS = {"enc_w": "encoder.weight", "enc_b": "encoder.bias", "dec_w": "decoder.weight"}
KEYS["dec_b"] = "decoder.bias"


@pytest.mark.parametrize("batch_size", [0, 3])
def test_stacked_autoencoders_equal_the_experts_own(batch_size: int):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(N, ROWS, D, generator=g)
    experts = [
        [Expert(e, D, 1, LATENT, ssl_learning_rate=LR, generator=g) for e in range(K)]
        for _ in range(N)
    ]
    w = {
        key: torch.stack([torch.stack([e.get_weights()[name] for e in row]) for row in experts])
        for key, name in KEYS.items()
    }
    # Each expert's epoch permutations, drawn as its own training call draws them.
    perms = None
    if batch_size:
        perms = torch.stack([torch.stack([_epoch_perms(c, e) for e in range(K)]) for c in range(N)])
    stacked = StackedAutoencoders(w)
    ssl, replay = stacked.train(
        w,
        x,
        None,
        perms,
        epochs=EPOCHS,
        batch_size=batch_size,
        lr=LR,
        memory=None,
        buffers=ReplayBuffers(N, 1, D, LATENT),
        stored=None,
        fresh_replay=True,
        adaptation=LearningRateAdaptation(N, LR, 0.9, 1.05, 0.1),
        meta=None,
    )
    assert replay is None
    for c in range(N):
        for e, expert in enumerate(experts[c]):
            own = expert.train_self_supervised(x[c], EPOCHS, batch_size, _generator(c, e))
            for key, value in own.items():
                assert ssl[key][c, e].item() == pytest.approx(value, abs=1e-6), key
            for key, name in KEYS.items():
                assert torch.allclose(w[key][c, e], expert.get_weights()[name], atol=1e-6)
    report = stacked_self_supervised_report(w, x, None, ssl)
    assert report["train_loss"].shape == (N,)


def _generator(client: int, expert: int) -> torch.Generator:
    return torch.Generator().manual_seed(10 * client + expert)


def _epoch_perms(client: int, expert: int) -> torch.Tensor:
    generator = _generator(client, expert)
    return torch.stack([torch.randperm(ROWS, generator=generator) for _ in range(EPOCHS)])
