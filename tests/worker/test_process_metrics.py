"""The embedded mode's job counters: the API's own plus the engine process's, sample by sample."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from worker import metrics

ENGINE_PROCESS = """
from worker import metrics
metrics.ROUNDS_WRITTEN.inc(3)
metrics.DB_ERRORS.labels(step="claim").inc()
metrics.ROUND_DURATION.observe(0.2)
"""


def _samples(collector: metrics.WithProcessMetrics) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in collector.collect()
        for s in family.samples
    }


def _own(name: str, **labels: str) -> float:
    for family in metrics.JOB_METRICS:
        for metric in family.collect():
            for s in metric.samples:
                if s.name == name and s.labels == labels:
                    return s.value
    return 0.0


def test_the_engine_process_counters_add_to_this_process_own(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", ENGINE_PROCESS], env=env, check=True)
    metrics.ROUNDS_WRITTEN.inc(2)
    metrics.DB_ERRORS.labels(step="api").inc()
    rounds = _own("scarcity_rounds_written_total")
    api = _own("scarcity_db_errors_total", step="api")
    claim = _own("scarcity_db_errors_total", step="claim")
    count = _own("scarcity_round_duration_seconds_count")
    below = _own("scarcity_round_duration_seconds_bucket", le="0.25")

    merged = _samples(metrics.WithProcessMetrics(str(tmp_path)))

    assert merged[("scarcity_rounds_written_total", ())] == rounds + 3
    assert merged[("scarcity_db_errors_total", (("step", "api"),))] == api
    assert merged[("scarcity_db_errors_total", (("step", "claim"),))] == claim + 1
    assert merged[("scarcity_round_duration_seconds_count", ())] == count + 1
    assert merged[("scarcity_round_duration_seconds_bucket", (("le", "0.25"),))] == below + 1
    assert merged[("scarcity_round_duration_seconds_bucket", (("le", "0.1"),))] == _own(
        "scarcity_round_duration_seconds_bucket", le="0.1"
    )


def test_without_other_processes_the_counters_are_this_process_own(tmp_path: Path) -> None:
    metrics.ROUNDS_WRITTEN.inc()
    merged = _samples(metrics.WithProcessMetrics(str(tmp_path)))
    assert merged[("scarcity_rounds_written_total", ())] == _own("scarcity_rounds_written_total")
