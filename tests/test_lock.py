"""Reproducible installs: the lock files pin every package with hashes, agree with
pyproject.toml and with each other, and are what make, CI and the Dockerfile install from."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pins(name: str) -> dict[str, str]:
    """{package: version} of a lock file; each entry must carry at least one sha256 hash."""
    text = (ROOT / name).read_text()
    entries = re.findall(
        r"^([A-Za-z0-9._-]+)==(\S+)((?: \\\n\s+--hash=sha256:[0-9a-f]{64})+)", text, re.M
    )
    found = {canonicalize_name(n): v for n, v, _ in entries}
    listed = re.findall(r"^([A-Za-z0-9._-]+)==", text, re.M)
    assert len(found) == len(listed), f"{name}: an entry without hashes"
    return found


def declared(extra: str | None = None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return [Requirement(d) for d in deps]


def test_the_runtime_lock_pins_every_dependency_within_pyproject_and_torch_is_pinned_apart() -> (
    None
):
    runtime = pins("requirements.lock")
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        if (
            name == "torch"
        ):  # its CPU build is not on PyPI: pinned by version (Makefile, Dockerfile)
            assert str(requirement.specifier) == "==2.13.0"
            assert name not in runtime
            continue
        assert name in runtime, name
        assert requirement.specifier.contains(runtime[name], prereleases=True), (
            name,
            runtime[name],
        )
    assert not {"pytest", "schemathesis", "playwright", "mypy", "ruff"} & set(runtime)


def test_the_test_lock_adds_the_test_tools_at_the_same_versions() -> None:
    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")
    assert {n: test.get(n) for n in runtime} == runtime
    for requirement in declared("test"):
        name = canonicalize_name(requirement.name)
        assert name in test and requirement.specifier.contains(test[name], prereleases=True)


def test_this_environment_was_installed_from_the_test_lock() -> None:
    test = pins("requirements-test.lock")
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {n: (v, installed.get(n)) for n, v in test.items() if installed.get(n) != v}
    assert wrong == {}
    assert installed["torch"].split("+")[0] == "2.13.0"


def test_make_and_the_dockerfile_install_from_the_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r $(1)" in makefile
    assert re.search(r"^run: install\b", makefile, re.M)  # serving: the runtime lock only
    assert re.search(r"^test: install-test\b", makefile, re.M)
    assert "$(call install_from,requirements.lock)" in makefile
    assert "$(call install_from,requirements-test.lock)" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements.lock" in dockerfile


def test_torch_is_installed_with_its_dependencies() -> None:
    """PyPI's torch is the CUDA build, which does not import without the NVIDIA packages it
    requires: make and the Dockerfile must let pip install torch's dependencies."""
    makefile = (ROOT / "Makefile").read_text()
    torch_lines = [line for line in makefile.splitlines() if "'$(TORCH)'" in line]
    assert torch_lines, "the Makefile no longer installs torch"
    for line in torch_lines:
        assert "pip install" in line and "--no-deps" not in line, line
    dockerfile = (ROOT / "Dockerfile").read_text()
    torch_lines = [line for line in dockerfile.splitlines() if "'torch==" in line]
    assert torch_lines and all("--no-deps" not in line for line in torch_lines)


def test_the_locks_satisfy_the_cpu_builds_own_requirements() -> None:
    """Installing torch here adds nothing: every package the installed (CPU) build requires is
    pinned by the runtime lock at a version it accepts."""
    runtime = pins("requirements.lock")
    required = [Requirement(r) for r in metadata.requires("torch") or []]
    for requirement in required:
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an optional extra of torch's
        name = canonicalize_name(requirement.name)
        assert name in runtime, name
        assert requirement.specifier.contains(runtime[name], prereleases=True), name
