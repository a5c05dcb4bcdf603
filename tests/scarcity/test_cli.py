"""The `scarcity` command: run with --json, --set parsing, validation errors, lazy dispatch."""

import json
import logging
import sys
import types
from importlib import metadata

import pytest
import torch

from scarcity import resolve_config, run_simulation
from scarcity.cli import main, parse_set
from scarcity.simulation import MAX_DETAIL_CLIENTS, Simulation
from tests.scarcity.conftest import REPO_ROOT


def test_run_json_round_trip(run_python, tmp_path):
    proc = run_python(
        "-m",
        "scarcity",
        "run",
        "--preset",
        "stage6",
        "--clients",
        "3",
        "--rounds",
        "2",
        "--seed",
        "4",
        "--set",
        "drift=0.5",
        "--set",
        "router_strategy=random",
        "--json",
        "out/run.json",
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads((tmp_path / "out" / "run.json").read_text())
    config = payload["config"]
    assert (config["num_clients"], config["rounds"], config["seed"]) == (3, 2, 4)
    assert config["drift"] == 0.5 and config["router_strategy"] == "random"
    expected = run_simulation(resolve_config(config))
    assert [r["round"] for r in payload["rounds"]] == [1, 2]
    for row, result in zip(payload["rounds"], expected, strict=True):
        assert "duration_seconds" in row and "duration_seconds" not in row["metrics"]
        assert row["metrics"] == dict(result.metrics)
        assert row["meta_params"] == dict(result.meta_params)
        high, low = row["high_uncertainty_clients"], row["low_uncertainty_clients"]
        assert (high, low) == (
            list(result.uncertainty_groups["high_uncertainty_clients"]),
            list(result.uncertainty_groups["low_uncertainty_clients"]),
        )
        assert sorted(high + low) == [0, 1, 2] and high and low
        assert len(row["insights"]) == 3 and len(row["gossip_pairs"]) == 1
    assert "round" in proc.stdout and "loss" in proc.stdout  # the final table
    assert "ensemble_loss" in proc.stdout and "ensemble_loss" in payload["rounds"][0]["metrics"]
    log_file = tmp_path / "logs" / "scarcity.log"
    assert " - scarcity.simulation - INFO - Round 1/2: loss=" in log_file.read_text()


def test_bad_config_exits_2_naming_the_field(run_python):
    proc = run_python("-m", "scarcity", "run", "--set", "num_clients=0")
    assert proc.returncode == 2
    assert "num_clients" in proc.stderr


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        # a combination the config refuses, and a split the run plan finds cannot be made
        (["preset=stage1", "meta_reptile=true"], "meta_reptile: needs federated_averaging"),
        (["preset=stage2", "dataset=iris", "num_clients=500"], "num_clients: 500 clients"),
    ],
)
def test_a_config_the_engine_refuses_exits_2_naming_the_field(run_python, settings, line):
    args = [arg for setting in settings for arg in ("--set", setting)]
    proc = run_python("-m", "scarcity", "run", *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("invalid configuration:\n  ")
    assert f"\n  {line}" in proc.stderr, proc.stderr


def test_an_exploding_loss_exits_1_naming_the_round_and_the_metric(run_python):
    """The CLI reports divergence as the workers do (tests/scarcity/test_components.py)."""
    args = ["--preset", "stage5", "--rounds", "5", "--set", "drift=10", "--no-progress"]
    proc = run_python("-m", "scarcity", "run", *args)
    assert proc.returncode == 1, proc.stderr
    assert "simulation failed: round 4: ensemble_loss is 9." in proc.stderr, proc.stderr


def test_a_strategy_run_from_the_command_line(run_python, tmp_path):
    out = tmp_path / "run.json"
    proc = run_python(
        "-m", "scarcity", "run", "--preset", "baseline", "--strategy", "fedprox",
        "--scenario", "drift", "--set", "drift_blocks=2",
        "--set", "dataset=digits", "--set", "clients_per_round=3", "--rounds", "2",
        "--no-progress", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(out.read_text())
    assert saved["config"]["strategy"] == "fedprox" and saved["config"]["proximal_mu"] == 0.01
    assert saved["config"]["scenario"] == "drift" and saved["config"]["drift_kind"] == "label_swap"
    assert "next_block_accuracy" in saved["rounds"][0]["metrics"]
    # where the numbers came from
    provenance = saved["provenance"]
    assert provenance["torch"] == torch.__version__ and provenance["torch_threads"] >= 1
    assert {"scarcity", "git_commit", "numpy", "cpu_capability", "host"} <= provenance.keys()
    assert [r["metrics"]["clients_sampled"] for r in saved["rounds"]] == [3.0, 3.0]
    # the clients' data: digits' 1,438 training rows at natural sizes, a histogram each
    clients = saved["clients"]
    assert [c["client_id"] for c in clients] == list(range(saved["config"]["num_clients"]))
    assert sum(c["train_samples"] for c in clients) == 1438
    assert all(sum(c["label_counts"]) == c["train_samples"] for c in clients)
    bad = run_python("-m", "scarcity", "run", "--preset", "stage1", "--strategy", "fedadam")
    assert bad.returncode == 2 and "strategy" in bad.stderr


def test_seed_entry_script_runs(run_python):
    # As the seed runs it: a plain script path, the package not otherwise on sys.path.
    proc = run_python(
        str(REPO_ROOT / "scarcity" / "run.py"), "--rounds", "1", "--no-progress", pythonpath=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "recon_loss" in proc.stdout


def test_set_values_are_json_when_possible():
    assert parse_set(["drift=0.5", "gossip=true", "dataset=wine", "rounds=3"]) == {
        "drift": 0.5,
        "gossip": True,
        "dataset": "wine",
        "rounds": 3,
    }
    with pytest.raises(ValueError):
        parse_set(["novalue"])


def test_service_subcommands_dispatch_lazily_to_app_cli(monkeypatch):
    calls = []
    fake = types.ModuleType("app.cli")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "app", types.ModuleType("app"))
    monkeypatch.setitem(sys.modules, "app.cli", fake)
    assert main(["serve", "--port", "9000"]) == 0
    assert main(["migrate"]) == 0
    assert calls == [["serve", "--port", "9000"], ["migrate"]]


def test_round_logs_are_short_for_large_runs():
    config = resolve_config(preset="stage6", num_clients=4 * MAX_DETAIL_CLIENTS, rounds=1)
    result = Simulation(config).run_round()
    assert len(result.logs) <= 3 and sum(map(len, result.logs)) < 2000


def test_round_lines_go_to_the_scarcity_logger(caplog):
    with caplog.at_level(logging.INFO, logger="scarcity"):
        result = Simulation(resolve_config(preset="stage5", rounds=1)).run_round()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("scarcity")]
    assert result.logs[0] in messages


LOG_LINE = r"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d - {logger} - INFO - {message}$"
NUMBER = r"-?\d+\.\d{{{places}}}"
# The seed's messages, each under the logger of the component it speaks for.
SEED_MESSAGES = {
    "received meta-parameters": (
        "scarcity.core.client.Client",
        rf"Client \d: Received meta-parameters - mean={NUMBER.format(places=4)}, "
        rf"std={NUMBER.format(places=4)}, lr={NUMBER.format(places=4)}, updates=\d+",
    ),
    "gossip": (
        "scarcity.core.client.Client",
        r"Client \d: Synced \w+Expert with Client \d \(P2P gossip\)",
    ),
    "memory": (
        "scarcity.core.experts.MemoryConsolidationExpert",
        rf"MemoryExpert: Replayed embeddings - avg replay error: {NUMBER.format(places=4)}",
    ),
    "adaptation": (
        "scarcity.core.experts.MetaAdaptationExpert",
        rf"MetaAdaptation: Adjusted learning rate \d+ times - final_lr={NUMBER.format(places=6)}",
    ),
    "structure discovery": (
        "scarcity.core.client.Client",
        r"Client \d completed structure discovery",
    ),
    "priors": ("scarcity.core.meta_learner.MetaLearner", r"Server updated structural priors"),
}


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_a_default_run_writes_every_seed_message_at_info(run_python, tmp_path, execution):
    import re

    proc = run_python(
        "-m", "scarcity", "run", "--no-progress", "--set", f"execution={execution}"
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "logs" / "scarcity.log").read_text()
    for what, (logger, message) in SEED_MESSAGES.items():
        pattern = LOG_LINE.format(logger=re.escape(logger), message=message)
        found = re.findall(pattern, log, flags=re.MULTILINE)
        assert found, f"{what}: no line like {pattern}"
    # five clients, five rounds: each client hears the meta-parameters every round
    assert len(re.findall(r"Received meta-parameters", log)) == 25
    assert " - DEBUG - " not in log  # the components' own DEBUG lines stay out at INFO


def test_version_prints_the_package_version(run_python):
    proc = run_python("-m", "scarcity", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"scarcity {metadata.version('scarcity')}"


def test_help_and_version_import_no_torch(run_python):
    """`scarcity --help` answers at once: the engine (torch) loads only for a run."""
    code = (
        "import sys\n"
        "from scarcity.cli import main\n"
        "for option in ('--help', '--version'):\n"
        "    try:\n"
        "        main([option])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("False")


def test_the_seed_names_load_on_first_use():
    import scarcity

    assert scarcity.Expert is scarcity.core.Expert
    assert {"Client", "Server", "MetaLearner", "Router", "Simulation"} <= set(dir(scarcity))
    with pytest.raises(AttributeError):
        _ = scarcity.NoSuchName
