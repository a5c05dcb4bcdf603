"""Every preset and every strategy, in both executions, runs and resumes as the engine of before
the client side was reshaped into components did.

`fixtures/before_components.json.gz` was written by `fixtures/freeze_runs.py` on the engine of
before that reshaping: per case the resolved config, a checkpoint after round 2 and every round's
metrics, meta-parameters and insights. A stored run of then must give the same numbers from the
start and from its checkpoint: bit for bit on the machine that wrote the file, floats to 1e-5 on
another CPU (`test_stored_runs.assert_same`). The strategies added since have a file of their own
(`fixtures/personalised_strategies.json.gz`: local, fedavg_ft, ditto, ifca, written when they
were added), held to the same.
"""

import base64
import gzip
import json
from pathlib import Path

import pytest

from scarcity import Simulation, resolve_config
from tests.scarcity.test_stored_runs import assert_same, this_machine

FIXTURES = ("before_components.json.gz", "personalised_strategies.json.gz")


def _load(name: str) -> dict:
    return json.loads(gzip.decompress((Path(__file__).parent / "fixtures" / name).read_bytes()))


FROZEN = {name: _load(name) for name in FIXTURES}
#: Every case of every file, and whether the file was written on this machine.
CASES = {
    case: (frozen, data) for frozen in FROZEN.values() for case, data in frozen["cases"].items()
}


def _observed(results):
    return (
        [dict(r.metrics) for r in results],
        [dict(r.meta_params) for r in results],
        [[i.to_dict() for i in r.insights] for r in results],
    )


def _stored(case, start=0):
    return (case["metrics"][start:], case["meta_params"][start:], case["insights"][start:])


def test_every_preset_and_strategy_is_frozen_in_both_executions():
    from scarcity.config import PRESETS, strategy_names

    names = [f"preset_{p}" for p in PRESETS] + [f"strategy_{s}" for s in strategy_names()]
    for name in names:
        for execution in ("batched", "reference"):
            assert f"{name}_{execution}" in CASES


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_frozen_run_gives_the_same_numbers_and_resumes_to_them(name):
    frozen, case = CASES[name]
    same_machine = this_machine() == frozen["machine"]
    results = list(Simulation(resolve_config(case["config"])).rounds())
    assert_same(_observed(results), _stored(case), same_machine=same_machine)
    sim = Simulation.restore(case["config"], base64.b64decode(case["checkpoint_after_round_2"]))
    assert sim.rounds_completed == 2
    assert_same(_observed(list(sim.rounds())), _stored(case, 2), same_machine=same_machine)
