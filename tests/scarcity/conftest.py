"""Fixtures of the engine tests: the repo root on sys.path and helpers to run presets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from scarcity import RoundResult, Simulation, resolve_config, run_simulation  # noqa: E402

# The keys every client insight carries (seed, stage 3).
INSIGHT_KEYS = {
    "client_id",
    "mean_grad",
    "uncertainty",
    "loss_improvement",
    "selected_expert",
    "experts",
}


@pytest.fixture(autouse=True, scope="package")
def single_torch_thread():
    """Run as the CLI and the workers do (1 torch thread), then restore the session's count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def run_preset() -> Callable[..., list[RoundResult]]:
    """Run a preset with the seed's defaults (5 clients, 5 rounds) plus overrides."""

    def run(preset: str, **overrides: Any) -> list[RoundResult]:
        return run_simulation(resolve_config(preset=preset, **overrides))

    return run


@pytest.fixture
def run_python(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run Python code or arguments in a fresh interpreter, cwd = a temp dir, repo importable."""

    def run(
        *args: str, cwd: Path | None = None, pythonpath: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["OMP_NUM_THREADS"] = "1"  # the thread count of this test session (see above)
        if pythonpath:
            env["PYTHONPATH"] = str(REPO_ROOT)
        return subprocess.run(
            [sys.executable, *args],
            cwd=cwd or tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


RESUME_SCRIPT = (
    "import json, pathlib\n"
    "from scarcity import Simulation, SimulationConfig\n"
    "config = SimulationConfig.model_validate_json(pathlib.Path('config.json').read_text())\n"
    "sim = Simulation.restore(config, pathlib.Path('ckpt.bin').read_bytes())\n"
    "rows = [r.to_dict() for r in sim.rounds()]\n"
    "pathlib.Path('rest.json').write_text(json.dumps(rows))\n"
)


@pytest.fixture
def resume_in_new_process(
    tmp_path: Path, run_python: Callable[..., subprocess.CompletedProcess[str]]
) -> Callable[..., list[dict[str, Any]]]:
    """Checkpoint a simulation, restore it in a fresh interpreter and return the rounds that
    one runs to the end (`to_dict()`, wall-clock durations dropped)."""

    def resume(sim: Any, config: Any) -> list[dict[str, Any]]:
        (tmp_path / "ckpt.bin").write_bytes(sim.checkpoint())
        (tmp_path / "config.json").write_text(config.model_dump_json())
        proc = run_python("-c", RESUME_SCRIPT)
        assert proc.returncode == 0, proc.stderr
        rest = json.loads((tmp_path / "rest.json").read_text())
        for row in rest:
            del row["duration_seconds"]
        return list(rest)

    return resume


def full_and_resumed(config: Any, after: int) -> tuple[list[dict], list[dict]]:
    """Every round of `config` run uninterrupted, and the rounds of a run restored from its
    checkpoint after round `after` (each as `to_dict()`, its duration dropped)."""
    full = [r.to_dict() for r in Simulation(config).rounds()]
    sim = Simulation(config)
    for _ in range(after):
        sim.run_round()
    rest = [r.to_dict() for r in Simulation.restore(config, sim.checkpoint()).rounds()]
    for row in full + rest:
        del row["duration_seconds"]
    return full, rest
