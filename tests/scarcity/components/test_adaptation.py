"""Learning-rate adaptation: the stacked form equals the per-client rule."""

from __future__ import annotations

import pytest
import torch

from scarcity.components.adaptation import LearningRateAdaptation, LearningRateRule

BASE, DECREASE, INCREASE, THRESHOLD = 0.1, 0.9, 1.05, 0.1
# Epoch losses of three clients: rises, big drops, small drops.
LOSSES = [[1.0, 2.0, 0.5], [1.5, 1.7, 0.45], [1.3, 1.2, 0.2], [1.25, 1.4, 0.3]]


def test_stacked_adaptation_equals_the_per_client_rule():
    rules = [LearningRateRule(BASE, DECREASE, INCREASE, THRESHOLD) for _ in range(3)]
    stacked = LearningRateAdaptation(3, BASE, DECREASE, INCREASE, THRESHOLD)
    everyone = torch.arange(3)
    for epoch, losses in enumerate(LOSSES):
        if epoch == 2:  # a new round
            stacked.start_round()
            for rule in rules:
                rule.start_round()
        objective = "supervised" if epoch % 2 == 0 else "self_supervised"
        for rule, loss in zip(rules, losses, strict=True):
            rule.adapt(objective, loss, BASE)
        stacked.adapt(objective, torch.tensor(losses, dtype=torch.float64), everyone)
    summary = stacked.summary()
    for c, rule in enumerate(rules):
        for key, value in rule.summary(BASE).items():
            assert summary[key][c].item() == pytest.approx(value, abs=1e-6), key


def test_sampled_clients_adapt_alone_and_the_state_round_trips():
    stacked = LearningRateAdaptation(3, BASE, DECREASE, INCREASE, THRESHOLD)
    clients = torch.tensor([0, 2])
    part = stacked.take(clients)
    part.adapt("supervised", torch.tensor([1.0, 1.0]), torch.arange(2))
    part.adapt("supervised", torch.tensor([2.0, 0.5]), torch.arange(2))
    stacked.put(clients, part)
    assert stacked.scale.tolist() == pytest.approx([DECREASE, 1.0, INCREASE])
    restored = LearningRateAdaptation(3, BASE, DECREASE, INCREASE, THRESHOLD)
    restored.load_state_dict(stacked.state_dict())
    for key, value in stacked.summary().items():
        assert torch.equal(restored.summary()[key], value)
    rule = LearningRateRule(BASE, DECREASE, INCREASE, THRESHOLD)
    rule.adapt("supervised", 1.0, BASE)
    rule.adapt("supervised", 2.0, BASE)
    copy = LearningRateRule(BASE, DECREASE, INCREASE, THRESHOLD)
    copy.load_state_dict(rule.state_dict())
    assert copy.summary(BASE) == rule.summary(BASE)
