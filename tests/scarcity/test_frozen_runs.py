"""Every preset and every strategy, in both executions, runs and resumes as the engine of before
the client side was reshaped into components did.

`fixtures/before_components.json.gz` was written by `fixtures/freeze_runs.py` on the engine of
before that reshaping: per case the resolved config, a checkpoint after round 2 and every round's
metrics, meta-parameters and insights. A stored run of then must give the same numbers from the
start and from its checkpoint: bit for bit on the machine that wrote the file, floats to 1e-5 on
another CPU (`test_stored_runs.assert_same`). The strategies added since have a file of their own
(`fixtures/personalised_strategies.json.gz`: local, fedavg_ft, ditto, ifca, written when they
were added), held to the same.

A CPU whose masked name, torch and numpy match the writer's can still round a case's float32
arithmetic otherwise (seen: a Zen 4 EPYC, family 25 model 17, whose ensemble loss on 13 rows
differs in the last bits of float32). `fixtures/cpu_variants.json` holds, per such CPU
(`test_stored_runs.cpu_id`), what it computes for the cases it rounds otherwise, recorded by
`freeze_runs --cpu-variant` only when within the tolerance of the stored run: there that case
must equal its variant bit for bit and the stored run to the tolerance.
"""

import base64
import gzip
import json
from pathlib import Path

import pytest

from scarcity import Simulation, resolve_config
from tests.scarcity.test_stored_runs import assert_same, cpu_id, this_machine

FIXTURES = ("before_components.json.gz", "personalised_strategies.json.gz")
VARIANTS_FILE = Path(__file__).parent / "fixtures" / "cpu_variants.json"


def _load(name: str) -> dict:
    return json.loads(gzip.decompress((Path(__file__).parent / "fixtures" / name).read_bytes()))


FROZEN = {name: _load(name) for name in FIXTURES}
#: Every case of every file, and whether the file was written on this machine.
CASES = {
    case: (frozen, data) for frozen in FROZEN.values() for case, data in frozen["cases"].items()
}


#: The cases this CPU rounds otherwise than the writer's, as it computes them.
VARIANTS: dict = json.loads(VARIANTS_FILE.read_text()).get(cpu_id(), {}).get("cases", {})


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
    variant = VARIANTS.get(name) if same_machine else None
    results = list(Simulation(resolve_config(case["config"])).rounds())
    _assert_frozen(_observed(results), case, variant, same_machine)
    sim = Simulation.restore(case["config"], base64.b64decode(case["checkpoint_after_round_2"]))
    assert sim.rounds_completed == 2
    _assert_frozen(_observed(list(sim.rounds())), case, variant, same_machine, start=2)


def _assert_frozen(observed, case, variant, same_machine: bool, start: int = 0) -> None:
    if variant is None:
        assert_same(observed, _stored(case, start), same_machine=same_machine)
        return
    assert_same(observed, _stored(variant, start), same_machine=True)
    assert_same(observed, _stored(case, start), same_machine=False)


def test_a_cpu_variant_is_held_to_the_stored_run():
    """Every recorded variant, of every CPU, is its case's stored run within the tolerance
    (so a variant cannot hide a changed number)."""
    for cpu in json.loads(VARIANTS_FILE.read_text()).values():
        for name, variant in cpu["cases"].items():
            assert_same(_stored(variant), _stored(CASES[name][1]), same_machine=False)
