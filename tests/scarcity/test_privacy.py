"""DP-FedAvg's `epsilon`: the privacy spent after the rounds so far, as Opacus' RDP accountant
answers for the run's noise multiplier z, sampling rate q = P / N, rounds and δ."""

from __future__ import annotations

import math

import numpy as np
from opacus.accountants import RDPAccountant

from scarcity import resolve_config, run_simulation
from scarcity.strategies.dp_fedavg import epsilon

DP = {
    "preset": "baseline",
    "strategy": "dp_fedavg",
    "num_clients": 10,
    "clients_per_round": 4,
    "rounds": 3,
    "dp_noise_multiplier": 1.1,
    "dp_delta": 1e-4,
}


def test_epsilon_is_the_accountants_answer_after_each_round():
    results = run_simulation(resolve_config(DP))
    accountant = RDPAccountant()
    for r in results:
        accountant.step(noise_multiplier=1.1, sample_rate=4 / 10)  # one round: q = P / N
        assert r.metrics["epsilon"] == accountant.get_epsilon(1e-4)
    spent = [r.metrics["epsilon"] for r in results]
    assert spent == sorted(spent) and spent[0] < spent[-1]


def test_epsilon_without_sampling_is_the_gaussian_mechanisms_closed_form():
    """q = 1: RDP of T Gaussian rounds is T·α/(2z²) at order α (Mironov 2017), turned into
    ε = min over α of RDP + log((α−1)/α) − (log δ + log α)/(α − 1) (Balle et al. 2020)."""
    orders = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=float)
    z, rounds, delta = 2.0, 7, 1e-5
    rdp = rounds * orders / (2 * z**2)
    expected = np.min(
        rdp + np.log((orders - 1) / orders) - (np.log(delta) + np.log(orders)) / (orders - 1)
    )
    assert math.isclose(epsilon(z, 1.0, rounds, delta), float(expected), rel_tol=1e-9)


def test_dp_delta_defaults_to_1e_5_and_other_strategies_leave_it_unset():
    assert resolve_config(preset="baseline", strategy="dp_fedavg").dp_delta == 1e-5
    assert resolve_config(preset="baseline").dp_delta is None
    (result,) = run_simulation(resolve_config({**DP, "dp_delta": None, "rounds": 1}))
    accountant = RDPAccountant()
    accountant.step(noise_multiplier=1.1, sample_rate=0.4)
    assert result.metrics["epsilon"] == accountant.get_epsilon(1e-5)


def test_without_noise_epsilon_is_infinite_and_not_reported():
    assert epsilon(0.0, 0.4, 3, 1e-5) == math.inf
    results = run_simulation(resolve_config({**DP, "dp_noise_multiplier": 0.0}))
    assert all("epsilon" not in r.metrics and "dp_noise_std" in r.metrics for r in results)


def test_engine_version_7_reports_no_epsilon():
    results = run_simulation(resolve_config({**DP, "engine_version": 7}))
    assert all("epsilon" not in r.metrics and "dp_noise_std" in r.metrics for r in results)
