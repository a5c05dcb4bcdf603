"""The dashboard (`GET /`) and Swagger UI (`GET /docs`) in headless Chromium against a real server.

Submits a stage8 5-client 5-round simulation from the form, watches it to `succeeded`, checks the
charts and the log, opens `/docs`, and records every request the pages make: none may leave
127.0.0.1. Screenshots go to `test-artifacts/` (desktop 1400×1000 and phone 390 px wide).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright

from tests.service_processes import ROOT, Server

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ENSURE_PACKAGE = ROOT / "scripts" / "ensure-debian-package.sh"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1"}
ROUND_CHARTS = [
    "loss",
    "recon",
    "drift",
    "other",
    "bytes",
    "bytes_total",
    "meta",
    "priors",
    "experts",
    "gossip",
]


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium, installed by scripts/ensure-debian-package.sh when missing; loudly."""
    done = subprocess.run(
        ["bash", str(ENSURE_PACKAGE), str(CHROMIUM), "chromium"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(
            f"{ENSURE_PACKAGE} could not provide {CHROMIUM} (exit {done.returncode}):\n"
            f"{done.stdout}\n{done.stderr}"
        )
    return CHROMIUM


def _start_server(tmp: Path, api_keys: str = "") -> Server:
    env = {
        "SCARCITY_DATABASE_URL": f"sqlite:///{tmp / 'dashboard.db'}",
        "SCARCITY_BROKER_URL": "",  # embedded worker
        "SCARCITY_API_KEYS": api_keys,  # "" = open API
        "SCARCITY_LOG_DIR": str(tmp / "logs"),
    }
    return Server(env, tmp / "server.log")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = _start_server(tmp_path_factory.mktemp("dashboard"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


class RequestLog:
    """Every request the pages make; anything not to 127.0.0.1 is recorded and aborted."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.foreign: list[str] = []
        self.failures: list[str] = []

    def route(self, route: Route) -> None:
        url = route.request.url
        if _is_local(url):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def request(self, request: Request) -> None:
        self.urls.append(request.url)
        if not _is_local(request.url):
            self.foreign.append(request.url)

    def failed(self, request: Request) -> None:
        self.failures.append(f"{request.method} {request.url}: {request.failure}")


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "about"):
        return True  # no network involved
    if parts.scheme == "blob":
        parts = urlsplit(parts.path)
    return parts.hostname in LOCAL_HOSTS


def _new_page(browser: Browser, log: RequestLog, width: int, height: int) -> Page:
    context = browser.new_context(
        viewport={"width": width, "height": height}, accept_downloads=True
    )
    context.route("**/*", log.route)
    context.on("request", log.request)
    context.on("requestfailed", log.failed)
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def _wait_for_charts(page: Page, points: int) -> None:
    page.wait_for_function(
        """([names, points]) => names.every((n) => {
             const box = document.querySelector(`#charts [data-chart="${n}"]`);
             return box && !box.hidden && box.dataset.points === String(points)
               && box.querySelector("canvas");
           })""",
        arg=[ROUND_CHARTS, points],
        timeout=30_000,
    )


def test_dashboard_submit_watch_history_and_docs(browser: Browser, server: Server) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    log = RequestLog()
    errors: list[str] = []

    # --- desktop: submit from the form ---------------------------------------------------------
    page = _new_page(browser, log, 1400, 1000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/")
    expect(page.locator("#f-preset option")).to_have_count(9)
    page.select_option("#f-preset", "stage8")
    expect(page.locator("#preset-description")).not_to_be_empty()
    # The form is generated from the OpenAPI schema: every seed control and feature toggle.
    for name in [
        "num_clients", "rounds", "seed", "input_dim", "output_dim", "samples_per_client",
        "learning_rate", "local_epochs", "router_strategy", "dataset", "partition",
        "dirichlet_alpha", "drift", "federated_averaging", "insight_exchange", "expert_routing",
        "meta_learning", "gossip", "extended_experts", "structure_discovery",
    ]:  # fmt: skip
        expect(page.locator(f"#f-{name}")).to_have_count(1)
    expect(page.locator("#f-gossip")).to_be_checked()  # stage8 default

    # A 422 is shown next to its field.
    page.fill("#f-num_clients", "0")
    page.get_by_role("button", name="Run", exact=True).click()
    field_error = page.locator('[data-field="num_clients"] .field-error')
    expect(field_error).to_contain_text("greater than or equal to 1")

    # The chosen model's own fields only (GET /models): an MLP's hidden sizes, typed as a list.
    hidden = page.locator('[data-field="hidden_sizes"]')
    expect(hidden).to_be_hidden()
    page.select_option("#f-model", "mlp")
    expect(hidden).to_be_visible()
    expect(page.locator('[data-field="cnn_channels"]')).to_be_hidden()
    page.fill("#f-num_clients", "5")
    page.fill("#f-hidden_sizes", "16, x")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(hidden.locator(".field-error")).to_contain_text("whole numbers")
    page.fill("#f-hidden_sizes", "16, 8")

    page.fill("#f-rounds", "5")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(field_error).to_be_empty()
    expect(page.locator("#sim-status")).to_have_text("succeeded", timeout=45_000)
    import httpx

    newest = httpx.get(f"{server.url}/simulations?limit=1", timeout=30).json()["data"][0]
    assert (newest["config"]["model"], newest["config"]["hidden_sizes"]) == ("mlp", [16, 8])
    _wait_for_charts(page, 5)
    expect(page.locator("#sim-progress-text")).to_have_text("round 5 of 5")
    log_text = page.locator("#sim-log").inner_text()
    assert "Round 5/5 loss=" in log_text, log_text
    assert len([line for line in log_text.splitlines() if line.startswith("Round ")]) == 5
    row = page.locator("#history-rows tr").first
    expect(row).to_contain_text("succeeded")
    expect(row.locator("td.metrics")).to_contain_text("loss=")
    # the clients × rounds heatmap of an insight (ECharts): 5 clients × 5 rounds
    heatmap = page.locator("#heatmap-box")
    expect(heatmap).to_have_attribute("data-cells", "25")
    expect(heatmap).to_have_attribute("data-insight", "loss")
    # what ECharts itself holds: one cell per (round, client), each the stored insight's loss
    drawn = page.evaluate(
        """() => {
          const option = echarts.getInstanceByDom(document.querySelector('#heatmap')).getOption();
          return {rounds: option.xAxis[0].data, clients: option.yAxis[0].data,
                  cells: option.series[0].data};
        }"""
    )
    stored = httpx.get(f"{server.url}/simulations/{newest['id']}/insights", timeout=30).json()
    losses = {(r["round"], r["client_id"]): r["insight"]["loss"] for r in stored["insights"]}
    cells = {(drawn["rounds"][x], drawn["clients"][y]): value for x, y, value in drawn["cells"]}
    assert len(drawn["cells"]) == 25 and cells == losses
    page.select_option("#heatmap-insight", "selected_expert")
    expect(heatmap).to_have_attribute("data-insight", "selected_expert")
    expect(heatmap).to_have_attribute("data-cells", "25")
    heatmap.scroll_into_view_if_needed()
    heatmap.screenshot(path=str(ARTIFACTS / "dashboard-heatmap.png"))
    # the gossip graph of a round: stage 8 pairs ⌊5 / 2⌋ = 2 disjoint client pairs a round
    gossip = page.locator("#gossip-graph-box")
    expect(gossip).to_have_attribute("data-round", "5")
    expect(gossip).to_have_attribute("data-edges", "2")
    page.select_option("#gossip-round", "1")
    expect(gossip).to_have_attribute("data-round", "1")
    expect(gossip).to_have_attribute("data-edges", "2")
    gossip.screenshot(path=str(ARTIFACTS / "dashboard-gossip.png"))
    # the meta-learner's high / low uncertainty clients of the last round
    uncertainty = page.locator("#uncertainty-latest")
    expect(uncertainty).to_contain_text("round 5: high-uncertainty clients")
    expect(uncertainty).to_contain_text("low-uncertainty clients")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "dashboard-1400x1000.png"))
    page.screenshot(path=str(ARTIFACTS / "dashboard-1400x1000-full.png"), full_page=True)

    # CSV download of the finished run: header plus one row per round.
    with page.expect_download() as download_info:
        page.click("#watch-csv")
    csv_lines = Path(download_info.value.path()).read_text().strip().splitlines()
    assert csv_lines[0].startswith("round,") and len(csv_lines) == 6, csv_lines
    with page.expect_download() as download_info:
        page.click("#watch-json")
    exported = json.loads(Path(download_info.value.path()).read_text())
    assert exported["simulation"]["status"] == "succeeded"
    assert [r["round"] for r in exported["rounds"]] == [1, 2, 3, 4, 5]
    assert "loss" in exported["rounds"][-1]["metrics"] and exported["rounds"][-1]["meta_params"]

    # --- phone width: open the run from the history ----------------------------------------------
    phone = _new_page(browser, log, 390, 844)
    phone.on("pageerror", lambda exc: errors.append(str(exc)))
    phone.goto(f"{server.url}/")
    phone.locator("#history-rows tr").first.get_by_role("button", name="Open").click()
    expect(phone.locator("#sim-status")).to_have_text("succeeded")
    _wait_for_charts(phone, 5)
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than a 390px screen"
    phone.evaluate("window.scrollTo(0, 0)")
    phone.screenshot(path=str(ARTIFACTS / "dashboard-390.png"))
    phone.screenshot(path=str(ARTIFACTS / "dashboard-390-full.png"), full_page=True)
    phone.evaluate("document.querySelector('#watch').scrollIntoView()")
    phone.screenshot(path=str(ARTIFACTS / "dashboard-390-watch.png"))

    # --- a strategy run: the baseline preset with FedProx; only its parameters are shown ---------
    page.select_option("#f-preset", "baseline")
    page.select_option("#f-strategy", "fedprox")
    expect(page.locator("#f-proximal_mu")).to_be_visible()
    expect(page.locator("#f-trim_beta")).to_be_hidden()
    page.select_option("#f-strategy", "fedtrimmedavg")
    expect(page.locator("#f-trim_beta")).to_be_visible()
    expect(page.locator("#f-proximal_mu")).to_be_hidden()
    # only the chosen partition's parameters are shown (GET /partitions)
    page.select_option("#f-dataset", "digits")
    page.select_option("#f-partition", "pathological")
    expect(page.locator("#f-num_classes_per_partition")).to_be_visible()
    expect(page.locator("#f-dirichlet_alpha")).to_be_hidden()
    expect(page.locator("#f-samples_per_client")).to_be_hidden()  # natural sizes
    page.select_option("#f-partition", "dirichlet")
    expect(page.locator("#f-dirichlet_alpha")).to_be_visible()
    expect(page.locator("#f-num_classes_per_partition")).to_be_hidden()
    # only the chosen scenario's parameters are shown (GET /scenarios)
    expect(page.locator("#f-drift_blocks")).to_be_hidden()  # static reads none
    page.select_option("#f-scenario", "drift")
    expect(page.locator("#f-drift_blocks")).to_be_visible()
    expect(page.locator("#f-num_tasks")).to_be_hidden()
    page.select_option("#f-scenario", "tasks")
    expect(page.locator("#f-num_tasks")).to_be_visible()
    expect(page.locator("#f-drift_kind")).to_be_hidden()
    page.select_option("#f-scenario", "static")
    page.select_option("#f-partition", "iid")
    page.select_option("#f-dataset", "synthetic")
    expect(page.locator("#f-samples_per_client")).to_be_visible()
    expect(page.locator("#f-partition")).to_be_hidden()  # synthetic data is not split
    page.select_option("#f-strategy", "fedprox")
    page.fill("#f-proximal_mu", "0.1")
    page.fill("#f-rounds", "3")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#sim-status")).to_have_text("succeeded", timeout=45_000)
    expect(page.locator('#charts [data-chart="loss"]')).to_have_attribute("data-points", "3")
    expect(page.locator("#heatmap-box")).to_be_hidden()  # the baseline has no insights
    # the clients' data chart: one bar per client (synthetic data: rows, no labels)
    clients_chart = page.locator('#clients-chart [data-chart="clients"]')
    expect(clients_chart).to_have_attribute("data-clients", "5")
    expect(clients_chart).to_have_attribute("data-labels", "0")
    config = page.evaluate(
        "async () => (await (await fetch('/simulations?limit=1')).json()).data[0].config"
    )
    assert (config["strategy"], config["proximal_mu"], config["expert_ensemble"]) == (
        "fedprox",
        0.1,
        False,
    )
    page.locator('[data-field="strategy"]').scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard-strategy.png"))

    # --- a labelled split: the clients × labels chart, one colour per class -------------------
    sim_id = page.evaluate(
        """async () => (await (await fetch('/simulations', {method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({preset: 'baseline', dataset: 'digits',
                partition: 'pathological', num_clients: 6, rounds: 1})})).json()).id"""
    )
    page.evaluate(f"watch('{sim_id}')")
    expect(page.locator("#sim-status")).to_have_text("succeeded", timeout=45_000)
    expect(clients_chart).to_have_attribute("data-clients", "6")
    expect(clients_chart).to_have_attribute("data-labels", "10")
    clients_chart.scroll_into_view_if_needed()
    clients_chart.screenshot(path=str(ARTIFACTS / "dashboard-clients.png"))

    # --- Swagger UI, served from the app's own files -------------------------------------------
    docs = _new_page(browser, log, 1400, 1000)
    docs.on("pageerror", lambda exc: errors.append(str(exc)))
    docs.goto(f"{server.url}/docs")
    post = docs.locator('.opblock-post .opblock-summary-path[data-path="/simulations"]')
    expect(post).to_be_visible()
    expect(docs.locator('.opblock-get .opblock-summary-path[data-path="/presets"]')).to_be_visible()
    docs.screenshot(path=str(ARTIFACTS / "docs-1400x1000.png"))

    # --- nothing left the machine ----------------------------------------------------------------
    assert log.urls, "no requests were recorded"
    assert any(urlsplit(u).path == "/static/vendor/uplot/uPlot.iife.min.js" for u in log.urls)
    assert any(u.endswith("/swagger-ui-bundle.js") for u in log.urls)
    assert not log.foreign, f"requests left 127.0.0.1: {sorted(set(log.foreign))}"
    assert not errors, f"JavaScript errors: {errors}"
    for p in (page, phone, docs):
        p.context.close()


def test_dashboard_asks_for_an_api_key_once_per_session(browser: Browser, tmp_path: Path) -> None:
    server = _start_server(tmp_path, api_keys="key-one,key-two")
    log = RequestLog()
    try:
        page = _new_page(browser, log, 1400, 1000)
        dialog = page.locator("#key-dialog")
        page.goto(f"{server.url}/")
        expect(dialog).to_be_visible()
        page.fill("#key-input", "wrong-key")
        page.get_by_role("button", name="Use key").click()
        expect(page.locator("#key-error")).to_contain_text("refused")
        page.fill("#key-input", "key-two")
        page.get_by_role("button", name="Use key").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#f-preset option")).to_have_count(9)

        # The key rides along on every call, the fetch-streamed events included.
        page.select_option("#f-preset", "stage2")
        page.fill("#f-num_clients", "2")
        page.fill("#f-rounds", "2")
        page.get_by_role("button", name="Run", exact=True).click()
        expect(page.locator("#sim-status")).to_have_text("succeeded", timeout=30_000)
        expect(page.locator('#charts [data-chart="loss"]')).to_have_attribute("data-points", "2")
        expect(page.locator("#sim-log")).to_contain_text("Round 2/2 loss=")
        expect(page.locator("#history-rows tr")).to_have_count(1)

        # Kept for the browser session: a reload asks no more.
        assert page.evaluate("sessionStorage.getItem('scarcity.apiKey')") == "key-two"
        page.reload()
        expect(page.locator("#f-preset option")).to_have_count(9)
        expect(page.locator("#history-rows tr")).to_have_count(1)
        expect(dialog).to_be_hidden()
        assert not log.foreign, f"requests left 127.0.0.1: {sorted(set(log.foreign))}"
        page.context.close()
    finally:
        server.stop()


def test_dashboard_names_runs_compares_by_what_differs_and_clones(
    browser: Browser, server: Server
) -> None:
    """History shows names, tags and the differing field; the compare legend names each run by
    it (not `813a4cae stage2 seed 0`); Clone fills the form with a run's settings."""
    import httpx

    from tests.service_processes import wait_for_status

    base = {"preset": "stage2", "num_clients": 2, "rounds": 2, "samples_per_client": 8}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        small = client.post(
            "/simulations", json=base | {"name": "lr small", "tags": {"study": "lr"}}
        ).json()
        large = client.post("/simulations", json=base | {"learning_rate": 0.1}).json()
        for sim in (small, large):
            wait_for_status(client, sim["id"], {"succeeded"})
    ARTIFACTS.mkdir(exist_ok=True)
    log = RequestLog()
    errors: list[str] = []
    page = _new_page(browser, log, 1400, 1000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/")
    expect(page.locator("#filter-preset option")).to_have_count(10)
    page.select_option("#filter-preset", "stage2")  # only these two runs are stage2
    small_row = page.locator(f'#history-rows tr[data-id="{small["id"]}"]')
    large_row = page.locator(f'#history-rows tr[data-id="{large["id"]}"]')
    expect(small_row.locator("td.run")).to_contain_text("lr small")
    expect(small_row.locator("td.run .tag")).to_have_text("study=lr")
    expect(large_row.locator("td.run")).to_contain_text(large["id"][:8])
    expect(small_row.locator("td.differs")).to_have_text("learning_rate=0.01")
    expect(large_row.locator("td.differs")).to_have_text("learning_rate=0.1")

    small_row.locator("input[type=checkbox]").check()
    large_row.locator("input[type=checkbox]").check()
    page.click("#compare-button")
    legend = page.locator("#compare-chart .u-legend")
    expect(legend).to_contain_text("lr small · learning_rate=0.01")
    expect(legend).to_contain_text("learning_rate=0.1")
    assert "seed" not in legend.inner_text()
    expect(page.locator("#compare-hint")).to_have_text("Differing: learning_rate.")
    expect(page.locator('#compare-chart [data-chart="compare"]')).to_have_attribute(
        "data-points", "2"
    )
    page.locator("#compare").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard-compare.png"))

    small_row.get_by_role("button", name="Clone").click()
    expect(page.locator("#form-note")).to_contain_text("Cloned from lr small")
    expect(page.locator("#f-name")).to_have_value("lr small copy")
    expect(page.locator("#f-tags")).to_have_value("study=lr")
    large_row.get_by_role("button", name="Clone").click()
    expect(page.locator("#f-preset")).to_have_value("stage2")
    expect(page.locator("#f-learning_rate")).to_have_value("0.1")
    expect(page.locator("#f-num_clients")).to_have_value("2")
    page.fill("#f-tags", "study=lr, copy=yes")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#sim-status")).to_have_text("succeeded", timeout=45_000)
    newest = page.evaluate(
        "async () => (await (await fetch('/simulations?limit=1')).json()).data[0]"
    )
    assert newest["id"] not in (small["id"], large["id"])
    for field in ("learning_rate", "num_clients", "rounds", "samples_per_client"):
        assert newest["config"][field] == large["config"][field], field
    assert newest["tags"] == {"study": "lr", "copy": "yes"}
    assert not log.foreign, f"requests left 127.0.0.1: {sorted(set(log.foreign))}"
    assert not errors, f"JavaScript errors: {errors}"
    page.context.close()


def test_dashboard_lists_sweeps_and_sorts_their_results(browser: Browser, server: Server) -> None:
    import httpx

    request = {
        "name": "dash sweep",
        "base": {"preset": "stage2", "num_clients": 2, "rounds": 2, "samples_per_client": 8},
        "space": {"learning_rate": {"values": [0.05, 0.001, 0.2]}},
        "seeds": [0, 1],
    }
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sweep = client.post("/sweeps", json=request).json()
        deadline = time.monotonic() + 90
        while client.get(f"/sweeps/{sweep['id']}").json()["status"] == "running":
            assert time.monotonic() < deadline, "sweep did not finish"
            time.sleep(0.3)
        rows = client.get(f"/sweeps/{sweep['id']}/results").json()["rows"]
    means = {row["params"]["learning_rate"]: row["metrics"]["test_loss"]["mean"] for row in rows}
    ascending = [str(lr) for lr in sorted(means, key=means.__getitem__)]
    log = RequestLog()
    errors: list[str] = []
    page = _new_page(browser, log, 1400, 1000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/")
    row = page.locator(f'#sweep-rows tr[data-id="{sweep["id"]}"]')
    expect(row).to_contain_text("dash sweep")
    expect(row.locator("td.progress")).to_have_text("6/6 succeeded")
    expect(row.locator(".status")).to_have_text("finished")
    row.get_by_role("button", name="Results").click()
    table = page.locator("#sweep-results tbody tr")
    expect(table).to_have_count(3)
    first_column = page.locator("#sweep-results tbody tr td:first-child")
    expect(first_column).to_have_text(["0.05", "0.001", "0.2"])  # the sweep's order
    page.locator('#sweep-results th[data-key="metric:test_loss"] button').click()
    expect(first_column).to_have_text(ascending)
    expect(page.locator('#sweep-results th[data-key="metric:test_loss"]')).to_have_attribute(
        "aria-sort", "ascending"
    )
    page.locator('#sweep-results th[data-key="metric:test_loss"] button').click()
    expect(first_column).to_have_text(ascending[::-1])
    expect(page.locator("#sweep-results tbody tr").first.locator("td").nth(3)).to_contain_text("±")
    # config → final metric as parallel coordinates (ECharts): one line per configuration
    parallel = page.locator("#sweep-parallel-box")
    expect(parallel).to_have_attribute("data-lines", str(len(rows)))
    drawn = page.evaluate(
        "() => { const o = echarts.getInstanceByDom(document.querySelector('#sweep-parallel'))"
        ".getOption(); return [o.series[0].data.length, o.parallelAxis.map((a) => a.name)]; }"
    )
    assert drawn[0] == len(rows) and drawn[1][0] == "learning_rate", drawn
    # the colour scale's ends read the metric's values ("1.63", "2.41"), not rounded integers
    scale = page.evaluate(
        "() => { const v = echarts.getInstanceByDom(document.querySelector('#sweep-parallel'))"
        ".getOption().visualMap[0];"
        " return [v.min, v.max, v.formatter(v.min), v.formatter(v.max)]; }"
    )
    for value, label in zip(scale[:2], scale[2:], strict=True):
        assert abs(float(label) - value) <= 1e-4 * max(1.0, abs(value)), scale
    page.select_option("#sweep-metric", "test_loss")
    expect(parallel).to_have_attribute("data-metric", "test_loss")
    expect(parallel).to_have_attribute("data-lines", str(len(rows)))
    parallel.screenshot(path=str(ARTIFACTS / "dashboard-sweep-parallel.png"))
    page.locator("#sweeps").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard-sweep.png"))
    assert not log.foreign, f"requests left 127.0.0.1: {sorted(set(log.foreign))}"
    assert not errors, f"JavaScript errors: {errors}"
    page.context.close()


def _legend_value(page: Page, chart: str, series: int) -> str:
    return (
        page.locator(f'#charts [data-chart="{chart}"] .u-legend .u-series')
        .nth(series)
        .locator(".u-value")
        .inner_text()
    )


def _dataset(page: Page, selector: str) -> dict[str, str]:
    return page.evaluate(f"() => ({{...document.querySelector('{selector}').dataset}})")


def test_dashboard_charts_zoom_log_smooth_and_scale_to_1000_clients(
    browser: Browser, server: Server
) -> None:
    """A stage 6 run of 1,000 clients × 21 rounds (~5 s): the line charts zoom by dragging and
    reset on a double click, switch the y axis to log and smooth with the raw value in the hover;
    the page summarises its 500 gossip pairs a round and bins the 21,000-cell heatmap (above
    20,000) with a notice; the history edits tags and notes in place and shows a bad filter's
    422 by its box; the form's 422 sits by the field and its summary by the Run button."""
    import httpx

    from tests.service_processes import wait_for_status

    with httpx.Client(base_url=server.url, timeout=30) as client:
        big = client.post(
            "/simulations",
            json={"preset": "stage6", "num_clients": 1000, "rounds": 21, "samples_per_client": 8},
        ).json()
        wait_for_status(client, big["id"], {"succeeded"}, timeout=180)
        rounds = client.get(f"/simulations/{big['id']}/metrics").json()["rounds"]
    last_pairs = rounds[-1]["gossip_pairs"]
    assert len(last_pairs) > 50, "the run must make more gossip pairs than the page lists"
    ARTIFACTS.mkdir(exist_ok=True)
    log = RequestLog()
    errors: list[str] = []
    page = _new_page(browser, log, 1400, 1000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/#sim={big['id']}")
    expect(page.locator("#sim-status")).to_have_text("succeeded", timeout=45_000)
    loss = page.locator('#charts [data-chart="loss"]')
    expect(loss).to_have_attribute("data-points", "21")
    heatmap = page.locator("#heatmap-box")
    expect(heatmap).to_be_visible(timeout=60_000)

    # --- zoom: drag across the middle of the loss chart, then a double click resets it -------
    full = _dataset(page, '#charts [data-chart="loss"]')
    assert (float(full["xMin"]), float(full["xMax"])) == (1.0, 21.0), full
    over = loss.locator(".u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    page.mouse.up()
    zoomed = _dataset(page, '#charts [data-chart="loss"]')
    x_min, x_max = float(zoomed["xMin"]), float(zoomed["xMax"])
    assert 5 < x_min < x_max < 15 and x_max - x_min < 10, zoomed
    page.mouse.dblclick(box["x"] + box["width"] * 0.5, y)
    reset = _dataset(page, '#charts [data-chart="loss"]')
    assert (float(reset["xMin"]), float(reset["xMax"])) == (1.0, 21.0), reset

    # --- hover shows each value; smoothing keeps the raw one in the legend ---------------------
    page.select_option('#charts [data-chart="loss"] select.chart-smoothing', "0.9")
    expect(loss).to_have_attribute("data-smoothing", "0.9")
    page.mouse.move(box["x"] + box["width"] * 0.75, y)
    hovered = int(_legend_value(page, "loss", 0))
    series = loss.get_attribute("data-series").split(",")
    shown = _legend_value(page, "loss", 1 + series.index("loss"))
    raw_text, ema_text = shown.split(" (EMA ")
    stored = next(r for r in rounds if r["round"] == hovered)["metrics"]["loss"]
    assert abs(float(raw_text) - stored) <= 1e-4 * max(1.0, abs(stored)), (shown, stored)
    assert abs(float(ema_text.rstrip(")")) - stored) > 1e-4, shown  # the line is smoothed
    page.select_option('#charts [data-chart="loss"] select.chart-smoothing', "0")

    # --- log y: offered only when every value is above 0; the axis becomes uPlot's distr 3 ---
    log_box = loss.locator("input.chart-log")
    expect(log_box).to_be_enabled()
    linear = _dataset(page, '#charts [data-chart="loss"]')
    assert linear["yDistr"] == "1"
    log_box.check()
    expect(loss).to_have_attribute("data-y-distr", "3")
    logged = _dataset(page, '#charts [data-chart="loss"]')
    y_lo, y_hi = float(logged["yMin"]), float(logged["yMax"])
    low = min(r["metrics"]["loss"] for r in rounds)
    high = max(r["metrics"]["loss"] for r in rounds)
    # a log range is whole decades around the data, unlike the linear one
    assert (
        0 < y_lo <= low
        and y_hi >= high
        and (y_lo, y_hi)
        != (
            float(linear["yMin"]),
            float(linear["yMax"]),
        )
    ), (logged, linear)
    loss.screenshot(path=str(ARTIFACTS / "dashboard-chart-log.png"))
    drift_values = [r["metrics"]["drift"] for r in rounds if "drift" in r["metrics"]]
    if drift_values and min(drift_values) <= 0:  # stage 6 reports drift 0: no log offered
        expect(page.locator('#charts [data-chart="drift"] input.chart-log')).to_be_disabled()
    log_box.uncheck()
    expect(loss).to_have_attribute("data-y-distr", "1")

    # --- 1,000 clients: the pairs are counted and sampled, the full list a link away ----------
    gossip = page.locator("#gossip-latest")
    expect(gossip).to_have_attribute("data-pairs", str(len(last_pairs)))
    expect(gossip).to_contain_text(f"{len(last_pairs)} pairs (")
    assert gossip.inner_text().count("↔") == 10
    href = gossip.locator("a.all-pairs").get_attribute("href")
    served = page.evaluate(f"async () => (await (await fetch('{href}')).json())")
    assert served["rounds"][0]["gossip_pairs"] == last_pairs
    assert page.locator("#gossip-latest").bounding_box()["height"] < 120
    expect(page.locator("#uncertainty-latest")).to_contain_text("clients (")
    parts = page.evaluate(
        "() => [...document.querySelectorAll('#watch-body > *')].map((n) => [n.id || n.tagName,"
        " n.getBoundingClientRect().height])"
    )
    # What grows with the clients stays bounded: the panel apart from the metric charts (their
    # number follows the metrics a run reports, e.g. its bytes, not its clients) under
    # 1,400 px, and each chart shown under 400 px.
    height = sum(h for name, h in parts if name != "charts")
    assert height < 1400, f"the 1,000-client run's panel is {height}px tall: {parts}"
    charts = page.locator("#charts [data-chart]:visible")
    heights = [charts.nth(i).bounding_box()["height"] for i in range(charts.count())]
    assert heights and max(heights) < 400, heights

    # --- the heatmap above 20,000 cells: bins of 2 clients, and a notice saying so -----------
    expect(page.locator("#heatmap-notice")).to_contain_text("bin of 2 consecutive clients")
    expect(heatmap).to_have_attribute("data-bin", "2")
    expect(heatmap).to_have_attribute("data-cells", str(500 * 21))
    drawn = page.evaluate(
        """() => { const c = echarts.getInstanceByDom(document.querySelector('#heatmap'));
             const o = c.getOption(); const v = o.visualMap[0];
             return {clients: o.yAxis[0].data, rounds: o.xAxis[0].data,
                     ends: [v.formatter(v.min), v.formatter(v.max)], min: v.min, max: v.max}; }"""
    )
    assert len(drawn["clients"]) == 500 and drawn["clients"][1] == "2–3", drawn["clients"][:3]
    # the colour scale reads the values, not integers: "0.8049", not "1"
    assert drawn["ends"][0] != drawn["ends"][1], drawn
    assert abs(float(drawn["ends"][0]) - drawn["min"]) < 1e-3 * max(1, abs(drawn["min"])), drawn
    heatmap.scroll_into_view_if_needed()
    heatmap.screenshot(path=str(ARTIFACTS / "dashboard-heatmap-binned.png"))
    page.evaluate("document.querySelector('#watch').scrollIntoView()")
    page.screenshot(path=str(ARTIFACTS / "dashboard-1000-clients.png"), full_page=True)

    # --- history: tags and notes edited in place, stored through PATCH ------------------------
    row = page.locator(f'#history-rows tr[data-id="{big["id"]}"]')
    row.get_by_role("button", name="Edit").click()
    editor = page.locator(f'#history-rows tr.edit-row[data-edit="{big["id"]}"]')
    editor.locator('input[name="tags"]').fill("study=scale, size=1000")
    editor.locator('textarea[name="notes"]').fill("a thousand clients")
    editor.get_by_role("button", name="Save").click()
    expect(editor).to_have_count(0)
    expect(row.locator(".tag")).to_have_text(["study=scale", "size=1000"])
    expect(row.locator(".run-notes")).to_have_text("a thousand clients")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        stored_sim = client.get(f"/simulations/{big['id']}").json()
    assert stored_sim["tags"] == {"study": "scale", "size": "1000"}
    assert stored_sim["notes"] == "a thousand clients"
    row.get_by_role("button", name="Edit").click()
    editor.locator('input[name="tags"]').fill("study=scale")  # size removed: sent as null
    editor.get_by_role("button", name="Save").click()
    expect(row.locator(".tag")).to_have_text(["study=scale"])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get(f"/simulations/{big['id']}").json()["tags"] == {"study": "scale"}
        bad = client.get("/simulations", params={"filter": "config.bogus = 1"})
    assert bad.status_code == 422
    message = bad.json()["detail"][0]["message"]

    # --- the filter box: the server's 422 by the box, then a filter that matches --------------
    page.fill("#filter-query", "config.bogus = 1")
    page.press("#filter-query", "Enter")
    expect(page.locator("#filter-error")).to_contain_text(message)
    expect(page.locator("#filter-form")).to_have_class("filter-form invalid")
    page.locator("#history").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard-filter-error.png"))
    page.fill("#filter-query", "tags.study = 'scale'")
    page.press("#filter-query", "Enter")
    expect(page.locator("#filter-error")).to_be_empty()
    expect(page.locator("#history-rows tr")).to_have_count(1)
    expect(page.locator("#history-rows tr").first).to_have_attribute("data-id", big["id"])

    # --- the form: each 422 by its field, the summary by the Run button -----------------------
    page.select_option("#f-preset", "baseline")
    page.fill("#f-num_clients", "0")
    page.fill("#f-rounds", "0")
    page.get_by_role("button", name="Run", exact=True).click()
    for field in ("num_clients", "rounds"):
        expect(page.locator(f'[data-field="{field}"] .field-error')).to_contain_text(
            "greater than or equal to 1"
        )
    summary = page.locator("#form-error")
    expect(summary.locator("button.link")).to_have_text(["Clients", "Rounds"])
    run_box = page.locator("#run-button").bounding_box()
    summary_box = summary.bounding_box()
    assert run_box and summary_box
    gap = summary_box["y"] - (run_box["y"] + run_box["height"])
    assert -run_box["height"] <= gap < 40, (run_box, summary_box)  # beside it or just under
    summary.locator("button.link").first.click()
    expect(page.locator("#f-num_clients")).to_be_focused()
    page.locator("#run-form .form-actions").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard-form-errors.png"))

    assert not log.foreign, f"requests left 127.0.0.1: {sorted(set(log.foreign))}"
    assert not errors, f"JavaScript errors: {errors}"
    page.context.close()
