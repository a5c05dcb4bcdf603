"""The README's figures come from its own commands: each example is read from the README, run
on the engine as the service would run it, and its printed numbers compared.

The engine is deterministic for a config and seed, so the figures match to the digits printed.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from app.schemas import SweepCreate
from app.sweeps.service import expand
from scarcity import resolve_config, run_simulation

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _final(request: dict) -> dict[str, float]:
    return dict(run_simulation(resolve_config(request))[-1].metrics)


def test_the_first_digits_example_ends_at_the_accuracy_printed() -> None:
    body = re.search(r"-d '(\{\"preset\": \"stage2\", \"dataset\": \"digits\".*?\})'", README)
    assert body is not None
    request = {
        k: v for k, v in json.loads(body.group(1)).items() if k not in ("name", "tags", "notes")
    }
    printed = re.search(r"ends its (\d+) rounds at\s+`test_accuracy` (0\.\d+)", README)
    assert printed is not None
    metrics = _final(request)
    assert resolve_config(request).rounds == int(printed.group(1))
    assert f"{metrics['test_accuracy']:.3f}" == printed.group(2)
    # ... and the search the README shows next finds it
    threshold = re.search(r"metrics\.test_accuracy >= (0\.\d+)", README)
    assert threshold is not None and metrics["test_accuracy"] >= float(threshold.group(1))


def test_the_strategy_by_alpha_sweep_gives_the_table_printed() -> None:
    block = re.search(r"/sweeps -H 'Content-Type: application/json' -d '(\{.*?\})'", README, re.S)
    assert block is not None
    sweep = SweepCreate.model_validate(json.loads(block.group(1)))
    table = README[block.end() :]
    finals: dict[tuple[str, float], list[float]] = {}
    for point, seed in expand(sweep):
        request = {**sweep.base.model_dump(exclude_unset=True), **point, "seed": seed}
        accuracy = _final(request)["test_accuracy"]
        finals.setdefault((point["strategy"], point["dirichlet_alpha"]), []).append(accuracy)
    for strategy in ("fedavg", "fedprox", "fedmedian"):
        row = re.search(rf"^\| {strategy} \| (.+?) \| (.+?) \|$", table, re.M)
        assert row is not None, strategy
        for alpha, printed in zip((0.1, 1.0), row.groups(), strict=True):
            values = finals[(strategy, alpha)]
            shown = f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"
            assert shown == printed, (strategy, alpha)
    # the point of the example: label skew costs accuracy
    for strategy in ("fedavg", "fedmedian"):
        assert statistics.fmean(finals[(strategy, 0.1)]) < statistics.fmean(finals[(strategy, 1.0)])


def test_the_heart_disease_fedavg_figure_is_its_defaults_over_flambys_seeds() -> None:
    """`bench papers`' FedAvg row runs heart_disease on its defaults (FLamby's FedAvg)."""
    printed = re.search(r"FedAvg (0\.\d+) \((0\.\d+)\)", README)
    assert printed is not None
    finals = [
        _final({"preset": "baseline", "dataset": "heart_disease", "seed": seed})[
            "personal_accuracy_mean"
        ]
        for seed in (42, 43, 44, 45, 46)
    ]
    assert f"{statistics.fmean(finals):.3f}" == printed.group(1)


def test_the_task_sequence_example_gives_the_table_printed() -> None:
    body = re.search(r"^(\{\"preset\": \"baseline\".*\"scenario\": \"tasks\".*\})$", README, re.M)
    assert body is not None
    request = json.loads(body.group(1))
    table = README[body.end() :]
    for kind in ("class_split", "rotated"):
        row = re.search(rf"^\| {kind} \| (.+?) \| (.+?) \| (.+?) \|$", table, re.M)
        assert row is not None, kind
        metrics = _final({**request, "task_kind": kind})
        shown = [
            f"{metrics[name]:.3f}"
            for name in ("avg_task_accuracy", "forgetting", "backward_transfer")
        ]
        assert shown == list(row.groups()), kind


def test_the_drift_example_drops_as_printed_and_never_recovers() -> None:
    body = re.search(r"^(\{\"preset\": \"baseline\".*\"scenario\": \"tasks\".*\})$", README, re.M)
    printed = re.search(
        r"and (\d+) rounds drops (0\.\d+), (0\.\d+) and (0\.\d+) at the three drifts", README
    )
    assert body is not None and printed is not None
    request = {k: v for k, v in json.loads(body.group(1)).items() if k != "num_tasks"}
    request |= {"scenario": "drift", "drift_blocks": 4, "rounds": int(printed.group(1))}
    results = run_simulation(resolve_config(request))
    drops = [
        f"{r.metrics['drift_accuracy_drop']:.3f}"
        for r in results
        if "drift_accuracy_drop" in r.metrics
    ]
    assert drops == list(printed.groups()[1:])
    assert not any("drift_recovery_rounds" in r.metrics for r in results)
