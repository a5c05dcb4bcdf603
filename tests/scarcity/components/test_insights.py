"""Insight assembly: every client's insight from the stacked round equals its own."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from scarcity.components.insights import (
    SSL_KEYS,
    SUPERVISED_KEYS,
    ClientRound,
    PoolRound,
    build_insights,
    client_insight,
)

NAMES = ("StructureExpert", "DriftExpert")
NAMES3 = ("StructureExpert", "DriftExpert", "MemoryConsolidationExpert")


def _pool_round(selected: torch.Tensor | None) -> PoolRound:
    def column(*values: float) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64)

    group = 1 if selected is not None else len(NAMES)
    supervised = {
        key: torch.arange(2 * group, dtype=torch.float64).view(2, group) + i
        for i, key in enumerate(SUPERVISED_KEYS)
    }
    return PoolRound(
        loss=column(0.5, 0.25),
        initial_loss=column(1.0, 0.75),
        final_loss=column(0.5, 0.5),
        uncertainty=column(0.1, 0.2),
        mean_grad=column(0.01, 0.02),
        selected=selected,
        supervised=supervised,
        ssl=None,
        replay_error=None,
        summaries={
            "StructureExpert.mean": column(0.0, 1.0),
            "DriftExpert.drift": column(0.0, 0.5),
        },
    )


def _client_round(r: PoolRound, c: int) -> ClientRound:
    chosen = None if r.selected is None else int(r.selected[c])
    metrics: dict[str, dict[str, float]] = {}
    for e, name in enumerate(NAMES):
        if chosen is None or chosen == e:
            j = e if chosen is None else 0
            metrics[name] = {key: float(r.supervised[key][c, j]) for key in SUPERVISED_KEYS}
    summaries = {name: {} for name in NAMES}  # type: dict[str, dict[str, float]]
    for key, value in r.summaries.items():
        expert, stat = key.split(".")
        summaries[expert][stat] = float(value[c])
    return ClientRound(
        loss=float(r.loss[c]),
        initial_loss=float(r.initial_loss[c]),
        final_loss=float(r.final_loss[c]),
        uncertainty=float(r.uncertainty[c]),
        mean_grad=float(r.mean_grad[c]),
        selected_expert="all" if chosen is None else NAMES[chosen],
        expert_metrics=metrics,
        summaries=summaries,
    )


@pytest.mark.parametrize("selected", [None, torch.tensor([1, 0])])
def test_stacked_insights_equal_each_clients_own(selected: torch.Tensor | None):
    r = _pool_round(selected)
    stacked = build_insights(r, NAMES, None, [3, 7])
    for c, insight in enumerate(stacked):
        own = client_insight([3, 7][c], _client_round(r, c))
        ours, theirs = _flat(insight.to_dict()), _flat(own.to_dict())
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            assert ours[key] == (
                value if isinstance(value, str) else pytest.approx(value, abs=1e-6)
            )


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _seeded_round(selected: bool, supervised: bool, ssl: bool, seed: int) -> PoolRound:
    """Three experts, five clients, random float64 figures (the memory expert is the last)."""
    g = torch.Generator().manual_seed(seed)
    n, k = 5, len(NAMES3)

    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    chosen = torch.randint(k, (n,), generator=g) if selected else None
    group = 1 if selected else k
    return PoolRound(
        **{field: draw(n) for field in ("loss", "initial_loss", "final_loss", "uncertainty")},
        mean_grad=draw(n),
        selected=chosen,
        supervised={key: draw(n, group) for key in SUPERVISED_KEYS} if supervised else {},
        ssl={key: draw(n, k) for key in SSL_KEYS} if ssl else None,
        replay_error=draw(n) if ssl else None,
        summaries={
            "StructureExpert.mean": draw(n),
            "StructureExpert.std": draw(n),
            "DriftExpert.drift": draw(n),
            "MemoryConsolidationExpert.avg_replay_error": draw(n),
        },
    )


def _own_round(r: PoolRound, c: int, memory: int) -> ClientRound:
    """Client c's round as `Client` reports it: supervised metrics of what it trained, then
    the self-supervised ones of every expert (replay error: the memory expert's)."""
    chosen = None if r.selected is None else int(r.selected[c])
    metrics: dict[str, dict[str, float]] = {}
    for e, name in enumerate(NAMES3):
        m: dict[str, float] = {}
        if r.supervised and chosen in (None, e):
            j = e if chosen is None else 0
            m = {key: float(r.supervised[key][c, j]) for key in SUPERVISED_KEYS}
        if r.ssl is not None:
            m.update({key: float(r.ssl[key][c, e]) for key in SSL_KEYS})
            if e == memory and r.replay_error is not None:
                m["replay_error"] = float(r.replay_error[c])
        metrics[name] = m
    summaries: dict[str, dict[str, float]] = {name: {} for name in NAMES3}
    for key, value in r.summaries.items():
        expert, stat = key.split(".")
        summaries[expert][stat] = float(value[c])
    return ClientRound(
        **{field: float(value[c]) for field, value in r.means.items()},
        selected_expert="all" if chosen is None else NAMES3[chosen],
        expert_metrics=metrics,
        summaries=summaries,
    )


@pytest.mark.parametrize("selected", [False, True])
@pytest.mark.parametrize(("supervised", "ssl"), [(True, False), (False, True), (True, True)])
def test_stacked_insights_are_each_clients_own_bit_for_bit_in_order(
    selected: bool, supervised: bool, ssl: bool
):
    """The column-wise assembly against the per-client one: the same floats, the same keys in
    the same order (the JSON text), with routing or not, supervised, self-supervised, both."""
    r = _seeded_round(selected, supervised, ssl, seed=7)
    stacked = build_insights(r, NAMES3, 2, [4, 0, 3, 1, 2])
    own = [client_insight(i, _own_round(r, c, 2)) for c, i in enumerate([4, 0, 3, 1, 2])]
    assert [json.dumps(i.to_dict()) for i in stacked] == [json.dumps(i.to_dict()) for i in own]
    assert stacked == own
    parts = [p for i in stacked for report in i.experts.values() for p in report.values()]
    assert len({id(p) for p in parts}) == len(parts)  # no dict shared between reports
