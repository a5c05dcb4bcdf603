"""The batched path (`execution="batched"`) against the per-client reference, and its math.

For the same config both executions take the same random draws, so every metric, insight,
meta-parameter, routing choice and gossip pair agrees up to float rounding.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scarcity import Simulation, resolve_config, run_simulation
from scarcity import checkpoint as checkpoint_format
from scarcity.batched.autoencoder import (
    Moments,
    ReplayMoments,
    adam_step,
    recon_loss_and_grads,
    replay_loss_and_grads,
)
from scarcity.batched.linear import fit_heads, loss_and_grad
from scarcity.batched.router import route
from scarcity.core.aggregate import (
    fedavg,
    fedavg_stacked,
    reptile_step,
    reptile_step_stacked,
)
from scarcity.core.router import ROUTER_STRATEGIES, register_strategy

CASES = {
    **{f"stage{i}": {"preset": f"stage{i}"} for i in range(1, 9)},
    "digits_dirichlet": {
        "preset": "stage2",
        "dataset": "digits",
        "partition": "dirichlet",
        "batch_size": 16,
        "learning_rate": 0.1,
        "samples_per_client": 30,
        "num_clients": 7,
    },
    "stage8_minibatch_drift_random": {
        "preset": "stage8",
        "batch_size": 16,
        "drift": 0.2,
        "router_strategy": "random",
        "num_clients": 6,
        "local_epochs": 2,
    },
    "stage8_23_clients_wine_minibatch": {
        "preset": "stage8",
        "dataset": "wine",
        "partition": "dirichlet",
        "num_clients": 23,
        "samples_per_client": 12,
        "batch_size": 5,
        "ssl_epochs": 3,
        "router_strategy": "random",
        "rounds": 4,
    },
    "stage8_round_robin_reptile_iris": {
        "preset": "stage8",
        "dataset": "iris",
        "router_strategy": "round_robin",
        "meta_reptile": True,
        "reptile_step_size": 0.5,
        "batch_size": 8,
        "memory_capacity": 7,
    },
}


def _leaves(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def assert_same_results(reference, batched, tolerance=1e-5):
    assert len(reference) == len(batched)
    for a, b in zip(reference, batched, strict=True):
        da, db = a.to_dict(), b.to_dict()
        for key in ("duration_seconds", "logs"):
            da.pop(key), db.pop(key)
        la, lb = dict(_leaves(da)), dict(_leaves(db))
        assert la.keys() == lb.keys(), set(la) ^ set(lb)
        for path, x in la.items():
            y = lb[path]
            if isinstance(x, float) or isinstance(y, float):
                assert math.isclose(x, y, rel_tol=tolerance, abs_tol=tolerance), (path, x, y)
            else:
                assert x == y, (path, x, y)
        for name, value in a.metrics.items():
            assert abs(value - b.metrics[name]) <= tolerance, name


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_matches_the_reference(case):
    reference = run_simulation(resolve_config(CASES[case], execution="reference"))
    batched = run_simulation(resolve_config(CASES[case], execution="batched"))
    assert_same_results(reference, batched)


def test_batched_is_the_default_and_reference_keeps_client_objects():
    assert resolve_config().execution == "batched"
    assert Simulation(resolve_config()).pool is not None
    reference = Simulation(resolve_config(execution="reference"))
    assert reference.pool is None and len(reference.clients) == 5


def test_a_strategy_registered_only_per_client_is_called_per_client():
    @register_strategy("by_client_mean")
    def by_client_mean(data, expert_names, router, rng):
        return int(data.mean() > 0)

    try:
        x = torch.stack([torch.full((4, 2), -1.0), torch.full((4, 2), 1.0)])
        chosen = route("by_client_mean", x, ("a", "b"), 0.5, 0, np.random.default_rng(0))
        assert chosen.tolist() == [0, 1]
    finally:
        del ROUTER_STRATEGIES["by_client_mean"]


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_checkpoint_restore_continues_exactly_in_either_execution(execution):
    config = resolve_config(preset="stage8", batch_size=20, drift=0.1, execution=execution)
    full = [r.to_dict() for r in run_simulation(config)]
    sim = Simulation(config)
    sim.run_round()
    sim.run_round()
    rest = [r.to_dict() for r in Simulation.restore(config, sim.checkpoint()).rounds()]
    for row in full + rest:
        del row["duration_seconds"]
    assert rest == full[2:]


def test_a_checkpoint_from_before_execution_existed_continues_on_the_reference():
    config = resolve_config(preset="stage6", execution="reference")
    sim = Simulation(config)
    sim.run_round()
    state = checkpoint_format.loads(sim.checkpoint())
    del state["config"]["execution"], state["pool"]  # as the engine wrote it before
    old_blob = checkpoint_format.dumps(state)
    restored = Simulation.restore(resolve_config(preset="stage6"), old_blob)
    assert restored.pool is None
    rest = [r.metrics for r in restored.rounds()]
    assert rest == [r.metrics for r in run_simulation(config)[1:]]


def test_large_pools_skip_per_client_dicts_when_nothing_needs_them():
    result = Simulation(resolve_config(preset="stage2", num_clients=300, rounds=1)).run_round()
    assert result.insights == () and len(result.logs) <= 3


# -- the batched math on tiny literal tensors ----------------------------------------------


def test_fedavg_stacked_equals_fedavg():
    stacked = {"w": torch.tensor([[1.0, 2.0], [4.0, 8.0]]), "b": torch.tensor([[0.0], [3.0]])}
    out = fedavg_stacked(stacked, torch.tensor([1.0, 2.0]))
    expected = fedavg(
        [{k: v[0] for k, v in stacked.items()}, {k: v[1] for k, v in stacked.items()}], [1, 2]
    )
    assert all(torch.allclose(out[k], expected[k]) for k in out)
    assert torch.allclose(out["w"], torch.tensor([3.0, 6.0]))


def test_reptile_step_stacked_equals_reptile_step():
    theta = {"w": torch.tensor([0.0, 0.0])}
    stacked = {"w": torch.tensor([[2.0, 0.0], [0.0, 4.0]])}
    out = reptile_step_stacked(theta, stacked, 0.5)
    assert torch.allclose(out["w"], reptile_step(theta, [{"w": w} for w in stacked["w"]], 0.5)["w"])
    assert torch.allclose(out["w"], torch.tensor([0.5, 1.0]))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_head_gradient_matches_autograd(task):
    g = torch.Generator().manual_seed(0)
    prediction = torch.randn(3, 5, 4, generator=g, requires_grad=True)
    if task == "classification":
        target = torch.randint(4, (3, 5), generator=g)
        reference = sum(F.cross_entropy(prediction[i], target[i]) for i in range(3))
    else:
        target = torch.randn(3, 5, 4, generator=g)
        reference = sum(F.mse_loss(prediction[i], target[i]) for i in range(3))
    reference.backward()
    loss, grad = loss_and_grad(task, prediction.detach(), target, 1)
    assert torch.allclose(loss.sum(), reference.detach(), atol=1e-5)
    assert torch.allclose(grad, prediction.grad, atol=1e-6)


def test_fit_heads_full_batch_is_plain_gradient_descent():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one client, two samples
    y = torch.tensor([[[1.0], [3.0]]])
    w, b = torch.zeros(1, 1, 2), torch.zeros(1, 1)
    stats = fit_heads("regression", w, b, x, y, 1, torch.tensor([0.5]), 1, 0, None)
    # loss = mean((w·x + b − y)²): grad_w = [−1, −3], grad_b = −4
    assert torch.allclose(w, torch.tensor([[[0.5, 1.5]]]))
    assert torch.allclose(b, torch.tensor([[2.0]]))
    assert stats.initial_loss.item() == pytest.approx(5.0)
    assert stats.mean_grad.item() == pytest.approx((1 + 3 + 4) / 3)


def _autoencoder(g, rows=2, d=3, latent=2):
    return {
        "enc_w": torch.randn(rows, latent, d, generator=g),
        "enc_b": torch.randn(rows, latent, generator=g),
        "dec_w": torch.randn(rows, d, latent, generator=g),
        "dec_b": torch.randn(rows, d, generator=g),
    }


def test_reconstruction_loss_from_moments_matches_autograd():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 3, generator=g)
    params = _autoencoder(g)
    loss, grads = recon_loss_and_grads(params, Moments.of(x))
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    z = x @ leaves["enc_w"].transpose(1, 2) + leaves["enc_b"].unsqueeze(1)
    r = z @ leaves["dec_w"].transpose(1, 2) + leaves["dec_b"].unsqueeze(1)
    direct = ((r - x) ** 2).mean(dim=(1, 2))
    direct.sum().backward()
    assert torch.allclose(loss.float(), direct.detach(), atol=1e-5)
    for key, leaf in leaves.items():
        assert torch.allclose(grads[key].float(), leaf.grad, atol=1e-5), key


def test_replay_loss_from_padded_buffer_moments_matches_direct():
    g = torch.Generator().manual_seed(2)
    enc_w, enc_b = torch.randn(1, 2, 3, generator=g), torch.randn(1, 2, generator=g)
    mx, mz = torch.randn(1, 4, 3, generator=g), torch.randn(1, 4, 2, generator=g)
    mx[:, :1], mz[:, :1] = 0, 0  # right-aligned buffer: the first slot is empty
    w = enc_w.clone().requires_grad_()
    b = enc_b.clone().requires_grad_()
    direct = ((mx[:, 1:] @ w.transpose(1, 2) + b - mz[:, 1:]) ** 2).sum(2).mean()
    direct.backward()
    loss, grad_w, grad_b = replay_loss_and_grads(
        enc_w, enc_b, ReplayMoments.of(mx, mz, torch.tensor([3]))
    )
    assert loss.item() == pytest.approx(direct.item(), rel=1e-6)
    assert torch.allclose(grad_w.float(), w.grad, atol=1e-5)
    assert torch.allclose(grad_b.float(), b.grad, atol=1e-5)


def test_adam_step_matches_torch_adam():
    g = torch.Generator().manual_seed(3)
    param = torch.randn(2, 3, generator=g)
    grads = [torch.randn(2, 3, generator=g) for _ in range(3)]
    ours, m, v = param.clone(), torch.zeros(2, 3), torch.zeros(2, 3)
    for step, grad in enumerate(grads, start=1):
        adam_step(ours, grad, m, v, step, torch.tensor([0.1, 0.01]))
    for row, lr in enumerate([0.1, 0.01]):
        leaf = param[row].clone().requires_grad_()
        optimizer = torch.optim.Adam([leaf], lr=lr)
        for grad in grads:
            leaf.grad = grad[row].clone()
            optimizer.step()
        assert torch.allclose(ours[row], leaf.detach(), atol=1e-6)


def test_gossip_sit_outs_rotate_in_the_batched_pool():
    sim = Simulation(resolve_config(preset="stage6", num_clients=5))
    sat_out = []
    for result in sim.rounds():
        members = {c for p in result.gossip_pairs for c in (p.client_a, p.client_b)}
        sat_out += sorted(set(range(5)) - members)
    assert sorted(sat_out) == [0, 1, 2, 3, 4]
    assert np.array_equal(sim.gossip.sit_outs, np.ones(5))
