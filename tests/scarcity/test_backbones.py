"""Models beyond Linear: one architecture for both executions, autograd in the batched path."""

from __future__ import annotations

import pydantic
import pytest
import torch
import torch.nn.functional as F

from scarcity import Simulation, resolve_config, run_simulation
from scarcity.backbones import BACKBONES, make_backbone
from scarcity.batched.linear import HeadRegularizer, fit_heads
from scarcity.batched.models import AutogradStep, StackedModel, fit_models
from scarcity.batched.padding import pad_clients, padded_randperm
from scarcity.core.training import LocalObjective, make_linear
from tests.scarcity.test_batched import assert_same_results

#: Small digits workloads (30 resampled rows a client, quantity skew: padded clients).
SMALL_DIGITS = {
    "dataset": "digits",
    "partition": "dirichlet",
    "resample_to_size": True,
    "samples_per_client": 30,
    "quantity_skew": 1.0,
    "num_clients": 4,
    "rounds": 2,
    "learning_rate": 0.1,
}

CASES = {
    "mlp_stage8_digits_minibatch": {
        **SMALL_DIGITS,
        "preset": "stage8",
        "model": "mlp",
        "hidden_sizes": [16, 8],
        "batch_size": 8,
        "ssl_epochs": 2,
    },
    "cnn_stage8_digits_minibatch": {
        **SMALL_DIGITS,
        "preset": "stage8",
        "model": "cnn",
        "cnn_channels": 4,
        "batch_size": 8,
        "ssl_epochs": 2,
    },
    "mlp_fedprox_sampled_digits": {
        **SMALL_DIGITS,
        "preset": "stage2",
        "model": "mlp",
        "strategy": "fedprox",
        "proximal_mu": 0.5,
        "clients_per_round": 3,
        "batch_size": 8,
        "local_epochs": 2,
    },
    "cnn_scaffold_baseline": {
        **SMALL_DIGITS,
        "preset": "baseline",
        "model": "cnn",
        "strategy": "scaffold",
        "batch_size": 16,
    },
    "simple_cnn_stage7_mnist_minibatch": {
        **SMALL_DIGITS,
        "preset": "stage7",
        "dataset": "mnist",
        "test_fraction": 0.03,  # 300 rows: every expert of every client scores them
        "model": "simple_cnn",
        "learning_rate": 0.05,
        "batch_size": 8,
    },
    "simple_cnn_fedprox_fashion_mnist_sampled": {
        "preset": "baseline",
        "dataset": "fashion_mnist",
        "partition": "dirichlet",
        "num_clients": 100,
        "clients_per_round": 3,
        "strategy": "fedprox",
        "proximal_mu": 0.1,
        "rounds": 2,
    },
    "mlp_stage4_synthetic_full_batch": {
        "preset": "stage4",
        "model": "mlp",
        "hidden_sizes": [12],
        "router_strategy": "random",
        "rounds": 3,
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_matches_the_reference_for_every_model(case):
    config = resolve_config(CASES[case])
    reference = run_simulation(config.model_copy(update={"execution": "reference"}))
    batched = run_simulation(config)
    assert_same_results(reference, batched)


def test_the_linear_backbone_draws_the_seeds_linear_layer():
    """Stored runs keep their initial weights: the same draws as `make_linear`."""
    config = resolve_config(dataset="wine")
    made = make_backbone(config).make(torch.Generator().manual_seed(3))
    seed = make_linear(config.input_dim, config.output_dim, torch.Generator().manual_seed(3))
    assert made.state_dict().keys() == seed.state_dict().keys() == {"weight", "bias"}
    for key, value in seed.state_dict().items():
        assert torch.equal(made.state_dict()[key], value)


@pytest.mark.parametrize(
    "fields",
    [
        {"dataset": "wine"},
        {"dataset": "digits", "model": "mlp", "hidden_sizes": [16, 8]},
        {"dataset": "digits", "model": "cnn", "cnn_channels": 4},
    ],
)
def test_draw_gives_makes_parameters_and_leaves_the_generator_as_make_does(fields):
    """A drift-restarted head is drawn without a module: the values `make` loads, bit for bit,
    and the generator left where `make` leaves it."""
    backbone = make_backbone(resolve_config(fields))
    g_make, g_draw = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    made = dict(backbone.make(g_make).named_parameters())
    drawn = backbone.draw(g_draw)
    assert drawn.keys() == made.keys()
    assert all(torch.equal(drawn[name], value) for name, value in made.items())
    assert torch.equal(g_make.get_state(), g_draw.get_state())


def test_every_parameter_gets_its_layers_fan_in():
    mlp = make_backbone(resolve_config(model="mlp", hidden_sizes=[7, 5]))
    assert [(s.name, s.shape, s.fan_in) for s in mlp.specs()] == [
        ("0.weight", (7, 10), 10),
        ("0.bias", (7,), 10),
        ("2.weight", (5, 7), 7),
        ("2.bias", (5,), 7),
        ("4.weight", (1, 5), 5),
        ("4.bias", (1,), 5),
    ]
    cnn = make_backbone(resolve_config(dataset="digits", model="cnn", cnn_channels=3))
    assert [s.fan_in for s in cnn.specs()] == [9, 9, 48, 48]  # 1·3·3, then 3·4·4
    assert set(BACKBONES) == {"linear", "mlp", "cnn", "simple_cnn", "char_rnn"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "cnn"}, "model: cnn takes 8×8 images"),
        ({"model": "transformer"}, "model: unknown 'transformer'"),
        ({"model": "mlp", "hidden_sizes": []}, "hidden_sizes"),
    ],
)
def test_a_model_that_cannot_be_built_is_refused_naming_the_field(fields, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        resolve_config(fields)


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("batch_size", [0, 3])
def test_autograd_over_stacked_models_equals_the_closed_form_for_linear(task, batch_size):
    """The generic path on Linear reproduces the hand-derived gradients, strategy terms,
    padding and statistics included, on literal random arrays."""
    g = torch.Generator().manual_seed(7)
    sizes = torch.tensor([5, 2, 7])
    group, d, out, epochs = 2, 4, 3, 2
    x = pad_clients([torch.randn(int(n), d, generator=g) for n in sizes])
    if task == "classification":
        y = pad_clients([torch.randint(out, (int(n),), generator=g) for n in sizes])
    else:
        y = pad_clients([torch.randn(int(n), out, generator=g) for n in sizes])
    rows = len(sizes) * group
    w, b = torch.randn(rows, out, d, generator=g), torch.randn(rows, out, generator=g)
    perms = None
    if batch_size:
        perms = torch.stack(
            [
                torch.stack([padded_randperm(int(n), 7, g) for _ in range(epochs)])
                for n in sizes.repeat_interleave(group)
            ]
        )
    mu = torch.tensor([0.3, 0.0] * len(sizes))
    anchor = {"weight": torch.randn(1, out, d, generator=g), "bias": torch.randn(1, out)}
    correction = {"weight": torch.randn(rows, out, d, generator=g), "bias": torch.randn(rows, out)}
    regularizer = HeadRegularizer(LocalObjective(0.3, anchor), mu, correction)
    lr = torch.full((rows,), 0.1)
    common = dict(sizes=sizes, regularizer=regularizer, details=True)
    w2, b2 = w.clone(), b.clone()
    closed = fit_heads(task, w, b, x, y, group, lr, epochs, batch_size, perms, **common)
    model = StackedModel(make_backbone(resolve_config(input_dim=d, output_dim=out)))
    params = {"weight": w2, "bias": b2}
    auto = fit_models(task, model, params, x, y, group, lr, epochs, batch_size, perms, **common)
    torch.testing.assert_close(w2, w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b2, b, rtol=1e-5, atol=1e-6)
    for key in ("initial_loss", "train_loss", "final_loss", "uncertainty", "mean_grad"):
        torch.testing.assert_close(
            getattr(auto, key).double(), getattr(closed, key).double(), rtol=1e-5, atol=1e-6
        )
    assert not torch.equal(w, w2.new_zeros(w2.shape))  # it trained


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "simple_cnn", "input_dim": 784, "output_dim": 10},
        {"dataset": "digits", "model": "cnn", "cnn_channels": 4},
        {"dataset": "digits", "model": "mlp", "hidden_sizes": [16]},
    ],
)
def test_a_stacked_row_computes_the_same_whichever_rows_share_its_call(fields):
    """What lets a step run only the rows with samples left, in chunks: a row's outputs and
    gradients are bit for bit those of the call over all rows, in any call of two or more."""
    backbone = make_backbone(resolve_config(fields))
    model = StackedModel(backbone)
    g = torch.Generator().manual_seed(2)
    rows, m = 9, 5
    params = {s.name: torch.randn(rows, *s.shape, generator=g) * 0.3 for s in backbone.specs()}
    x = torch.rand(rows, m, backbone.input_dim, generator=g)
    y = torch.randint(backbone.output_dim, (rows, m), generator=g)

    def run(picked):
        leaves = {k: v[picked].detach().requires_grad_() for k, v in params.items()}
        out = model.rows(leaves, x[picked])
        loss = F.cross_entropy(out.flatten(0, 1), y[picked].flatten(), reduction="sum")
        return out.detach(), torch.autograd.grad(loss, list(leaves.values()))

    everyone, grads = run(torch.arange(rows))
    for picked in (torch.tensor([0, 1]), torch.tensor([2, 5, 8]), torch.arange(3, 9)):
        out, part = run(picked)
        assert torch.equal(out, everyone[picked])
        assert all(torch.equal(a, b[picked]) for a, b in zip(part, grads, strict=True))


@pytest.mark.parametrize("model", ["simple_cnn", "cnn", "mlp"])
def test_the_stacked_step_gives_the_same_numbers_in_chunks_of_two(model, monkeypatch):
    """Clients of unequal size (the largest alone in its last batches), a strategy's term, full
    and mini-batches: the smallest chunks change no bit of the weights or statistics."""
    from scarcity.batched import models

    fields = (
        {"input_dim": 784, "output_dim": 10} if model == "simple_cnn" else {"dataset": "digits"}
    )
    backbone = make_backbone(resolve_config(fields, model=model))
    g = torch.Generator().manual_seed(4)
    sizes, group, epochs = torch.tensor([5, 2, 7, 12, 3]), 2, 2
    d, out, rows = backbone.input_dim, backbone.output_dim, len(sizes) * group
    x = pad_clients([torch.rand(int(n), d, generator=g) for n in sizes])
    y = pad_clients([torch.randint(out, (int(n),), generator=g) for n in sizes])
    params = {s.name: torch.randn(rows, *s.shape, generator=g) * 0.3 for s in backbone.specs()}
    anchor = {s.name: torch.randn(1, *s.shape, generator=g) for s in backbone.specs()}
    mu = torch.tensor([0.3, 0.0] * len(sizes))
    regularizer = HeadRegularizer(LocalObjective(0.3, anchor), mu, None)
    perms = torch.stack(
        [
            torch.stack([padded_randperm(int(n), 12, g) for _ in range(epochs)])
            for n in sizes.repeat_interleave(group)
        ]
    )
    lr = torch.full((rows,), 0.05)
    results = []
    for chunk_values in (models.CHUNK_VALUES, 1):  # as configured, then two rows a call
        monkeypatch.setattr(models, "CHUNK_VALUES", chunk_values)
        stacked = StackedModel(backbone)
        for batch_size, batches in ((3, perms), (0, None)):
            trained = {k: v.clone() for k, v in params.items()}
            stats = fit_models(
                "classification", stacked, trained, x, y, group, lr, epochs, batch_size,
                batches, sizes=sizes, regularizer=regularizer,
            )  # fmt: skip
            results.append((trained, stats))
    for (a, sa), (b, sb) in zip(results[:2], results[2:], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
        for key in ("initial_loss", "train_loss", "final_loss", "uncertainty", "mean_grad"):
            assert torch.equal(getattr(sa, key), getattr(sb, key)), key
    assert all(not torch.equal(results[0][0][k], params[k]) for k in params)  # it trained


def test_the_simple_cnn_is_niid_benchs_44426_parameters():
    config = resolve_config(model="simple_cnn", input_dim=784, output_dim=10)
    backbone = make_backbone(config)
    # conv 1→6 5×5, conv 6→16 5×5, linear 256→120→84→10, each with its bias
    by_layer = [6 * (25 + 1), 16 * (6 * 25 + 1), 120 * (256 + 1), 84 * (120 + 1), 10 * (84 + 1)]
    assert by_layer == [156, 2416, 30840, 10164, 850] and sum(by_layer) == 44_426
    assert sum(spec.numel for spec in backbone.specs()) == 44_426
    assert [s.fan_in for s in backbone.specs()] == [25, 25, 150, 150, 256, 256, 120, 120, 84, 84]
    model = backbone.make(torch.Generator().manual_seed(0))
    x = torch.rand(3, 784, generator=torch.Generator().manual_seed(1))
    w = [p.detach() for p in model.parameters()]
    # NIID-Bench's forward, written out with the functional ops.
    h = F.max_pool2d(F.relu(F.conv2d(x.view(3, 1, 28, 28), w[0], w[1])), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, w[2], w[3])), 2).view(3, 256)
    h = F.relu(F.linear(F.relu(F.linear(h, w[4], w[5])), w[6], w[7]))
    torch.testing.assert_close(model(x), F.linear(h, w[8], w[9]))


def test_the_simple_cnn_refuses_other_image_sizes_naming_model():
    with pytest.raises(pydantic.ValidationError, match="model: simple_cnn takes 28×28 images"):
        resolve_config(dataset="digits", model="simple_cnn")


def test_the_pool_stacks_every_parameter_of_the_backbone():
    sim = Simulation(resolve_config({**CASES["mlp_stage8_digits_minibatch"], "rounds": 1}))
    pool = sim.pool
    assert pool is not None
    assert pool.w["head.0.weight"].shape == (4, 4, 16, 64)  # [N, K, out, in]
    assert pool.w["shared.4.bias"].shape == (4, 10)
    assert "head_w" not in pool.w
    weights = pool.expert_weights(0, 1)
    assert {"model.0.weight", "model.4.bias", "encoder.weight"} <= weights.keys()


def test_an_mlp_beats_linear_on_digits():
    """FedAvg on IID digits, 10 clients, 20 rounds, E=3, batch 16, lr 0.1 (at E=1 the MLP has
    not caught up yet: 0.889 against 0.897)."""
    accuracy = {}
    for model in ("linear", "mlp"):
        config = resolve_config(
            preset="baseline",
            dataset="digits",
            num_clients=10,
            rounds=20,
            batch_size=16,
            learning_rate=0.1,
            local_epochs=3,
            model=model,
        )
        accuracy[model] = run_simulation(config)[-1].metrics["test_accuracy"]
    print(f"digits IID test accuracy: {accuracy}")
    assert accuracy["mlp"] > accuracy["linear"] + 0.01


def test_an_mlp_ensemble_scores_the_same_in_memory_bounded_chunks(monkeypatch):
    from scarcity.batched import ensemble

    backbone = make_backbone(resolve_config(dataset="wine", model="mlp", hidden_sizes=[5]))
    model = StackedModel(backbone)
    g = torch.Generator().manual_seed(1)
    heads = {s.name: torch.randn(6, 2, *s.shape, generator=g) for s in backbone.specs()}
    x, y = torch.randn(9, 13, generator=g), torch.randint(3, (9,), generator=g)
    whole = ensemble.held_out_scores("classification", heads, None, (x, y), None, model)
    monkeypatch.setattr(ensemble, "ROWS_PER_CHUNK", 20)  # one client (2 heads × 9 rows) a chunk
    chunked = ensemble.held_out_scores("classification", heads, None, (x, y), None, model)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b)
    routed = ensemble.held_out_scores(
        "classification", heads, torch.tensor([0, 1] * 3), (x, y), None, model
    )
    assert not torch.equal(routed[0], whole[0])  # the routed head alone, not the mean


def test_a_full_batch_fit_takes_its_initial_loss_from_its_first_step(monkeypatch):
    """The first full-batch step computes the models' loss before training: the fit reports
    it as the initial loss, bit for bit the loss of a pass of its own, without that pass."""
    backbone = make_backbone(resolve_config({"dataset": "digits"}, model="mlp"))
    g = torch.Generator().manual_seed(5)
    sizes, group, epochs = torch.tensor([5, 2, 7]), 2, 2
    x = pad_clients([torch.rand(int(n), backbone.input_dim, generator=g) for n in sizes])
    y = pad_clients([torch.randint(backbone.output_dim, (int(n),), generator=g) for n in sizes])
    rows = len(sizes) * group
    params = {s.name: torch.randn(rows, *s.shape, generator=g) * 0.3 for s in backbone.specs()}
    stacked = StackedModel(backbone)
    before = AutogradStep("classification", stacked, params, x, y, group, sizes).initial_loss()
    calls = []
    on_clients = stacked.on_clients
    monkeypatch.setattr(stacked, "on_clients", lambda *a: calls.append(1) or on_clients(*a))
    lr = torch.full((rows,), 0.05)
    trained = {k: v.clone() for k, v in params.items()}
    stats = fit_models(
        "classification", stacked, trained, x, y, group, lr, epochs, 0, None, sizes=sizes
    )
    assert torch.equal(stats.initial_loss, before)
    assert len(calls) == epochs + 1  # a pass a step, and the final statistics' pass
    assert not torch.equal(stats.final_loss, before)  # it trained
