"""The label-free probe from engine_version 7: 5-fold cross-validated ridge on literal arrays,
an untrained encoder's probe beside it, and runs of engine_version 6 as they were."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scarcity import resolve_config, run_simulation
from scarcity.core.probe import PROBE_FOLDS, RIDGE, probe_scores, untrained_encoders
from scarcity.results import METRIC_NAMES


def _ridge_predictions(features: np.ndarray, targets: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """Least squares on the augmented system [X; √λ·I] (λ = RIDGE · fitted rows)."""
    penalty = np.sqrt(RIDGE * fit.sum()) * np.eye(features.shape[1])
    zeros = np.zeros((features.shape[1], targets.shape[1]))
    a, b = np.vstack([features[fit], penalty]), np.vstack([targets[fit], zeros])
    return features @ np.linalg.lstsq(a, b, rcond=None)[0]


@pytest.mark.parametrize("rows", [12, 3])  # 5 folds of 2–3 rows; 3 rows: 3 folds of one
def test_the_probe_is_cross_validated_on_literal_arrays(rows: int):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, 3))
    y = rng.integers(0, 3, size=rows)
    weight, bias = rng.normal(size=(2, 3)), rng.normal(size=2)
    features = np.hstack([x @ weight.T + bias, np.ones((rows, 1))])
    folds = min(PROBE_FOLDS, rows)
    right, errors = [], []
    for f in range(folds):
        held = np.zeros(rows, dtype=bool)
        held[rows * f // folds : rows * (f + 1) // folds] = True
        predicted = _ridge_predictions(features, np.eye(3)[y], ~held)[held]
        right.extend(predicted.argmax(axis=1) == y[held])
        value = _ridge_predictions(features, y[:, None].astype(float), ~held)[held]
        errors.extend((value[:, 0] - y[held]) ** 2)
    args = (torch.tensor(weight)[None], torch.tensor(bias)[None])
    got = probe_scores("classification", 3, *args, [(torch.tensor(x), torch.tensor(y))], 5)
    assert got.item() == pytest.approx(float(np.mean(right)))
    target = torch.tensor(y, dtype=torch.float64)[:, None]
    regression = probe_scores("regression", 1, *args, [(torch.tensor(x), target)], 5)
    assert regression.item() == pytest.approx(float(np.mean(errors)))
    # the half split of engine_version 6 is another number on the same rows
    assert rows < 4 or probe_scores("regression", 1, *args, [(torch.tensor(x), target)]) != (
        regression
    )


def test_untrained_encoders_are_drawn_as_the_experts_are_initialised():
    like = torch.zeros(3, 4, 16)
    weight, bias = untrained_encoders(like, seed=0, round_index=2)
    assert weight.shape == (3, 4, 16) and bias.shape == (3, 4)
    assert float(weight.abs().max()) <= 0.25 and float(weight.std()) > 0.1  # uniform ±1/√16
    again = untrained_encoders(like, seed=0, round_index=2)
    assert torch.equal(again[0], weight)
    assert not torch.equal(untrained_encoders(like, seed=0, round_index=3)[0], weight)


DIGITS = dict(
    preset="stage8", dataset="digits", partition="dirichlet", num_clients=6, rounds=3,
    batch_size=16,
)  # fmt: skip


def test_a_trained_representation_is_probed_beside_an_untrained_one():
    """Digits, 6 clients, 3 rounds: the trained latents' probe against a random encoder of the
    same width, on the same held-out rows (printed; the test asserts only that both are
    reported and that they differ)."""
    assert {"probe_accuracy_untrained", "probe_loss_untrained"} <= set(METRIC_NAMES)
    metrics = run_simulation(resolve_config(DIGITS))[-1].metrics
    print(metrics["probe_accuracy"], metrics["probe_accuracy_untrained"])
    assert 0.1 < metrics["probe_accuracy_untrained"] < 1.0
    assert metrics["probe_accuracy"] != metrics["probe_accuracy_untrained"]
    earlier = run_simulation(resolve_config(DIGITS, engine_version=6))[-1].metrics
    assert "probe_accuracy_untrained" not in earlier
    assert earlier["probe_accuracy"] != metrics["probe_accuracy"]
    assert earlier["recon_loss"] == metrics["recon_loss"]  # only the probe moved
