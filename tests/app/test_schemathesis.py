"""Schemathesis over the whole OpenAPI schema, against a real server: no 5xx, every response
documented and matching its schema, every check of `schemathesis.toml` on.

The server has API keys set (so the auth checks mean something) and tiny limits, so that the
simulations fuzzing creates finish in seconds:

- at most 3 queued or running per owner (more → 409, documented), each stopped by the 8 s time
  limit at its next round end (a round here takes at most ~4 s): with the two fuzzing owners, a
  `GET /simulations/{id}/events` stream on a real id ends within about 6 × 12 s, inside the
  120 s request timeout of schemathesis.toml, so fuzzing that endpoint cannot hang;
- a sweep makes at most 4 runs (pending ones wait for the same cap), so the queue they add
  drains in seconds too;
- random ids get a 404 before any stream opens.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from tests.service_processes import ROOT, Server

KEY, OTHER_KEY = "schemathesis-key", "other-key"
FUZZ_LIMITS = {
    "SCARCITY_API_KEYS": f"{KEY},{OTHER_KEY}",
    "SCARCITY_MAX_CLIENTS": "3",
    "SCARCITY_MAX_ROUNDS": "2",
    "SCARCITY_MAX_SAMPLES_PER_CLIENT": "20",
    "SCARCITY_MAX_LOCAL_EPOCHS": "4",
    "SCARCITY_MAX_DIM": "16",
    "SCARCITY_MAX_WORK": "500",
    "SCARCITY_MAX_ACTIVE_PER_OWNER": "3",
    "SCARCITY_MAX_SWEEP_RUNS": "4",
    "SCARCITY_SIMULATION_TIME_LIMIT_SECONDS": "8",
    "SCARCITY_MAX_BODY_BYTES": "4096",
    "SCARCITY_MAX_PAGE_SIZE": "5",
}

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    env = {
        "SCARCITY_DATABASE_URL": f"sqlite:///{tmp}/fuzz.db",
        "SCARCITY_LOG_DIR": str(tmp / "logs"),
        **FUZZ_LIMITS,
    }
    server = Server(env, tmp / "server.log")
    yield server
    server.stop()


def st_config(fuzz_server: Server, key: str) -> Path:
    """The repository's schemathesis.toml plus a fuzzing key, so the auth checks can run."""
    path = fuzz_server.log_path.parent / f"schemathesis-{key}.toml"
    auth = f'\n[auth.openapi.HTTPBearer]\nbearer = "{key}"\n'
    path.write_text((ROOT / "schemathesis.toml").read_text() + auth)
    return path


@pytest.fixture(scope="module")
def api_schema(fuzz_server: Server) -> Any:
    config = SchemathesisConfig.from_path(str(st_config(fuzz_server, KEY)))
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _pytest9_node_id(request: pytest.FixtureRequest) -> None:
    # schemathesis' lazy loader reads `node._nodeid`, which pytest 9 no longer has; give it one
    # (it only renames the node for its reports).
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schema.parametrize()
def test_every_operation_conforms(case: Any) -> None:
    """Examples, coverage and fuzzing phases of every operation, positive and negative data."""
    case.call_and_validate()


def test_whole_schema_with_the_schemathesis_engine(fuzz_server: Server) -> None:
    """All phases again through schemathesis' own engine (the `st` CLI), under a second key.

    The engine adds what the pytest integration lacks: ids from earlier 202 responses feed the
    `/simulations/{id}` routes (so their 200 bodies, CSV and event streams are validated, not
    only their 404s), and the stateful phase. A second owner starts with an empty active cap.
    """
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "--config-file",
            str(st_config(fuzz_server, OTHER_KEY)),
            "--no-color",
            "run",
            f"{fuzz_server.url}/openapi.json",
            "--checks",
            "all",
        ],
        cwd=fuzz_server.log_path.parent,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", result.stdout)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert selected and tested, result.stdout[-8000:]
    assert tested[1] == selected[1] == selected[2], result.stdout[-8000:]  # none skipped


def test_fuzz_server_took_no_5xx(fuzz_server: Server) -> None:
    """Belt and braces: the server logged no unhandled error during the whole run."""
    assert "unhandled error" not in fuzz_server.output(), fuzz_server.output()[-4000:]
