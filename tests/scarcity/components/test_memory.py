"""Memory replay: the stacked buffers equal the per-client ones."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from scarcity.batched.autoencoder import ReplayMoments
from scarcity.batched.padding import pad_clients
from scarcity.components.memory import ReplayBuffer, ReplayBuffers

CAPACITY, D, LATENT = 10, 3, 2


def _encoder(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(D, LATENT)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


@pytest.mark.parametrize("sizes", [[8, 8, 8], [8, 1, 5]])
def test_stacked_buffers_equal_the_per_client_buffers(sizes: list[int]):
    g = torch.Generator().manual_seed(1)
    data = [torch.randn(n, D, generator=g) for n in sizes]
    enc_w, enc_b = torch.randn(3, LATENT, D, generator=g), torch.randn(3, LATENT, generator=g)
    encoders = [_encoder(enc_w[c], enc_b[c]) for c in range(3)]
    ragged = torch.tensor(sizes) if len(set(sizes)) > 1 else None
    x = pad_clients(data)
    stacked = ReplayBuffers(3, CAPACITY, D, LATENT)
    buffers = [ReplayBuffer(CAPACITY, D, LATENT) for _ in range(3)]
    everyone = torch.arange(3)
    for call in range(4):  # more rows than the capacity holds
        seeds = [10 * call + c for c in range(3)]
        perm = torch.zeros(3, x.shape[1], dtype=torch.long)
        for c, n in enumerate(sizes):
            own = torch.randperm(n, generator=torch.Generator().manual_seed(seeds[c]))
            perm[c] = torch.cat([own, torch.arange(n, x.shape[1])])  # padding last
            buffers[c].store(data[c], encoders[c], torch.Generator().manual_seed(seeds[c]))
        stacked.store(x, perm, everyone, (enc_w, enc_b), ragged)
    error = stacked.replay_error(enc_w, enc_b)
    summary = stacked.summary(error)
    for c, buffer in enumerate(buffers):
        size = len(buffer.x)
        assert int(stacked.size[c]) == size
        assert torch.allclose(stacked.x[c, CAPACITY - size :], buffer.x, atol=1e-6)
        assert torch.allclose(stacked.z[c, CAPACITY - size :], buffer.z, atol=1e-6)
        for key, value in buffer.summary(encoders[c]).items():
            assert summary[key][c].item() == pytest.approx(value, abs=1e-6), key


def test_sampled_clients_store_alone_and_the_state_round_trips():
    stacked = ReplayBuffers(3, CAPACITY, D, LATENT)
    clients = torch.tensor([2])
    part = stacked.take(clients)
    part.append(torch.arange(1), torch.ones(1, 2, D), torch.ones(1, 2, LATENT))
    stacked.put(clients, part)
    assert stacked.size.tolist() == [0, 0, 2]
    restored = ReplayBuffers(3, CAPACITY, D, LATENT)
    restored.load_state_dict(stacked.state_dict())
    assert torch.equal(restored.x, stacked.x) and torch.equal(restored.size, stacked.size)


def test_kept_moments_equal_the_moments_summed_afresh():
    """`moments()` sums again only the buffers changed since its last call (by `append`,
    `put` or a restore); every field equals the sums over every buffer, bit for bit."""
    g = torch.Generator().manual_seed(3)
    stacked = ReplayBuffers(6, CAPACITY, D, LATENT)

    def check() -> None:
        kept = stacked.moments()
        fresh = ReplayMoments.of(stacked.x, stacked.z, stacked.size)
        for field in dataclasses.fields(fresh):
            assert torch.equal(getattr(kept, field.name), getattr(fresh, field.name)), field.name

    check()
    for clients in ([0, 1, 2, 3, 4, 5], [1, 4], [5], [0, 2, 3]):
        rows = torch.tensor(clients)
        n = len(clients)
        stacked.append(
            rows, torch.randn(n, 3, D, generator=g), torch.randn(n, 3, LATENT, generator=g)
        )
        check()
    part = stacked.take(torch.tensor([1, 3]))
    part.append(
        torch.tensor([0]), torch.randn(1, 2, D, generator=g), torch.randn(1, 2, LATENT, generator=g)
    )
    assert part.moments().xx.shape[0] == 2
    stacked.put(torch.tensor([1, 3]), part)
    check()
    stacked.load_state_dict(ReplayBuffers(6, CAPACITY, D, LATENT).state_dict())
    check()


def test_buffers_assigned_whole_are_summed_afresh():
    stacked = ReplayBuffers(2, CAPACITY, D, LATENT)
    stacked.append(torch.arange(2), torch.ones(2, 3, D), torch.ones(2, 3, LATENT))
    assert stacked.moments().count.tolist() == [3.0, 3.0]
    stacked.size = torch.tensor([1, 3])
    assert stacked.moments().count.tolist() == [1.0, 3.0]
    stacked.x = torch.zeros(2, CAPACITY, D)
    assert stacked.moments().x.abs().sum() == 0
