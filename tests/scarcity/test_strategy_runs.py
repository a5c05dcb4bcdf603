"""Strategies, client sampling and Byzantine clients inside real simulations.

The strategies' math is checked on literal arrays in test_strategies.py; here the whole round:
both executions agree for every strategy, with and without sampling and unequal sizes; the
reductions the papers state hold exactly on digits runs; state survives checkpoints; clients
that are not drawn keep their state; attackers are fixed per run and tamper as described.
"""

import math

import pytest
import torch

from scarcity import Simulation, resolve_config, run_simulation
from scarcity.attacks import malicious_clients
from scarcity.strategies import STRATEGIES
from tests.scarcity.test_batched import assert_same_results

# Every client resized to 30 rows (equal sizes: the unweighted reductions below are FedAvg's).
DIGITS = {
    "preset": "baseline",
    "dataset": "digits",
    "partition": "dirichlet",
    "resample_to_size": True,
    "num_clients": 8,
    "samples_per_client": 30,
    "batch_size": 16,
    "learning_rate": 0.1,
    "rounds": 3,
}
SYNTHETIC = {"preset": "stage2", "num_clients": 8, "rounds": 3}
# Parameters that make each strategy do something visible on these small runs.
PARAMETERS = {
    "fedprox": {"proximal_mu": 0.5},
    "reptile": {"reptile_step_size": 0.5},
    "scaffold": {"server_learning_rate": 0.8},
    "dp_fedavg": {"dp_clipping_norm": 0.5, "dp_noise_multiplier": 0.1},
    "krum": {"num_malicious_clients": 1},
    "multikrum": {"num_malicious_clients": 1},
    "bulyan": {"num_malicious_clients": 1},
}


def _config(base, strategy, **extra):
    return resolve_config(base, strategy=strategy, **PARAMETERS.get(strategy, {}), **extra)


def _both(config):
    reference = run_simulation(config.model_copy(update={"execution": "reference"}))
    batched = run_simulation(config.model_copy(update={"execution": "batched"}))
    return reference, batched


@pytest.mark.parametrize("data", ["digits", "synthetic"])
@pytest.mark.parametrize(
    ("sampled", "skewed"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["everyone", "sampled", "skewed", "sampled_skewed"],
)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_batched_matches_the_reference(strategy, sampled, skewed, data):
    base = DIGITS if data == "digits" else SYNTHETIC
    extra: dict[str, float] = {}
    if sampled:  # Bulyan needs 4f + 3 participants
        extra["clients_per_round"] = 7 if strategy == "bulyan" else 6
    if skewed:
        extra["quantity_skew"] = 0.7
    reference, batched = _both(_config(base, strategy, **extra))
    assert_same_results(reference, batched)
    if sampled:
        assert reference[-1].metrics["clients_sampled"] == extra["clients_per_round"]


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox", "scaffold"])
def test_sampling_a_full_sf_hfe_round_matches_the_reference(strategy):
    """Stage 8 with a sample: routing, replay buffers, rate adaptation and autoencoders of the
    drawn clients only (the batched pool trains a sub-pool and writes it back)."""
    base = {
        "preset": "stage8",
        "federated_averaging": True,  # the strategy's shared model beside the experts
        "label_free": False,
        "num_clients": 7,
        "clients_per_round": 4,
        "quantity_skew": 0.5,
        "batch_size": 16,
        "rounds": 4,
        "router_strategy": "round_robin",
    }
    reference, batched = _both(_config(base, strategy))
    assert_same_results(reference, batched)
    ids = [sorted(i["client_id"] for i in r.insights) for r in batched]
    assert all(len(x) == 4 for x in ids) and len({tuple(x) for x in ids}) > 1


def _digits_metrics(**overrides):
    request = {**DIGITS, "rounds": 4, **overrides}
    return [r.metrics for r in run_simulation(resolve_config(request))]


def _without(metrics, *keys):
    return [{k: v for k, v in m.items() if k not in keys} for m in metrics]


def test_reductions_hold_exactly_on_digits():
    fedavg = _digits_metrics()
    assert _digits_metrics(strategy="fedprox", proximal_mu=0.0) == fedavg
    assert (
        _digits_metrics(strategy="fedavgm", server_momentum=0.0, server_learning_rate=1.0) == fedavg
    )
    assert _digits_metrics(clients_per_round=DIGITS["num_clients"]) == fedavg
    # Multi-Krum keeping everyone is FedAvg's sample-weighted mean itself (as Flower's).
    multikrum = _digits_metrics(
        strategy="multikrum", num_malicious_clients=0, num_clients_to_keep=DIGITS["num_clients"]
    )
    assert multikrum == fedavg
    # Equal client sizes: the unweighted mean is FedAvg's mean, summed in another order.
    trimmed = _digits_metrics(strategy="fedtrimmedavg", trim_beta=0.0)
    for got, want in zip(trimmed, fedavg, strict=True):
        assert got.keys() == want.keys()
        assert all(math.isclose(got[k], want[k], rel_tol=1e-6) for k in want)


def test_every_strategy_changes_the_outcome_with_its_parameters():
    """Ditto and FedAvg-FT keep FedAvg's global model (test_personalised_strategies.py): what
    they change is what the clients are scored with."""
    fedavg = _digits_metrics()[-1]["test_loss"]
    held = {"client_test_fraction": 0.25}
    fedavg_personal = _digits_metrics(**held)[-1]["personal_accuracy_mean"]
    for strategy in sorted(set(STRATEGIES) - {"fedavg"}):
        parameters = PARAMETERS.get(strategy, {})
        if STRATEGIES[strategy].client_model in ("personal", "finetuned"):
            got = _digits_metrics(strategy=strategy, **parameters, **held)[-1]
            assert got["personal_accuracy_mean"] != fedavg_personal, strategy
            continue
        got = _digits_metrics(strategy=strategy, **parameters)[-1]
        assert got["test_loss"] != fedavg, strategy


def test_dp_fedavg_reports_its_noise_and_client_side_clipping_spares_attackers():
    server = _digits_metrics(strategy="dp_fedavg", dp_noise_multiplier=0.2, dp_clipping_norm=0.5)
    assert server[-1]["dp_noise_multiplier"] == 0.2
    assert math.isclose(server[-1]["dp_noise_std"], 0.2 * 0.5 / DIGITS["num_clients"], rel_tol=1e-6)
    attacked = {"malicious_fraction": 0.25, "attack_scale": 4.0}
    by_server = _digits_metrics(strategy="dp_fedavg", dp_clipping="server", **attacked)
    by_clients = _digits_metrics(strategy="dp_fedavg", dp_clipping="client", **attacked)
    assert by_server[-1]["test_loss"] != by_clients[-1]["test_loss"]
    honest = {"dp_noise_multiplier": 0.3}
    assert _digits_metrics(strategy="dp_fedavg", dp_clipping="server", **honest) == _digits_metrics(
        strategy="dp_fedavg", dp_clipping="client", **honest
    )  # no attackers: who clips makes no difference


@pytest.mark.parametrize("execution", ["batched", "reference"])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_checkpoint_restore_continues_exactly_with_the_strategys_state(strategy, execution):
    config = _config(DIGITS, strategy, rounds=4, clients_per_round=7, execution=execution)
    straight = [r.metrics for r in run_simulation(config)]
    sim = Simulation(config)
    first = [sim.run_round().metrics for _ in range(2)]
    resumed = Simulation.restore(config, sim.checkpoint())
    assert first + [r.metrics for r in resumed.rounds()] == straight


def test_clients_not_drawn_keep_their_state_untouched():
    config = resolve_config(
        preset="stage8", num_clients=6, clients_per_round=2, rounds=1, quantity_skew=0.5
    )
    sim = Simulation(config)
    pool = sim.pool
    assert pool is not None
    before = {key: t.clone() for key, t in pool.w.items()}
    adam = {key: t.clone() for key, t in pool.adam.items()}
    result = sim.run_round()
    drawn = sorted(i["client_id"] for i in result.insights)
    idle = [c for c in range(6) if c not in drawn]
    assert len(drawn) == 2
    for key, t in pool.w.items():
        if key.startswith("shared"):
            continue  # the broadcast reaches the drawn clients only; checked below
        assert torch.equal(t[idle], before[key][idle]), key
        assert not torch.equal(t[drawn], before[key][drawn]), key
    for key, t in pool.adam.items():
        assert torch.equal(t[idle], adam[key][idle]), key
    assert torch.equal(pool.w["shared_w"][idle], before["shared_w"][idle])
    assert result.metrics["clients_sampled"] == 2


def test_the_same_clients_are_drawn_for_the_same_seed_and_others_for_another():
    def drawn(seed):
        config = resolve_config(preset="stage3", num_clients=10, fraction_fit=0.3, seed=seed)
        return [tuple(i["client_id"] for i in r.insights) for r in run_simulation(config)]

    assert drawn(0) == drawn(0)
    assert drawn(0) != drawn(1)
    assert all(len(d) == 3 for d in drawn(0))


def test_min_fit_clients_raises_a_small_fraction():
    config = resolve_config(preset="stage3", num_clients=10, fraction_fit=0.1, min_fit_clients=4)
    assert {len(r.insights) for r in run_simulation(config)} == {4}


def test_the_malicious_set_is_fixed_per_run_and_reported_in_the_logs():
    config = resolve_config(DIGITS, malicious_fraction=0.25)
    attackers = malicious_clients(config)
    assert len(attackers) == 2 and torch.equal(attackers, malicious_clients(config))
    assert not torch.equal(attackers, malicious_clients(config.model_copy(update={"seed": 5})))
    first = run_simulation(config)[0]
    assert any("attackers" in line and "sign_flip" in line for line in first.logs)


@pytest.mark.parametrize("attack", ["sign_flip", "gaussian", "label_flip"])
def test_each_attack_hurts_plain_fedavg(attack):
    honest = _digits_metrics(rounds=6)[-1]["test_accuracy"]
    scale = {"sign_flip": 4.0, "gaussian": 1.0, "label_flip": 1.0}[attack]
    attacked = _digits_metrics(
        rounds=6, malicious_fraction=0.375, attack=attack, attack_scale=scale
    )[-1]["test_accuracy"]
    assert attacked < honest - 0.02, (attack, honest, attacked)


def test_label_flip_changes_only_the_attackers_training_labels():
    config = resolve_config(DIGITS, malicious_fraction=0.25, attack="label_flip")
    clean = Simulation(resolve_config(DIGITS)).data
    flipped = Simulation(config).data
    attackers = set(malicious_clients(config).tolist())
    for c in range(DIGITS["num_clients"]):
        same = torch.equal(clean.client_y[c], flipped.client_y[c])
        assert same == (c not in attackers)
        if c in attackers:
            assert torch.equal(flipped.client_y[c], 9 - clean.client_y[c])
    assert torch.equal(clean.test_y, flipped.test_y)


def test_robust_aggregators_withstand_sign_flip_attackers_on_digits():
    """20 % sign-flip attackers (s = 5: their reversed updates outweigh the honest ones), N = 20,
    Dirichlet 0.5, 20 rounds: plain FedAvg collapses, the robust aggregators keep learning, and
    without attackers they cost little against FedAvg. (The clients' data as in the first
    table of these figures: 50 resampled, standardised rows each.)"""
    base = {
        "preset": "baseline",
        "dataset": "digits",
        "partition": "dirichlet",
        "resample_to_size": True,
        "feature_scaling": "standard",
        "dirichlet_alpha": 0.5,
        "num_clients": 20,
        "rounds": 20,
        "batch_size": 16,
        "learning_rate": 0.1,
        "attack": "sign_flip",
        "attack_scale": 5.0,
    }

    def accuracy(strategy, fraction):
        config = resolve_config(base, strategy=strategy, malicious_fraction=fraction)
        return run_simulation(config)[-1].metrics["test_accuracy"]

    table = {
        s: (accuracy(s, 0.0), accuracy(s, 0.2))
        for s in ("fedavg", "fedmedian", "krum", "fedtrimmedavg")
    }
    for strategy, (clean, attacked) in table.items():
        print(f"{strategy:14s} no attackers {clean:.3f}  20% sign-flip {attacked:.3f}")
    fedavg_clean, fedavg_attacked = table["fedavg"]
    for strategy in ("fedmedian", "krum", "fedtrimmedavg"):
        clean, attacked = table[strategy]
        assert attacked >= fedavg_attacked + 0.10, strategy
        assert clean >= fedavg_clean - 0.05, strategy


def test_the_client_terms_closed_form_gradient_is_autograd_of_the_term_and_the_papers():
    """FedProx + SCAFFOLD's term: the gradient is μ·(w − w_global) + (c − c_i), per head row;
    the batched pool's closed form equals autograd of the term the reference differentiates."""
    from scarcity.batched.linear import HeadRegularizer
    from scarcity.core.training import LocalObjective

    gen = torch.Generator().manual_seed(3)
    w, b = torch.randn(4, 2, 3, generator=gen), torch.randn(4, 2, generator=gen)
    anchor = {"weight": torch.randn(2, 3, generator=gen), "bias": torch.randn(2, generator=gen)}
    correction = {
        "weight": torch.randn(4, 2, 3, generator=gen),
        "bias": torch.randn(4, 2, generator=gen),
    }
    mu = torch.tensor([0.5, 0.0, 2.0, 0.5])
    regularizer = HeadRegularizer(
        LocalObjective(0.0, {k: v.unsqueeze(0) for k, v in anchor.items()}), mu, correction
    )
    grad_w, grad_b = regularizer.grads(w, b)
    stacked = {"weight": w.clone().requires_grad_(), "bias": b.clone().requires_grad_()}
    anchored = LocalObjective(0.0, {k: v.unsqueeze(0) for k, v in anchor.items()}, correction)
    auto_w, auto_b = torch.autograd.grad(
        anchored.term(stacked, mu), (stacked["weight"], stacked["bias"])
    )
    assert torch.allclose(grad_w, auto_w, atol=1e-6) and torch.allclose(grad_b, auto_b, atol=1e-6)
    expected_w = mu[:, None, None] * (w - anchor["weight"]) + correction["weight"]
    expected_b = mu[:, None] * (b - anchor["bias"]) + correction["bias"]
    assert torch.allclose(grad_w, expected_w, atol=1e-6)
    assert torch.allclose(grad_b, expected_b, atol=1e-6)
    rows = torch.tensor([2, 0])
    grad_w_rows, _ = regularizer.grads(w[rows], b[rows], rows)
    assert torch.allclose(grad_w_rows, expected_w[rows], atol=1e-6)
    # The reference differentiates the same term through a module's parameters.
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(w[2]), model.bias.copy_(b[2])
    one = LocalObjective(2.0, anchor, {k: v[2] for k, v in correction.items()})
    term = one.regularizer(model)
    assert term is not None
    term().backward()
    assert torch.allclose(model.weight.grad, expected_w[2], atol=1e-6)
    assert LocalObjective().regularizer(model) is None  # plain FedAvg adds nothing
