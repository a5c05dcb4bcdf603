"""Fixtures for tests that run real server and worker processes."""

from __future__ import annotations

import os
import subprocess

import pytest
import redis

from tests.service_processes import ROOT, SCARCITY

# Override to give a concurrent test run on the same Redis a database of its own (the fixture
# empties it; two runs sharing one would take and drop each other's jobs).
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_url() -> str:
    """A Redis database of the tests' own, emptied so no old message reaches a new worker."""
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    return TEST_REDIS_URL


@pytest.fixture
def migrated_postgres_url(postgres_url: str) -> str:
    """A fresh PostgreSQL database brought to head by the real `scarcity migrate` command."""
    env = {**os.environ, "SCARCITY_DATABASE_URL": postgres_url}
    done = subprocess.run(
        [*SCARCITY, "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return postgres_url
