"""`python -m bench ablation`: every run it makes is a valid request, and its marks say what
the README's table reads them as (beyond the seeds' spread, or every seed identical)."""

from __future__ import annotations

import pytest

from bench import ablation


@pytest.mark.parametrize("scenario", ablation.SCENARIOS, ids=lambda s: s.name.split()[0])
def test_every_run_of_every_scenario_is_a_valid_request(scenario: ablation.Scenario) -> None:
    runs = ablation.runs(scenario)
    names = [run.name for run in runs]
    assert len(set(names)) == len(names)
    assert {run.reference for run in runs} - {None} <= set(names)
    configs = {
        run.name: ablation.config(scenario, run, rounds, 0)
        for run in runs
        for rounds in (ablation.QUICK_ROUNDS, ablation.ROUNDS)
    }
    full = configs[ablation.SFHFE]
    assert full.expert_ensemble and not full.label_free
    for name, off in scenario.switches.items():
        switched = configs[name]
        # each switch undoes what SF-HFE switched on, and nothing else of it
        assert any(getattr(switched, k) != getattr(full, k) for k in off)
        assert switched.model_dump(exclude=set(off)) == full.model_dump(exclude=set(off))


def _run(values: list[float], label: str = "unseen_k1") -> ablation.Run:
    return ablation.Run("r", {}, None, [{label: v} for v in values])


def test_a_difference_is_marked_only_beyond_the_seeds_spread() -> None:
    reference = _run([0.50, 0.52, 0.54])  # mean 0.52, std 0.02
    assert ablation.cell(_run([0.60, 0.62, 0.64]), reference, "unseen_k1").endswith("Δ+0.100*")
    assert ablation.cell(_run([0.50, 0.56, 0.62]), reference, "unseen_k1").endswith("Δ+0.040")
    assert ablation.cell(_run([0.50, 0.52, 0.54]), reference, "unseen_k1").endswith(" =")
    # one seed has no spread: no mark
    assert ablation.cell(_run([0.9]), _run([0.1]), "unseen_k1") == "0.900 Δ+0.800"
