"""Embedded mode on SQLite: API reads and writes while the worker writes rounds never fail."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.service_processes import Server, wait_for_progress, wait_for_status


def test_reads_and_writes_during_worker_writes_never_hit_database_is_locked(
    server: Server,
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sim_id = client.post(
            "/simulations", json={"preset": "stage8", "rounds": 15, "num_clients": 3}
        ).json()["id"]
        wait_for_progress(client, sim_id, 1)

        def hammer(i: int) -> list[int]:
            codes = []
            with httpx.Client(base_url=server.url, timeout=30) as own:
                for _ in range(15):
                    codes.append(own.get(f"/simulations/{sim_id}/metrics").status_code)
                    codes.append(own.get("/simulations", params={"limit": 5}).status_code)
                    if i % 4 == 0:  # writers too: they queue behind the running simulation
                        response = own.post("/simulations", json={"preset": "stage1", "rounds": 1})
                        codes.append(response.status_code)
            return codes

        with ThreadPoolExecutor(8) as pool:
            codes = [c for batch in pool.map(hammer, range(8)) for c in batch]
        assert set(codes) <= {200, 202}, sorted(set(codes))
        assert wait_for_status(client, sim_id, {"succeeded", "failed"})["status"] == "succeeded"
    assert "database is locked" not in server.output()
