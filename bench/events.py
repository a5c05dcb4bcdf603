"""Events fan-out benchmark: 100 live-event subscribers of one embedded run.

The run (stage8, 50 clients, 40 rounds) alone, then again with 100 `GET /events` streams open
on it, while a client samples `GET /simulations/{id}`; three such pairs in turn, so load from
elsewhere on the machine weighs on both alike. Prints each pair's run times (started_at →
finished_at), the slowdown, the API process's CPU time over each run (what the subscribers
cost it, however busy the machine; the embedded engine runs in a process of its own, not
counted) and the GET p50/p99 meanwhile, then the medians and ranges. Target (issue 13): the
subscribers cost at most 10 % of the run time.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from tests.service_processes import Server

JOB = {"preset": "stage8", "num_clients": 50, "rounds": 40, "seed": 1}


def _run_seconds(body: dict) -> float:
    started = datetime.fromisoformat(body["started_at"])
    return (datetime.fromisoformat(body["finished_at"]) - started).total_seconds()


async def _follow(client: httpx.AsyncClient, sim_id: str) -> int:
    rounds = 0
    async with client.stream("GET", f"/simulations/{sim_id}/events", timeout=600) as response:
        async for line in response.aiter_lines():
            if line.startswith("event: round"):
                rounds += 1
            elif line.startswith("event: end"):
                break
    return rounds


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux): what the server itself spent,
    whatever else the machine runs meanwhile."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _open_cost(url: str, sim_id: str, subscribers: int, pid: int) -> tuple[float, float]:
    """Server CPU seconds of `subscribers` streams of a finished run (each opens, gets every
    round and the end in one chunk, closes), and of as many `GET /healthz` on new connections:
    the fixed cost of opening the streams, against that of the cheapest request."""
    unlimited = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=unlimited) as client:
        cpu = _cpu_seconds(pid)
        await asyncio.gather(*(_follow(client, sim_id) for _ in range(subscribers)))
        streams = _cpu_seconds(pid) - cpu
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=unlimited) as client:
        cpu = _cpu_seconds(pid)
        await asyncio.gather(*(client.get("/healthz") for _ in range(subscribers)))
        return streams, _cpu_seconds(pid) - cpu


async def _one_run(url: str, job: dict, subscribers: int) -> tuple[float, list[float]]:
    unlimited = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with (
        httpx.AsyncClient(base_url=url, timeout=600) as client,
        httpx.AsyncClient(base_url=url, timeout=600, limits=unlimited) as watchers,
    ):
        sim_id = (await client.post("/simulations", json=job)).json()["id"]
        streams = [asyncio.create_task(_follow(watchers, sim_id)) for _ in range(subscribers)]
        latencies: list[float] = []
        while True:
            start = time.perf_counter()
            body = (await client.get(f"/simulations/{sim_id}")).json()
            latencies.append(time.perf_counter() - start)
            if body["status"] in ("succeeded", "failed", "cancelled"):
                break
            await asyncio.sleep(0.05)
        counts = await asyncio.gather(*streams)
        assert body["status"] == "succeeded", body
        assert all(n == job["rounds"] for n in counts), counts
        return _run_seconds(body), latencies


def main(quick: bool = False) -> None:
    job = {**JOB, "rounds": 10} if quick else JOB
    subscribers = 20 if quick else 100
    pairs = 1 if quick else 3  # alone / watched in turn: load from elsewhere hits both alike
    slowdowns: list[float] = []
    cpu_costs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"SCARCITY_DATABASE_URL": f"sqlite:///{tmp}/bench.db"}
        server = Server(env, Path(tmp) / "api.log")
        try:
            asyncio.run(_one_run(server.url, {**job, "rounds": 2}, 0))  # warm-up
            pid = server.process.pid
            opened: list[tuple[float, float]] = []
            for _ in range(pairs):
                cpu = _cpu_seconds(pid)
                alone, _ = asyncio.run(_one_run(server.url, job, 0))
                cpu_alone, cpu = _cpu_seconds(pid) - cpu, _cpu_seconds(pid)
                watched, latencies = asyncio.run(_one_run(server.url, job, subscribers))
                cpu_watched = _cpu_seconds(pid) - cpu
                slowdowns.append(watched / alone - 1)
                cpu_costs.append(cpu_watched / cpu_alone - 1)
                ordered = sorted(latencies)
                p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
                print(
                    f"run alone {alone:.2f} s; with {subscribers} event subscribers "
                    f"{watched:.2f} s ({slowdowns[-1] * 100:+.0f} %); API process CPU "
                    f"{cpu_alone:.2f} s → {cpu_watched:.2f} s ({cpu_costs[-1] * 100:+.0f} %); "
                    f"GET /simulations/{{id}} "
                    f"meanwhile p50 {statistics.median(ordered) * 1e3:.1f} ms, "
                    f"p99 {p99 * 1e3:.1f} ms ({len(ordered)} samples)",
                    flush=True,
                )
            finished = httpx.get(f"{server.url}/simulations", params={"limit": 1}).json()
            for _ in range(3):
                opened.append(
                    asyncio.run(_open_cost(server.url, finished["data"][0]["id"], subscribers, pid))
                )
        finally:
            server.stop()
    print(
        f"slowdown median {statistics.median(slowdowns) * 100:+.0f} % "
        f"(range {min(slowdowns) * 100:+.0f} to {max(slowdowns) * 100:+.0f} %, "
        f"{pairs} pair(s)); API process CPU median {statistics.median(cpu_costs) * 100:+.0f} % "
        f"(range {min(cpu_costs) * 100:+.0f} to {max(cpu_costs) * 100:+.0f} %); target ≤ +10 %"
    )
    streams, healthz = (statistics.median(x) for x in zip(*opened, strict=True))
    print(
        f"opening {subscribers} streams of a finished run: API process CPU {streams * 1e3:.0f} ms "
        f"(as many GET /healthz: {healthz * 1e3:.0f} ms; medians of 3)"
    )
