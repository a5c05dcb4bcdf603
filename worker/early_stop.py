"""The median stopping rule of a sweep's runs (Golovin et al. 2017, Google Vizier; as Ray Tune's
`MedianStoppingRule`): after round r, a run stops when its best value of the metric so far is
worse than the median of the other runs' running means over their first r rounds.

Pure: the worker reads the series from the database and asks here. Whether a run stops depends
on which of its siblings have reported by then, so a sweep with early stopping is only as
deterministic as the order its runs ran in (each run's own rounds stay deterministic).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def median_stop(
    own: Sequence[float], others: Sequence[Sequence[float]], rule: Mapping[str, Any]
) -> str | None:
    """Why the run should stop now, or None. `own`: its metric in rounds 1..r; `others`: each
    other run's, as far as it got; `rule`: the sweep's `early_stop`."""
    r = len(own)
    if r < rule["grace_rounds"]:
        return None
    means = [statistics.fmean(series[:r]) for series in others if len(series) >= r]
    if len(means) < rule["min_runs"]:
        return None
    median = statistics.median(means)
    minimize = rule["mode"] == "min"
    best = min(own) if minimize else max(own)
    if (best > median) if minimize else (best < median):
        return (
            f"stopped early by the median rule: best {rule['metric']} {best:.6g} after round "
            f"{r} is worse than {median:.6g}, the median of {len(means)} other runs' running means"
        )
    return None
