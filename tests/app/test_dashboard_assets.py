"""The dashboard's files as the server serves them: ES modules, with a JavaScript type.

A module script whose response is not of a JavaScript MIME type is refused by the browser, so
each module is fetched over HTTP here; the browser test (tests/dashboard/) runs them.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

MODULES = Path(__file__).resolve().parents[2] / "app" / "static" / "dashboard"
IMPORT = re.compile(r'^import \{[^}]*\} from "\./([\w.-]+)";$', re.M)


def test_the_page_loads_its_entry_module_and_every_module_is_javascript(
    client: httpx.Client,
) -> None:
    page = client.get("/").text
    assert '<script type="module" src="/static/dashboard/main.js"></script>' in page
    modules = sorted(MODULES.glob("*.js"))
    assert {m.name for m in modules} >= {
        "main.js", "api.js", "form.js", "run.js", "history.js", "compare.js", "sweeps.js",
        "clients.js",
    }  # fmt: skip
    for module in modules:
        response = client.get(f"/static/dashboard/{module.name}")
        assert response.status_code == 200, module.name
        assert response.headers["content-type"].split(";")[0] == "text/javascript", module.name
        assert response.content == module.read_bytes()
        # every relative import names a module that is there
        for name in IMPORT.findall(response.text):
            assert (MODULES / name).is_file(), f"{module.name} imports missing {name}"


def test_only_the_api_module_talks_to_the_service() -> None:
    """All fetch and EventSource calls go through api.js (the key, the 401 prompt, errors)."""
    callers = {
        module.name
        for module in MODULES.glob("*.js")
        if re.search(r"\bfetch\(|\bEventSource\b|XMLHttpRequest", module.read_text())
    }
    assert callers == {"api.js"}


#: Every static relative import or re-export of a module: `import {…} from "./x.js"` (over
#: several lines too), `import * as x from './x.js'`, `import "./x.js"`, `export {…} from …`.
RELATIVE_IMPORT = re.compile(
    r"""^\s*(?:import|export)\b[^;'"]*?(?:\bfrom\s*)?["']\./([\w.-]+\.js)["']""", re.M
)


def import_graph() -> dict[str, set[str]]:
    """Each dashboard module and the modules it imports."""
    return {
        module.name: set(RELATIVE_IMPORT.findall(module.read_text()))
        for module in MODULES.glob("*.js")
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports as the modules along it (first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        path.append(name)
        for imported in sorted(graph.get(name, ())):
            cycle = visit(imported)
            if cycle:
                return cycle
        path.pop()
        done.add(name)
        return None

    return next((cycle for name in sorted(graph) if (cycle := visit(name))), None)


def test_the_modules_import_each_other_without_a_cycle() -> None:
    """A view that needs another one's action imports it one way only (history → form → run);
    the other way goes through a notice (notices.js), so each module can be read and loaded on
    its own terms."""
    graph = import_graph()
    assert graph["main.js"] >= {"form.js", "history.js", "run.js"}  # the parser reads imports
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a.js": {"b.js"}, "b.js": {"c.js"}, "c.js": {"a.js"}}) == [
        "a.js",
        "b.js",
        "c.js",
        "a.js",
    ]
    assert find_cycle({"a.js": {"b.js", "c.js"}, "b.js": {"c.js"}, "c.js": set()}) is None
    sample = 'import {\n  a,\n} from "./x.js";\nimport * as y from \'./y.js\';\nimport "./z.js";'
    assert set(RELATIVE_IMPORT.findall(sample)) == {"x.js", "y.js", "z.js"}
