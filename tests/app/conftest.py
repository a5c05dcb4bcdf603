"""An embedded-mode server process shared by the API tests (real app over real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service_processes import Server

SMALL_LIMITS = {
    "SCARCITY_MAX_CLIENTS": "50",
    "SCARCITY_MAX_ROUNDS": "20",
    "SCARCITY_MAX_WORK": "200000",
    "SCARCITY_MAX_BODY_BYTES": "4096",
    "SCARCITY_MAX_PAGE_SIZE": "5",
    "SCARCITY_MAX_SWEEP_RUNS": "20",
    "SCARCITY_MAX_UPLOAD_BYTES": "262144",
}


def _server(tmp: Path, extra: dict[str, str]) -> Server:
    env = {"SCARCITY_DATABASE_URL": f"sqlite:///{tmp}/api.db", **SMALL_LIMITS, **extra}
    return Server(env, tmp / "api.log")


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = _server(tmp_path_factory.mktemp("api"), {})
    yield server
    server.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="package")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = _server(tmp_path_factory.mktemp("keyed"), {"SCARCITY_API_KEYS": "key-a,key-b"})
    yield server
    server.stop()
