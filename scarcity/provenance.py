"""Where a run's numbers came from: the versions, the thread count and the machine.

Equal configs give equal numbers on equal software, thread count and CPU (float32 sums run in
another order elsewhere), so every run records them: the service per attempt, `scarcity run
--json` beside its rounds.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy
import torch

#: Set by a deployment that ships no .git (e.g. the Docker image) to name its commit.
COMMIT_VARIABLE = "SCARCITY_GIT_COMMIT"


@cache
def git_commit() -> str | None:
    """The checkout's commit (`SCARCITY_GIT_COMMIT`, else `git rev-parse`), None when unknown."""
    if os.environ.get(COMMIT_VARIABLE):
        return os.environ[COMMIT_VARIABLE]
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def environment() -> dict[str, object]:
    """The software and machine this process computes on (JSON-able)."""
    return {
        "scarcity": metadata.version("scarcity"),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "host": socket.gethostname(),
    }
