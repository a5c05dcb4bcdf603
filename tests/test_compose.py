"""docker-compose.yml, Dockerfile and .dockerignore agree with the settings and the CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

from models.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = ("migrate", "api", "worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def settings_from(env: dict[str, str]) -> Settings:
    """The Settings a container with this environment reads (ignoring any local .env)."""
    fields = {k.removeprefix("SCARCITY_").lower(): v for k, v in env.items()}
    return Settings(_env_file=None, **fields)


def test_compose_has_the_five_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "redis", "migrate", "api", "worker"}


def test_every_scarcity_variable_is_a_settings_field(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("SCARCITY_"):
                field = variable.removeprefix("SCARCITY_").lower()
                assert field in Settings.model_fields, f"{name}: {variable} is read by nothing"


def test_app_services_reach_postgres_and_redis_by_service_name(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    for name in APP_SERVICES:
        settings = settings_from(services[name]["environment"])
        db = make_url(settings.database_url)
        assert db.drivername == "postgresql+psycopg", name
        assert (db.host, db.port) == ("postgres", 5432), name
        assert (db.username, db.password, db.database) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        ), name
        assert settings.broker_url == "redis://redis:6379/0", name
        # PostgreSQL is never migrated at start-up: that is the `migrate` service's job.
        assert not settings.should_auto_migrate, name


def test_commands_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["scarcity", "migrate"]
    assert services["migrate"]["restart"] == "no"
    # Several API processes need the broker (the embedded worker lives in one process); the
    # compose environment sets it (test above).
    api_command = ["scarcity", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
    assert services["api"]["command"] == api_command
    assert services["worker"]["command"] == ["scarcity", "worker"]

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("migrate") == {"postgres": "service_healthy"}
    for name in ("api", "worker"):
        assert conditions(name) == {
            "migrate": "service_completed_successfully",
            "redis": "service_healthy",
        }


def test_the_cli_accepts_every_compose_command(compose: dict[str, Any]) -> None:
    from app.cli import main

    for name in APP_SERVICES:
        command = compose["services"][name]["command"]
        assert command[0] == "scarcity"
        with pytest.raises(SystemExit) as exit_info:  # --help: parse the arguments, run nothing
            main([*command[1:], "--help"])
        assert exit_info.value.code == 0, command


def test_healthchecks_volume_and_a_scalable_worker(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "python" in api_check and "/healthz" in api_check and "curl" not in api_check
    assert services["api"]["ports"] == ["8000:8000"]

    volume = services["postgres"]["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]

    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker


def test_api_and_workers_share_one_upload_store(compose: dict[str, Any]) -> None:
    """The API writes uploads where every worker reads them: one named volume, mounted at the
    store directory the settings name, in both services."""
    services = compose["services"]
    mounts = set()
    for name in ("api", "worker"):
        store = settings_from(services[name]["environment"]).datasets_dir
        (mount,) = [v for v in services[name]["volumes"] if v.endswith(f":{store}")]
        mounts.add(mount)
    (mount,) = mounts
    assert mount.split(":")[0] in compose["volumes"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"mkdir -p {mount.split(':')[1]}" in dockerfile  # owned by the image's user


def test_dockerfile_builds_a_cpu_only_non_root_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim\n" in dockerfile
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject
    assert "download.pytorch.org" not in pyproject  # CPU-only is the image's choice alone


def test_dockerignore_keeps_local_state_out_but_the_package_in() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "*.db"} <= ignored
    needed = {"pyproject.toml", "README.md", "alembic.ini", "migrations", "models", "scarcity"}
    assert not needed & ignored


def test_docker_compose_config_is_valid() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker client")
    version = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
    )
    if version.returncode != 0:
        pytest.skip("docker client has no compose plugin")
    done = subprocess.run(
        ["docker", "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
