"""docs/sweep.ipynb runs from top to bottom against a real server (nbclient, a real kernel):
its sweep finishes, its table has a row per configuration and its last cell draws the plot."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.app.conftest import Server

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "sweep.ipynb"


def test_the_sweep_notebook_runs_against_a_real_server(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    monkeypatch.setenv("SCARCITY_URL", server.url)  # the kernel inherits the environment
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]

    def text(cell: nbformat.NotebookNode) -> str:
        return "".join(
            out.get("data", {}).get("text/plain", "") + out.get("text", "") for out in cell.outputs
        )

    sweep_id = text(code[1]).split("'")[1]
    with httpx.Client(base_url=server.url) as client:
        sweep = client.get(f"/sweeps/{sweep_id}").json()
    assert sweep["progress"]["total"] == sweep["progress"]["succeeded"] == 4
    assert "'succeeded': 4" in text(code[2])  # the wait ended with every run done
    table = text(code[3]).splitlines()
    assert len(table) == 3 and table[1].split()[1:3] == ["0.1", "2"]  # header + a row each
    assert table[2].split()[1:3] == ["1.0", "2"]
    assert any("image/png" in out.get("data", {}) for out in code[4].outputs)
