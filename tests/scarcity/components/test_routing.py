"""Routing: the stacked router picks what each client's own router picks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scarcity.components.routing import ROUTER_STRATEGIES, Router, StackedRouter
from scarcity.core.experts import EXTENDED_PORTFOLIO


@pytest.mark.parametrize("strategy", sorted(ROUTER_STRATEGIES))
def test_stacked_router_equals_the_per_client_routers(strategy: str):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 3, generator=g) * torch.tensor([0.1, 2.0, 0.5, 1.5]).view(4, 1, 1)
    names = list(EXTENDED_PORTFOLIO)
    routers = [Router(len(names), strategy, 0.5, np.random.default_rng(7)) for _ in range(4)]
    stacked = StackedRouter(4, names, strategy, 0.5, np.random.default_rng(7))
    shared = np.random.default_rng(7)  # the reference's clients draw from one stream
    for router in routers:
        router.rng = shared
    for _ in range(5):
        losses = torch.rand(4, len(names), generator=g)  # what `loss` routing reads
        picks = [
            r.select_expert(xi, names, li) for r, xi, li in zip(routers, x, losses, strict=True)
        ]
        assert stacked.select(x, None, losses).tolist() == picks
    usage = [[r.usage[n] for n in names] for r in routers]
    assert stacked.usage.tolist() == usage
    restored = StackedRouter(4, names, strategy, 0.5, np.random.default_rng(7))
    restored.load_state_dict(stacked.state_dict())
    assert torch.equal(restored.usage, stacked.usage)
    assert stacked.state_dict()["calls"] == max(r.calls for r in routers)
