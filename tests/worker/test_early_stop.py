"""The median stopping rule as a pure function (worker/early_stop.py)."""

from __future__ import annotations

from worker.early_stop import median_stop

RULE = {"rule": "median", "metric": "test_loss", "mode": "min", "grace_rounds": 2, "min_runs": 3}


def test_a_run_worse_than_the_median_of_the_others_running_means_stops() -> None:
    others = [[1.0, 0.5, 0.1], [1.0, 0.7], [2.0, 1.0, 0.9]]  # running means at 2: .75 .85 1.5
    assert median_stop([1.0, 0.9], others, RULE) is not None  # best 0.9 > median 0.85
    reason = median_stop([1.0, 0.9], others, RULE)
    assert reason and "0.85" in reason and "3 other runs" in reason
    assert median_stop([1.0, 0.8], others, RULE) is None  # best 0.8 beats the median
    assert median_stop([5.0], others, RULE) is None  # inside the grace rounds
    assert median_stop([1.0, 0.9], others[:2], RULE) is None  # too few others for a median
    assert median_stop([1.0, 0.9, 0.95], others, RULE) is None  # only 2 others reached round 3


def test_max_mode_stops_a_run_below_the_median() -> None:
    rule = RULE | {"mode": "max", "metric": "test_accuracy", "grace_rounds": 1}
    others = [[0.5], [0.6], [0.7]]
    assert median_stop([0.55], others, rule) is not None
    assert median_stop([0.65], others, rule) is None
