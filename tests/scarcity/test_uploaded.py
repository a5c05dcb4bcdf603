"""The upload store (`scarcity.datasets.uploaded`): written once and atomically, read back as
written, named by its content; a config names an upload by id, and a stored run on one resumes
exactly, in a new process, whatever else the store gained meanwhile."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from scarcity import Simulation, resolve_config, run_simulation
from scarcity.core.data import describe_clients
from scarcity.datasets import Arrays, DatasetUnavailable, find_dataset, load_arrays, uploaded


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty store the engine reads (rows are cached per process by id: cleared around)."""
    path = tmp_path / "store"
    monkeypatch.setenv(uploaded.STORE_ENV, str(path))
    load_arrays.cache_clear()
    yield path
    load_arrays.cache_clear()


def rows(seed: int, n: int = 40, clients: int = 3, test: int = 8) -> tuple[Arrays, dict]:
    """An upload's arrays and description: 3 features, 2 classes, `clients` natural clients,
    the last `test` rows its own test split."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    ids = np.arange(n) % clients
    arrays = Arrays(
        x=x[:-test],
        y=y[:-test],
        client_ids=ids[:-test],
        test_x=x[-test:],
        test_y=y[-test:],
        test_client_ids=ids[-test:],
        client_names=tuple(f"site {i}" for i in range(clients)),
    )
    meta = {
        "task": "classification",
        "features": 3,
        "classes": 2,
        "natural_clients": clients,
        "rows": n,
        "test_rows": test,
        "client_names": list(arrays.client_names),
        "class_names": ["no", "yes"],
        "summary": f"seed {seed}",
    }
    return arrays, meta


def an_id(seed: int) -> str:
    return uploaded.upload_id(uploaded.content_digest({"seed": seed}, [b"rows"]))


def test_an_upload_is_read_back_as_it_was_written_and_never_rewritten(store: Path) -> None:
    arrays, meta = rows(1)
    upload_id = an_id(1)
    assert uploaded.write(store, upload_id, arrays, meta) is True
    assert sorted(p.name for p in store.iterdir()) == [f"{upload_id}.json", f"{upload_id}.npz"]
    found = find_dataset(upload_id)
    assert found is not None
    assert (found.task, found.features, found.classes) == ("classification", 3, 2)
    assert (found.natural_clients, found.own_test_split, found.source) == (3, True, "uploaded")
    back = load_arrays(upload_id)
    for name in ("x", "y", "client_ids", "test_x", "test_y", "test_client_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(arrays, name), err_msg=name)
    assert back.x.dtype == np.float64 and back.y.dtype == np.int64
    assert back.client_names == ("site 0", "site 1", "site 2")
    described = json.loads((store / f"{upload_id}.json").read_text())
    assert described == {**meta, "name": upload_id}

    stored = {p.name: p.read_bytes() for p in store.glob("ds_*")}
    other, _ = rows(2)
    assert uploaded.write(store, upload_id, other, meta) is False  # an id names its content
    assert {p.name: p.read_bytes() for p in store.glob("ds_*")} == stored
    assert not list(store.glob(".*.tmp"))  # no temporary file left behind

    uploaded.remove(store, upload_id)
    assert not list(store.glob("ds_*"))
    load_arrays.cache_clear()
    assert find_dataset(upload_id) is None
    with pytest.raises(DatasetUnavailable, match="not in the store"):
        uploaded.load(upload_id)


def test_a_regression_upload_keeps_float_targets(store: Path) -> None:
    arrays, meta = rows(3, clients=1)
    target = arrays.x[:, 1] * 2.5
    plain = Arrays(x=arrays.x, y=target)
    upload_id = an_id(3)
    uploaded.write(store, upload_id, plain, {**meta, "task": "regression", "classes": 1})
    back = load_arrays(upload_id)
    assert back.y.dtype == np.float64 and back.client_ids is None and back.test_x is None
    np.testing.assert_array_equal(back.y, target)


def test_the_id_is_the_digest_of_the_options_and_the_bytes() -> None:
    def digest(options: dict, data: bytes) -> str:
        return uploaded.content_digest(options, [data[:3], data[3:]])

    base = digest({"label": "y"}, b"a,y\n1,2\n")
    assert base == digest({"label": "y"}, b"a,y\n1,2\n")  # chunking changes nothing
    assert base != digest({"label": "a"}, b"a,y\n1,2\n")
    assert base != digest({"label": "y"}, b"a,y\n1,3\n")
    header = json.dumps({"label": "y", "version": uploaded.INGEST_VERSION}, sort_keys=True)
    assert base == hashlib.sha256(header.encode() + b"\n" + b"a,y\n1,2\n").hexdigest()
    assert uploaded.upload_id(base) == "ds_" + base[:24]
    assert uploaded.is_upload_id(uploaded.upload_id(base))
    assert not uploaded.is_upload_id("ds_" + base[:23]) and not uploaded.is_upload_id("digits")
    with pytest.raises(ValueError, match="not an upload id"):
        uploaded.write(Path("unused"), "../escape", Arrays(np.zeros((1, 1)), np.zeros(1)), {})


def test_a_config_on_an_upload_takes_its_shape_its_clients_and_its_test_rows(store: Path) -> None:
    arrays, meta = rows(4)
    upload_id = an_id(4)
    uploaded.write(store, upload_id, arrays, meta)
    config = resolve_config({"preset": "baseline", "dataset": upload_id, "rounds": 2})
    assert (config.input_dim, config.output_dim) == (3, 2)
    assert (config.partition, config.num_clients) == ("natural", 3)
    clients = describe_clients(config)
    assert [c.train_samples for c in clients] == [
        int((arrays.client_ids == i).sum()) for i in range(3)
    ]
    results = run_simulation(config)
    assert [r.round for r in results] == [1, 2]
    # the upload's own 8 test rows: accuracy is a multiple of 1/8
    accuracy = results[-1].metrics["test_accuracy"]
    assert abs(accuracy * 8 - round(accuracy * 8)) < 1e-6


def _comparable(results: list) -> list:
    return [{k: v for k, v in r.to_dict().items() if k != "duration_seconds"} for r in results]


def test_a_run_on_an_upload_resumes_exactly_in_a_new_process_after_other_uploads(
    store: Path, resume_in_new_process
) -> None:
    arrays, meta = rows(5, n=60)
    upload_id = an_id(5)
    uploaded.write(store, upload_id, arrays, meta)
    config = resolve_config(
        {"preset": "stage5", "federated_averaging": True, "dataset": upload_id, "rounds": 4}
    )
    full = _comparable(run_simulation(config))
    sim = Simulation(config)
    sim.run_round()
    sim.run_round()
    for seed in (6, 7):  # the store grows meanwhile
        other, other_meta = rows(seed, n=30 + seed)
        uploaded.write(store, an_id(seed), other, other_meta)
    rest = resume_in_new_process(sim, config)
    assert [r["round"] for r in rest] == [3, 4]
    assert rest == json.loads(json.dumps(full[2:]))
