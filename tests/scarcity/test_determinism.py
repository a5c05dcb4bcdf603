"""Same config and seed → identical results; a checkpoint continues exactly, in a new process."""

import json
import time

import numpy as np
import torch

from scarcity import Simulation, resolve_config, run_simulation

CONFIG = {"preset": "stage8", "drift": 0.2, "router_strategy": "random", "batch_size": 25}


def _comparable(results):
    return [{k: v for k, v in r.to_dict().items() if k != "duration_seconds"} for r in results]


def test_same_config_and_seed_give_identical_results():
    config = resolve_config(CONFIG)
    assert _comparable(run_simulation(config)) == _comparable(run_simulation(config))


def test_another_seed_gives_other_results():
    a = run_simulation(resolve_config(CONFIG))
    b = run_simulation(resolve_config(CONFIG, seed=1))
    assert a[0].metrics != b[0].metrics


def test_interleaved_runs_do_not_disturb_each_other_or_global_rng():
    config = resolve_config(CONFIG)
    alone = _comparable(run_simulation(config))
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    a, b = Simulation(config), Simulation(resolve_config(CONFIG, seed=3))
    interleaved = []
    for _ in range(config.rounds):
        interleaved.append(a.run_round())
        b.run_round()
    assert _comparable(interleaved) == alone
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()


def test_checkpoint_restore_in_same_process_continues_exactly():
    config = resolve_config(CONFIG)
    full = _comparable(run_simulation(config))
    for k in (1, 3):
        sim = Simulation(config)
        for _ in range(k):
            sim.run_round()
        restored = Simulation.restore(config, sim.checkpoint())
        assert restored.rounds_completed == k
        assert _comparable(list(restored.rounds())) == full[k:]


def test_checkpoint_restore_in_a_new_process_continues_exactly(resume_in_new_process):
    config = resolve_config(CONFIG)
    full = _comparable(run_simulation(config))
    sim = Simulation(config)
    sim.run_round()
    sim.run_round()
    rest = resume_in_new_process(sim, config)
    assert [r["round"] for r in rest] == [3, 4, 5]
    assert rest == json.loads(json.dumps(full[2:]))


def test_run_simulation_resumes_from_a_checkpoint():
    config = resolve_config(CONFIG)
    sim = Simulation(config)
    sim.run_round()
    resumed = run_simulation(config, checkpoint=sim.checkpoint())
    assert [r.round for r in resumed] == [2, 3, 4, 5]
    assert _comparable(resumed) == _comparable(run_simulation(config))[1:]


def test_restore_refuses_a_checkpoint_of_another_config():
    sim = Simulation(resolve_config(CONFIG))
    sim.run_round()
    try:
        Simulation.restore(resolve_config(CONFIG, seed=9), sim.checkpoint())
    except ValueError as error:
        assert "config" in str(error)
    else:
        raise AssertionError("restore accepted a foreign checkpoint")


def test_on_round_callback_sees_each_round_and_can_stop():
    seen = []
    results = run_simulation(
        resolve_config(preset="stage2"), on_round=lambda r: seen.append(r.round) or r.round < 2
    )
    assert seen == [1, 2] and len(results) == 2


def test_round_durations_are_wall_clock_and_outside_metrics():
    # Speed itself is measured in bench/, not asserted here.
    config = resolve_config(preset="stage8")
    start = time.perf_counter()
    results = run_simulation(config)
    elapsed = time.perf_counter() - start
    sim = Simulation(config)
    sizes = [len(sim.checkpoint())] + [len(sim.run_round() and sim.checkpoint()) for _ in range(5)]
    print(f"stage8 5x5: {elapsed:.3f}s; checkpoint bytes after rounds 0..5: {sizes}")
    assert all(r.duration_seconds > 0 for r in results)
    assert sum(r.duration_seconds for r in results) <= elapsed
    assert all("duration_seconds" not in r.metrics for r in results)
