"""Insight assembly: every client's insight from the stacked round equals its own."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from scarcity.components.insights import (
    SUPERVISED_KEYS,
    ClientRound,
    PoolRound,
    build_insights,
    client_insight,
)

NAMES = ("StructureExpert", "DriftExpert")


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
