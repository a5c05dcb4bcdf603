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
