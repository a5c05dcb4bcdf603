"""Docs that match the code: every setting is in the README, and CI runs the README's command."""

from __future__ import annotations

from pathlib import Path

from models.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"`SCARCITY_{n.upper()}`" not in readme]
    assert missing == []


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_every_strategy_and_preset_is_documented_in_the_readme() -> None:
    from scarcity.config import PRESETS
    from scarcity.strategies import STRATEGIES

    readme = (ROOT / "README.md").read_text()
    missing = [n for n in [*STRATEGIES, *PRESETS] if f"`{n}`" not in readme]
    assert missing == []


def test_docs_the_code_points_at_are_in_the_repo() -> None:
    import re

    named = set()
    for path in [*ROOT.glob("*/**/*.py"), ROOT / "README.md"]:
        if ".venv" in path.parts:
            continue
        named |= set(re.findall(r"\b(docs/[\w.-]+\.md)\b", path.read_text()))
        assert not re.search(r"\b(DESIGN|RELIABILITY|STYLE)\.md\b", path.read_text()), path
    assert named and all((ROOT / name).is_file() for name in named), named


def test_every_metric_name_of_the_filter_language_is_in_the_readme() -> None:
    from scarcity.results import METRIC_NAMES

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Finding runs") :]
    missing = [name for name in METRIC_NAMES if f"`{name}`" not in section]
    assert missing == []
    for operator in ("`=`", "`!=`", "`<=`", "`like`", "`in (v, …)`", "`not in (v, …)`"):
        assert operator in section, operator
