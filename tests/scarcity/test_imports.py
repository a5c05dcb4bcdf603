"""The engine never imports the service or its frameworks."""

import json

import pytest

FORBIDDEN = ["fastapi", "celery", "sqlalchemy", "app", "worker", "models"]


@pytest.mark.parametrize("module", ["scarcity", "scarcity.cli", "scarcity.simulation"])
def test_importing_the_engine_imports_no_service_module(run_python, module):
    code = (
        f"import json, sys, {module}\n"
        "from scarcity import Expert, Router, Client, Server, MetaLearner\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))"
    )
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_public_api_is_exported():
    import scarcity

    for name in [
        "Expert",
        "Router",
        "Client",
        "Server",
        "MetaLearner",
        "StructureExpert",
        "DriftExpert",
        "MemoryConsolidationExpert",
        "MetaAdaptationExpert",
        "SimulationConfig",
        "resolve_config",
        "PRESETS",
        "RoundResult",
        "Simulation",
        "run_simulation",
    ]:
        assert hasattr(scarcity, name), name
