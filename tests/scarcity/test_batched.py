"""The batched path (`execution="batched"`) against the per-client reference, and its math.

For the same config both executions take the same random draws, so every metric, insight,
meta-parameter, routing choice and gossip pair agrees up to float rounding, with equal client
data sizes and with unequal ones (`quantity_skew`: the batched path pads and masks).
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scarcity import Simulation, resolve_config, run_simulation
from scarcity import checkpoint as checkpoint_format
from scarcity.accounting import BYTE_METRICS
from scarcity.batched.autoencoder import (
    Moments,
    ReplayMoments,
    adam_step,
    recon_loss_and_grads,
    replay_loss_and_grads,
)
from scarcity.batched.linear import fit_heads, loss_and_grad
from scarcity.batched.memory import ReplayBuffers
from scarcity.batched.padding import masked_var_mean, pad_clients, padded_randperm
from scarcity.batched.router import route
from scarcity.core.aggregate import (
    fedavg,
    fedavg_stacked,
    reptile_step,
    reptile_step_stacked,
)
from scarcity.core.router import ROUTER_STRATEGIES, register_strategy
from tests.scarcity.conftest import full_and_resumed

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
        "federated_averaging": True,  # the shared model beside the experts, stepped by Reptile
        "label_free": False,
        "meta_reptile": True,
        "reptile_step_size": 0.5,
        "batch_size": 8,
        "memory_capacity": 7,
    },
}


#: A real data set as simulations stored before natural sizes had it.
RESAMPLED = {"resample_to_size": True, "feature_scaling": "standard"}


# Unequal client sizes on top of every case above, plus corners of the padding: clients smaller
# than a mini-batch (full batch while others shuffle) or than the memory expert's store, runs
# of empty batches, drift of padded data, Reptile. A real data set's natural shares are
# unequal already; skewed, it is resampled to lognormal sizes (the data of earlier runs).
def _skewed(case):
    resampled = (
        {"resample_to_size": True} if case.get("dataset", "synthetic") != "synthetic" else {}
    )
    return {**case, **resampled, "quantity_skew": 1.0}


SKEWED_CASES = {
    **{f"{name}_skewed": _skewed(case) for name, case in CASES.items()},
    "stage8_heavy_skew_minibatch": {
        "preset": "stage8",
        "quantity_skew": 2.0,
        "batch_size": 10,
        "num_clients": 8,
        "local_epochs": 2,
        "ssl_epochs": 4,
        "memory_capacity": 30,
        "drift": 0.1,
    },
    "stage6_skewed_minibatch_epochs": {
        "preset": "stage6",
        "quantity_skew": 1.0,
        "batch_size": 12,
        "local_epochs": 3,
        "num_clients": 6,
    },
    "stage8_digits_dirichlet_skewed_minibatch": {
        "preset": "stage8",
        "dataset": "digits",
        "partition": "dirichlet",
        **RESAMPLED,
        "quantity_skew": 1.0,
        "batch_size": 16,
        "num_clients": 6,
        "rounds": 3,
    },
    "stage8_reptile_skewed_tiny": {
        "preset": "stage8",
        "quantity_skew": 1.0,
        "samples_per_client": 2,
        "batch_size": 3,
        "federated_averaging": True,
        "label_free": False,
        "meta_reptile": True,
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
        for name, value in a.metrics.items():  # float32 figures: ~7 significant digits
            close = math.isclose(value, b.metrics[name], rel_tol=tolerance, abs_tol=tolerance)
            assert close, (name, value, b.metrics[name])


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_matches_the_reference(case):
    reference = run_simulation(resolve_config(CASES[case], execution="reference"))
    batched = run_simulation(resolve_config(CASES[case], execution="batched"))
    assert_same_results(reference, batched)


@pytest.mark.parametrize("case", sorted(SKEWED_CASES))
def test_batched_matches_the_reference_with_unequal_client_sizes(case):
    config = resolve_config(SKEWED_CASES[case])
    pool = Simulation(config).pool
    assert pool is not None and pool.ragged_sizes is not None  # really padded
    reference = run_simulation(config.model_copy(update={"execution": "reference"}))
    batched = run_simulation(config)
    assert_same_results(reference, batched)


def test_equal_client_sizes_take_the_unpadded_path():
    pool = Simulation(resolve_config(preset="stage8")).pool
    assert pool is not None and pool.ragged_sizes is None and pool.real_rows is None
    assert pool.sample_counts().tolist() == [50.0] * 5


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


@pytest.mark.parametrize("quantity_skew", [0.0, 1.0])
@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_checkpoint_restore_continues_exactly_in_either_execution(execution, quantity_skew):
    config = resolve_config(
        preset="stage8",
        batch_size=20,
        drift=0.1,
        execution=execution,
        quantity_skew=quantity_skew,
    )
    full, rest = full_and_resumed(config, 2)
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


def test_a_checkpoint_from_before_quantity_skew_existed_continues():
    config = resolve_config(preset="stage8", rounds=3)
    sim = Simulation(config)
    sim.run_round()
    state = checkpoint_format.loads(sim.checkpoint())
    del state["config"]["quantity_skew"]  # as the engine wrote it before
    restored = Simulation.restore(config, checkpoint_format.dumps(state))
    assert [r.metrics for r in restored.rounds()] == [r.metrics for r in run_simulation(config)[1:]]
    state["config"]["seed"] = 1  # another config is still refused
    with pytest.raises(ValueError, match="another config"):
        Simulation.restore(config, checkpoint_format.dumps(state))


def test_a_pool_checkpoint_with_one_adam_step_count_for_all_clients_still_loads():
    config = resolve_config(preset="stage8", rounds=3)
    sim = Simulation(config)
    sim.run_round()
    state = checkpoint_format.loads(sim.checkpoint())
    steps = state["pool"]["ssl_steps"]
    assert steps.tolist() == [10] * 5
    state["pool"]["ssl_steps"] = 10  # as the engine wrote it before per-client counts
    rest = [r.metrics for r in Simulation.restore(config, checkpoint_format.dumps(state)).rounds()]
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


# -- padding and masks ----------------------------------------------------------------------


def test_padded_randperm_is_the_reference_draw_then_the_padding():
    ours = padded_randperm(3, 6, torch.Generator().manual_seed(4))
    theirs = torch.randperm(3, generator=torch.Generator().manual_seed(4))
    assert ours[:3].tolist() == theirs.tolist() and ours[3:].tolist() == [3, 4, 5]
    assert padded_randperm(4, 4, torch.Generator()).shape == (4,)


def test_stacked_round_draws_equal_one_padded_randperm_per_row_in_order():
    """A round's draws, stacked in one copy, are the per-row `padded_randperm`s taken from the
    same generator in the same order, with identity rows for full-batch clients and zeros
    for a client that stores nothing."""
    from scarcity.batched.draws import draw_epochs, draw_round

    sizes, g = [5, 2, 7, 1], torch.Generator().manual_seed(9)
    draws = draw_round(
        g, sizes=sizes, batch_size=3, trained=[[0], [1], [0], [1]], num_experts=2, memory=1,
        shared_epochs=1, epochs=2, ssl_epochs=0, structure_discovery=False,
    )  # fmt: skip
    g = torch.Generator().manual_seed(9)
    shared, store, sup = [], [], []
    for size, expert in zip(sizes, [0, 1, 0, 1], strict=True):
        shuffled = 3 < size

        def draw(size: int = size, shuffled: bool = shuffled) -> torch.Tensor:
            return padded_randperm(size, 7, g) if shuffled else torch.arange(7)

        shared.append(draw())
        store.append(padded_randperm(size, 7, g) if expert == 1 else torch.zeros(7))
        sup += [draw(), draw()]
    assert draws.shared is not None and draws.supervised is not None
    assert draws.supervised_store is not None and draws.shared.dtype == torch.int32
    assert draws.shared.view(4, 7).tolist() == torch.stack(shared).tolist()
    assert draws.supervised_store.tolist() == torch.stack(store).long().tolist()
    assert draws.supervised.view(8, 7).tolist() == torch.stack(sup).tolist()
    assert draw_epochs(torch.Generator(), [1, 2], 2, 3) is None  # no client shuffles


def test_full_batch_round_draws_are_the_memory_stores_in_order():
    """With no client shuffling, a round draws the memory expert's stores alone: client by
    client its supervised store (when it trains the memory expert, over its training rows)
    then its self-supervised one, zeros for a client that stores nothing."""
    from scarcity.batched.draws import draw_round

    sizes, train_sizes, trained = [5, 2, 4], [6, 2, 7], [[1], [0], [1]]
    draws = draw_round(
        torch.Generator().manual_seed(3), sizes=sizes, batch_size=0, trained=trained,
        num_experts=2, memory=1, shared_epochs=1, epochs=2, ssl_epochs=1,
        structure_discovery=True, train_sizes=train_sizes,
    )  # fmt: skip
    g = torch.Generator().manual_seed(3)
    store, ssl_store = [], []
    for size, train_size, (expert,) in zip(sizes, train_sizes, trained, strict=True):
        store.append(padded_randperm(train_size, 7, g) if expert == 1 else torch.zeros(7))
        ssl_store.append(padded_randperm(size, 5, g))
    assert draws.shared is None and draws.supervised is None and draws.ssl is None
    assert draws.supervised_store is not None and draws.ssl_store is not None
    assert draws.supervised_store.dtype == draws.ssl_store.dtype == torch.int32
    assert draws.supervised_store.tolist() == torch.stack(store).long().tolist()
    assert draws.ssl_store.tolist() == torch.stack(ssl_store).tolist()


def test_pad_clients_zero_fills_and_stacks_equal_sizes_unchanged():
    a, b = torch.ones(3, 2), torch.full((1, 2), 2.0)
    padded = pad_clients([a, b])
    assert padded.shape == (2, 3, 2) and padded[1, 1:].abs().sum() == 0
    assert torch.equal(pad_clients([a, a]), torch.stack([a, a]))


def test_masked_var_mean_ignores_padding():
    rows = [torch.tensor([[1.0, 2.0], [3.0, 5.0]]), torch.tensor([[4.0, -1.0]])]
    var, mean = masked_var_mean(pad_clients(rows), torch.tensor([2, 1]))
    for i, x in enumerate(rows):
        expected_var, expected_mean = torch.var_mean(x, correction=0)
        assert var[i].item() == pytest.approx(expected_var.item())
        assert mean[i].item() == pytest.approx(expected_mean.item())


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_weighted_loss_and_grad_equal_the_unpadded_rows(task):
    g = torch.Generator().manual_seed(5)
    prediction = torch.randn(2, 4, 3, generator=g)
    if task == "classification":
        target = torch.randint(3, (2, 4), generator=g)
    else:
        target = torch.randn(2, 4, 3, generator=g)
    sizes = torch.tensor([4, 2])
    weight = (torch.arange(4) < sizes[:, None]) / sizes[:, None]
    loss, grad = loss_and_grad(task, prediction, target, 1, weight)
    for i, n in enumerate(sizes.tolist()):
        alone, alone_grad = loss_and_grad(task, prediction[i : i + 1, :n], target[i : i + 1, :n], 1)
        assert loss[i].item() == pytest.approx(alone.item(), rel=1e-6)
        assert torch.allclose(grad[i, :n], alone_grad[0], atol=1e-7)
        assert grad[i, n:].abs().sum() == 0


def test_reconstruction_loss_from_padded_moments_matches_the_unpadded_rows():
    g = torch.Generator().manual_seed(6)
    rows = [torch.randn(5, 3, generator=g), torch.randn(2, 3, generator=g)]
    params = _autoencoder(g)
    loss, grads = recon_loss_and_grads(params, Moments.of(pad_clients(rows), torch.tensor([5, 2])))
    for i, x in enumerate(rows):
        one = {key: value[i : i + 1] for key, value in params.items()}
        alone, alone_grads = recon_loss_and_grads(one, Moments.of(x.unsqueeze(0)))
        assert loss[i].item() == pytest.approx(alone.item(), rel=1e-9)
        for key, grad in alone_grads.items():
            assert torch.allclose(grads[key][i], grad[0], atol=1e-9), key


def test_replay_buffers_append_a_different_count_per_client():
    buffers = ReplayBuffers(2, 3, 1, 1)
    first = torch.tensor([[[1.0], [2.0]], [[5.0], [0.0]]])  # client 1 has one new row
    buffers.append(torch.tensor([0, 1]), first, first, torch.tensor([2, 1]))
    second = torch.tensor([[[3.0], [4.0]], [[6.0], [7.0]]])
    buffers.append(torch.tensor([0, 1]), second, second, torch.tensor([2, 2]))
    # per client: torch.cat([buffer, new rows])[-capacity:], empty slots zero on the left
    assert buffers.x[:, :, 0].tolist() == [[2.0, 3.0, 4.0], [5.0, 6.0, 7.0]]
    assert buffers.size.tolist() == [3, 3]
    buffers = ReplayBuffers(1, 4, 1, 1)
    buffers.append(torch.tensor([0]), first[1:], first[1:], torch.tensor([1]))
    assert buffers.x[0, :, 0].tolist() == [0.0, 0.0, 0.0, 5.0] and buffers.size.item() == 1


def test_adam_step_with_per_row_step_counts_matches_torch_adam_with_skipped_steps():
    g = torch.Generator().manual_seed(7)
    param = torch.randn(2, 3, generator=g)
    grads = [torch.randn(2, 3, generator=g) for _ in range(3)]
    stepping = [torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0, 1])]  # row 1 sits out
    ours, m, v = param.clone(), torch.zeros(2, 3), torch.zeros(2, 3)
    steps = torch.zeros(2, dtype=torch.long)
    for grad, rows in zip(grads, stepping, strict=True):
        steps[rows] += 1
        p_rows, m_rows, v_rows = ours[rows], m[rows], v[rows]
        adam_step(p_rows, grad[rows], m_rows, v_rows, steps[rows], torch.full((len(rows),), 0.1))
        ours[rows], m[rows], v[rows] = p_rows, m_rows, v_rows
    for row in range(2):
        leaf = param[row].clone().requires_grad_()
        optimizer = torch.optim.Adam([leaf], lr=0.1)
        for grad, rows in zip(grads, stepping, strict=True):
            if row in rows.tolist():
                leaf.grad = grad[row].clone()
                optimizer.step()
        assert torch.allclose(ours[row], leaf.detach(), atol=1e-6)


def test_the_first_replay_step_is_exact_where_features_are_zero_in_a_batch():
    """Digits scaled to [0, 1] have pixels that are exactly 0 in a whole mini-batch: their
    weights' true gradient is 0, and Adam turns any rounding noise there into a full step. The
    rows the memory expert has just stored have a residual of exactly 0 before the encoder
    moves (as the reference computes it); engine_version 1 left float64 noise there and the
    executions drifted apart (3e-4 in replay_error after one round)."""
    config = resolve_config(
        preset="stage8",
        dataset="digits",
        partition="dirichlet",
        dirichlet_alpha=0.3,
        num_clients=8,
        rounds=2,
        batch_size=16,
        learning_rate=0.1,
        ssl_epochs=1,
        federated_averaging=True,  # the run this was found on
        label_free=False,
    )
    assert config.feature_scaling == "minmax" and config.engine_version >= 2
    reference = run_simulation(config.model_copy(update={"execution": "reference"}))
    assert_same_results(reference, run_simulation(config))
    earlier = run_simulation(config.model_copy(update={"engine_version": 1}))
    # engine_version 1 reports no bytes (8 does): the rest is compared
    uncounted = [
        dataclasses.replace(
            r, metrics={k: v for k, v in r.metrics.items() if k not in BYTE_METRICS}
        )
        for r in reference
    ]
    with pytest.raises(AssertionError, match="replay_error"):
        assert_same_results(uncounted, earlier)


class _Pull:
    """A proximal-like term pulling each head to zero (the `HeadRegularizer.grads` contract)."""

    def grads(self, w, b, rows=None):
        return 0.3 * w, 0.3 * b


@pytest.mark.parametrize("regularizer", [None, _Pull()], ids=["plain", "regularized"])
def test_heads_that_ran_out_of_rows_stay_put_whether_masked_or_picked_out(monkeypatch, regularizer):
    """Clients of 2, 5 and 16 rows, batch 4: from batch 1 some heads sit out. Computing all of
    them with the finished ones weighted 0 (`MASKED_ROWS` large) or picking the live ones out
    (`MASKED_ROWS` 0) must give the same weights and statistics bit for bit, and a head of a
    client out of rows must not move (nor be pulled by the strategy's term)."""
    import scarcity.batched.linear as linear

    g = torch.Generator().manual_seed(3)
    sizes = torch.tensor([2, 5, 16])
    x = pad_clients([torch.randn(int(n), 4, generator=g) for n in sizes])
    y = pad_clients([torch.randint(0, 3, (int(n),), generator=g) for n in sizes])
    perms = torch.stack([padded_randperm(int(n), 16, g) for n in sizes for _ in range(2)])
    w0, b0 = torch.randn(6, 3, 4, generator=g), torch.randn(6, 3, generator=g)
    runs = {}
    for masked_rows in (0, 10**6):
        monkeypatch.setattr(linear, "MASKED_ROWS", masked_rows)
        w, b = w0.clone(), b0.clone()
        stats = fit_heads(
            "classification", w, b, x, y, 2, torch.full((6,), 0.2), 1, 4, perms.unsqueeze(1),
            sizes=sizes, regularizer=regularizer,
        )  # fmt: skip
        runs[masked_rows] = (w, b, stats)
    (w_pick, b_pick, s_pick), (w_mask, b_mask, s_mask) = runs.values()
    assert torch.equal(w_pick, w_mask) and torch.equal(b_pick, b_mask)
    for key in ("initial_loss", "train_loss", "final_loss", "uncertainty", "mean_grad"):
        assert torch.equal(getattr(s_pick, key), getattr(s_mask, key)), key
    # The 2-row client's heads stepped once (batch 0) only: one more step, from the same start,
    # on its two rows alone reproduces them.
    w_one, b_one = w0[:2].clone(), b0[:2].clone()
    fit_heads(
        "classification", w_one, b_one, x[:1, :2], y[:1, :2], 2, torch.full((2,), 0.2), 1, 4,
        perms[:2, None, :2], regularizer=regularizer,
    )  # fmt: skip
    assert torch.allclose(w_mask[:2], w_one, atol=1e-6) and torch.allclose(b_mask[:2], b_one)
