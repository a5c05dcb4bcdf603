"""The layers of pyproject.toml's [tool.importlinter] hold, and break when a forbidden import
is added: each case copies the packages, adds one import, and `lint-imports` must fail there,
naming the contract it broke."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "worker", "models", "scarcity")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_real_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("scarcity/plan.py", "import app.errors", "Service layers"),
        ("models/__init__.py", "import worker.tasks", "Service layers"),
        ("scarcity/core/data.py", "import models", "Service layers"),
        (
            "scarcity/strategies/fedavg.py",
            "from scarcity.config import SimulationConfig",
            "import nothing of the engine",
        ),
        (
            "scarcity/backbones/mlp.py",
            "import scarcity.batched.models",
            "import nothing of the engine",
        ),
        ("scarcity/partitions/iid.py", "import scarcity.strategies", "independent of each other"),
        ("scarcity/config.py", "import scarcity.core.data", "reads no data set"),
        ("models/lease.py", "import scarcity.simulation", "round results and nothing else"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "static"),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    source = tmp_path / module
    # A function-level import counts as much as one at the top (it runs when called).
    source.write_text(source.read_text() + f"\n\ndef _forbidden() -> None:\n    {line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    words = " ".join(result.stdout.split())  # the report wraps long contract names
    assert "Broken contracts" in words, result.stdout
    assert contract in words.split("Broken contracts", 1)[1], result.stdout
