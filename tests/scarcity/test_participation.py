"""Who took part in each round and who attacked: `RoundResult.participants` and the clients'
`malicious` flags, in both executions and in `scarcity run --json`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scarcity import resolve_config, run_simulation
from scarcity.attacks import Adversary, malicious_clients
from scarcity.config import SimulationConfig
from scarcity.core.data import describe_clients
from scarcity.sampling import draw_participants
from scarcity.simulation import Simulation

SAMPLED = {
    "preset": "baseline",
    "num_clients": 9,
    "clients_per_round": 4,
    "rounds": 4,
    "seed": 11,
}


def _draws_and_results(config: SimulationConfig) -> tuple[list[list[int]], list[list[int] | None]]:
    """Before each round, what `draw_participants` gives with a copy of the run's generator as
    it stands; and what the round then reports."""
    sim = Simulation(config)
    drawn, reported = [], []
    while sim.rounds_completed < config.rounds:
        probe = np.random.default_rng()
        probe.bit_generator.state = sim.rng.bit_generator.state
        drawn.append(draw_participants(config, probe).tolist())
        result = sim.run_round()
        reported.append(None if result.participants is None else list(result.participants))
        assert result.to_dict()["participants"] == reported[-1]
        assert result.metrics["clients_sampled"] == len(drawn[-1])
    return drawn, reported


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_a_sampled_rounds_participants_are_the_engines_draw(execution: str) -> None:
    config = resolve_config(SAMPLED, execution=execution)
    drawn, reported = _draws_and_results(config)
    assert reported == drawn
    assert all(len(ids) == 4 and ids == sorted(set(ids)) for ids in drawn)
    assert len({tuple(ids) for ids in drawn}) > 1  # the draw changes from round to round


def test_both_executions_report_the_same_participants() -> None:
    batched = run_simulation(resolve_config(SAMPLED, execution="batched"))
    reference = run_simulation(resolve_config(SAMPLED, execution="reference"))
    assert [r.participants for r in batched] == [r.participants for r in reference]
    assert all(r.participants is not None for r in batched)


def test_a_round_every_client_takes_part_in_names_no_participants() -> None:
    unsampled = {key: value for key, value in SAMPLED.items() if key != "clients_per_round"}
    for request in (unsampled, {**SAMPLED, "clients_per_round": SAMPLED["num_clients"]}):
        config = resolve_config(request)
        results = run_simulation(config)
        assert [r.participants for r in results] == [None] * config.rounds
        assert all(r.to_dict()["participants"] is None for r in results)
        assert all("clients_sampled" not in r.metrics for r in results)


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_the_clients_malicious_flags_are_the_adversarys_set(execution: str) -> None:
    config = resolve_config(
        SAMPLED, malicious_fraction=0.3, attack="sign_flip", execution=execution
    )
    sim = Simulation(config)
    attackers = set(sim.adversary.attackers.tolist())
    assert attackers == set(Adversary(config).attackers.tolist())
    assert len(attackers) == round(0.3 * config.num_clients) == 3
    for described in (describe_clients(config), describe_clients(config, sim.client_data)):
        assert {c.client_id for c in described if c.malicious} == attackers
        assert all(c.to_dict()["malicious"] is (c.client_id in attackers) for c in described)
    # each round's attackers_sampled counts the attackers among its participants
    for result in sim.rounds():
        assert result.participants is not None
        assert result.metrics["attackers_sampled"] == len(attackers & set(result.participants))


def test_label_flip_attackers_are_flagged_and_described_with_their_true_labels() -> None:
    config = resolve_config(
        {**SAMPLED, "dataset": "digits"}, malicious_fraction=0.25, attack="label_flip"
    )
    sim = Simulation(config)
    described = describe_clients(config, sim.client_data)
    assert {c.client_id for c in described if c.malicious} == set(
        malicious_clients(config).tolist()
    )
    assert [c.label_counts for c in described] == [c.label_counts for c in describe_clients(config)]


def test_a_run_without_attackers_flags_no_client() -> None:
    config = resolve_config(SAMPLED)
    assert [c.to_dict()["malicious"] for c in describe_clients(config)] == [False] * 9


def test_run_json_writes_the_participants_and_the_malicious_flags(run_python, tmp_path) -> None:
    proc = run_python(
        "-m", "scarcity", "run", "--preset", "baseline", "--clients", "8", "--rounds", "2",
        "--seed", "5", "--set", "clients_per_round=3", "--set", "malicious_fraction=0.25",
        "--set", "attack=gaussian", "--json", "out.json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads((tmp_path / "out.json").read_text())
    config = resolve_config(payload["config"])
    expected = run_simulation(config)
    assert [row["participants"] for row in payload["rounds"]] == [
        list(r.participants or ()) for r in expected
    ]
    attackers = malicious_clients(config).tolist()
    assert len(attackers) == 2
    assert [c["client_id"] for c in payload["clients"] if c["malicious"]] == attackers
