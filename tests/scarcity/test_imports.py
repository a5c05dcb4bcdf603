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


#: Modules that run a simulation when imported (`python -m scarcity`, the seed's script).
SCRIPTS = ("scarcity.__main__", "scarcity.run")


def test_every_engine_module_imports_on_its_own(run_python):
    """Each module of the engine imports first, in an interpreter where no other module of it is
    loaded yet: an import cycle between its packages cannot hide behind the order in which
    `scarcity/__init__` happened to import them."""
    code = (
        "import importlib, pkgutil, sys, torch, scarcity\n"
        f"SCRIPTS = {SCRIPTS!r}\n"
        "names = [m.name for m in pkgutil.walk_packages(scarcity.__path__, 'scarcity.')\n"
        "         if m.name not in SCRIPTS]\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('scarcity.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as error:\n"
        "        failed.append(f'{name}: {error}')\n"
        "print(len(names)); print('\\n'.join(failed))\n"
    )
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    count, *failed = proc.stdout.strip().split("\n")
    assert int(count) > 50
    assert failed == []
