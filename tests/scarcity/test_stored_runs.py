"""Simulations stored before client strategies existed run and resume exactly as they did.

`fixtures/before_strategies.json` was written by the engine of before the round loop took
pluggable strategies (FedAvg and Reptile picked by `meta_reptile`): for each case its resolved
config, a checkpoint after round 2 and every round's metrics, meta-parameters and a digest of
its insights. Stored runs are users' data: the same config must give bit-identical numbers, and
a checkpoint of then must continue to the same final round.
"""

import base64
import hashlib
import json
from pathlib import Path

import pytest

from scarcity import Simulation, resolve_config

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "before_strategies.json").read_text())


def _digest(insights) -> str:
    return hashlib.sha256(
        json.dumps([i.to_dict() for i in insights], sort_keys=True).encode()
    ).hexdigest()


def _observed(results):
    return (
        [dict(r.metrics) for r in results],
        [dict(r.meta_params) for r in results],
        [_digest(r.insights) for r in results],
    )


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_a_stored_config_gives_the_same_numbers_bit_for_bit(case):
    stored = GOLDEN[case]
    # The row's config as stored then (no strategy fields): what the worker reads back.
    results = list(Simulation(resolve_config(stored["config"])).rounds())
    assert _observed(results) == (
        stored["metrics"],
        stored["meta_params"],
        stored["insights_sha256"],
    )


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_a_stored_checkpoint_resumes_to_the_same_numbers(case):
    stored = GOLDEN[case]
    blob = base64.b64decode(stored["checkpoint_after_round_2"])
    sim = Simulation.restore(stored["config"], blob)
    assert sim.rounds_completed == 2
    results = list(sim.rounds())
    assert _observed(results) == (
        stored["metrics"][2:],
        stored["meta_params"][2:],
        stored["insights_sha256"][2:],
    )


def test_a_stored_meta_reptile_run_is_the_reptile_strategy():
    config = resolve_config(GOLDEN["stage5_reptile_reference"]["config"])
    assert config.meta_reptile and config.strategy == "reptile"
