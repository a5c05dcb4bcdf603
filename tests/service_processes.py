"""Real service processes for tests: `scarcity serve` and `scarcity worker` on loopback ports."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SCARCITY = [sys.executable, "-m", "scarcity"]


@functools.cache
def datasets_dir() -> str:
    """The upload store of every service process this test session starts (unless a test's
    env names one): a temporary directory, shared by its API and workers as one volume is."""
    path = tempfile.mkdtemp(prefix="scarcity-datasets-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """A child process with its output in a log file (shown when a test fails)."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._args, self._env = args, env
        self._start("wb")

    def _start(self, log_mode: str) -> None:
        self._log = open(self.log_path, log_mode)  # noqa: SIM115 - closed in stop()
        # Own process group: kill() takes the Celery pool children down too, like a crash.
        self.process = subprocess.Popen(
            self._args,
            cwd=ROOT,
            env={**os.environ, "SCARCITY_DATASETS_DIR": datasets_dir(), **self._env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL to the whole process group: the crash nothing can clean up after."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):  # stray pool children
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


class Server(ServiceProcess):
    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [*SCARCITY, "serve", "--host", "127.0.0.1", "--port", str(self.port), *extra_args]
        super().__init__(args, env, log_path)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.output()}")


class Worker(ServiceProcess):
    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        name: str | None = "w1",
        wrapper: Sequence[str] = (),
    ) -> None:
        """`name` None: the command's own default node name; `wrapper`: a command that runs the
        worker (e.g. `faketime -f +30s` for a skewed clock)."""
        hostname = ["--hostname", f"{name}@%h"] if name else []
        super().__init__([*wrapper, *SCARCITY, "worker", *hostname], env, log_path)


class RedisServer(ServiceProcess):
    """A throw-away Redis without persistence, so a test may kill and restart its broker."""

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        super().__init__([*args, "--save", "", "--appendonly", "no"], {}, log_path)
        self._wait_listening()

    def restart(self, down_seconds: float) -> None:
        """Stop the server, stay down `down_seconds`, start it again on the same port: empty,
        as a broker restarted without persistence (its clients see their connections drop)."""
        self.stop()
        time.sleep(down_seconds)
        self._start("ab")
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis did not start:\n{self.output()}")


def wait_for_progress(
    client: httpx.Client, simulation_id: str, rounds: int, timeout: float = 120
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/simulations/{simulation_id}").json()
        if (
            body["progress"]["rounds_completed"] >= rounds
            or body["status"] != "running"
            and (body["status"] != "queued")
        ):
            return body
        time.sleep(0.05)
    raise AssertionError(f"simulation {simulation_id} stuck at {body['progress']}")


def wait_for_status(
    client: httpx.Client, simulation_id: str, statuses: set[str], timeout: float = 120
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/simulations/{simulation_id}").json()
        if body["status"] in statuses:
            return body
        time.sleep(0.2)
    raise AssertionError(f"simulation {simulation_id} still {body['status']} after {timeout}s")


class PostgresServer:
    """A PostgreSQL instance of the test's own (own data directory and port), so a test may
    stop, restart or pause it without touching the shared server."""

    def __init__(self, log_path: Path) -> None:
        import glob
        import shutil
        import tempfile

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        self._bin = Path(bins[-1]) if bins else Path(os.path.dirname(shutil.which("initdb") or ""))
        # Not under pytest's tmp dir: that is private to root, and PostgreSQL refuses to run as
        # root, so the server runs as the `postgres` user when the tests run as root.
        self._root = Path(tempfile.mkdtemp(prefix="scarcity-pg-"))
        self.data = self._root / "data"
        self.port = free_port()
        self.log_path = log_path
        self._as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_user:
            shutil.chown(self._root, "postgres")
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as_user, str(self._bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self._root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self._root / "pg.log"), "-o", options,
                 "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        import shutil

        if self.running():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        with contextlib.suppress(OSError):
            self.log_path.write_text((self._root / "pg.log").read_text(errors="replace"))
        shutil.rmtree(self._root, ignore_errors=True)
