"""Simulations stored before client strategies existed run and resume exactly as they did.

`fixtures/before_strategies.json` was written by the engine of before the round loop took
pluggable strategies (FedAvg and Reptile picked by `meta_reptile`): for each case its config as
stored then, a checkpoint after round 2 and every round's metrics, meta-parameters and
insights, plus the machine that wrote it. Stored runs are users' data: the same config must give
the same numbers, and a checkpoint of then must continue to the same final round.

On a machine like the one that wrote the fixture (CPU, torch's kernels, library versions) the
numbers must be identical bit for bit. Another CPU rounds float32 sums in another order (seen:
up to 1e-6 apart after five rounds), so there every float must agree to 1e-5 and everything
else (counts, chosen experts, client ids) exactly.
"""

import base64
import hashlib
import json
import math
import platform
from pathlib import Path

import numpy
import pytest
import torch

from scarcity import Simulation, resolve_config
from scarcity.config import stored_config

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "before_strategies.json").read_text())
GOLDEN = FIXTURE["cases"]


def _first_cpu() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (none where there is no such file)."""
    fields: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if not line.strip():
                break  # the first processor's block is enough
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def this_machine() -> dict[str, str]:
    return {
        "cpu": _first_cpu().get("model name", platform.processor()),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }


def cpu_id() -> str:
    """This CPU in more detail than `this_machine()`'s model name, which a hypervisor may mask
    ("AMD EPYC"): its family, model and stepping and a digest of its feature flags. Two CPUs
    of the same masked name can round a float32 product otherwise (`test_frozen_runs`)."""
    fields = _first_cpu()
    flags = hashlib.sha256(fields.get("flags", "").encode()).hexdigest()[:12]
    family, model, stepping = (fields.get(k, "?") for k in ("cpu family", "model", "stepping"))
    return f"{platform.machine()} family {family} model {model} stepping {stepping}, flags {flags}"


SAME_MACHINE = this_machine() == FIXTURE["machine"]


def assert_same(observed, stored, path="", *, same_machine: bool | None = None) -> None:
    """Equal bit for bit on the fixture's machine; floats to 1e-5 on another one."""
    if same_machine is None:
        same_machine = SAME_MACHINE
    if same_machine:
        assert observed == stored
        return
    if isinstance(stored, dict):
        assert isinstance(observed, dict) and observed.keys() == stored.keys(), path
        for key in stored:
            assert_same(observed[key], stored[key], f"{path}.{key}", same_machine=False)
    elif isinstance(stored, list | tuple):
        assert type(observed) is type(stored) and len(observed) == len(stored), path
        for i, (o, s) in enumerate(zip(observed, stored, strict=True)):
            assert_same(o, s, f"{path}[{i}]", same_machine=False)
    elif isinstance(stored, float) and not isinstance(observed, bool):
        assert math.isclose(observed, stored, rel_tol=1e-5, abs_tol=1e-6), (path, observed, stored)
    else:
        assert observed == stored, path


def _observed(results):
    return (
        [dict(r.metrics) for r in results],
        [dict(r.meta_params) for r in results],
        [[i.to_dict() for i in r.insights] for r in results],
    )


def test_the_tolerance_check_tells_a_changed_number_apart():
    stored = GOLDEN["stage2_digits_batched"]["metrics"]
    changed = json.loads(json.dumps(stored))
    changed[-1]["loss"] *= 1.001
    with pytest.raises(AssertionError):
        assert_same(changed, stored)


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_a_stored_config_gives_the_same_numbers(case):
    stored = GOLDEN[case]
    # The row's config as stored then (no strategy fields), as the migration leaves it: what
    # the worker reads back.
    results = list(Simulation(resolve_config(stored_config(stored["config"]))).rounds())
    assert_same(_observed(results), (stored["metrics"], stored["meta_params"], stored["insights"]))


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_a_stored_checkpoint_resumes_to_the_same_numbers(case):
    stored = GOLDEN[case]
    blob = base64.b64decode(stored["checkpoint_after_round_2"])
    sim = Simulation.restore(stored_config(stored["config"]), blob)
    assert sim.rounds_completed == 2
    results = list(sim.rounds())
    assert_same(
        _observed(results),
        (stored["metrics"][2:], stored["meta_params"][2:], stored["insights"][2:]),
    )
