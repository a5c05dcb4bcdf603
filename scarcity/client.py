"""A Python client of the Scarcity service (httpx): submit, wait, stream, fetch, sweep.

    from scarcity.client import ScarcityClient

    with ScarcityClient("http://127.0.0.1:8000") as api:
        run = api.submit("baseline", dataset="digits", partition="dirichlet", rounds=20,
                         name="fedavg α=0.5", tags={"study": "alpha"})
        for round_ in api.rounds(run["id"]):        # live, as the worker stores them
            print(round_["round"], round_["metrics"]["test_accuracy"])
        api.metrics(run["id"], frame=True)          # a pandas DataFrame when pandas is there

Errors of the service raise `ScarcityError` with its status and detail (a 422 names the
field). This module speaks HTTP only; the engine itself is `scarcity.Simulation`.
"""

from __future__ import annotations

import builtins
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import connect_sse

FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class ScarcityError(Exception):
    """The service refused a request: `status` (HTTP) and `detail` (its message or fields)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


def _frame(rows: list[dict[str, Any]]) -> Any:
    try:
        import pandas  # optional: only for frame=True
    except ImportError as error:
        raise ImportError(
            "frame=True needs pandas: pip install 'scarcity[pandas]' (or pandas itself)"
        ) from error
    return pandas.json_normalize(rows)


class ScarcityClient:
    """One connection to the service; `api_key` for a server with API keys."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> ScarcityClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ScarcityError(response.status_code, detail)
        return response

    # -- simulations ---------------------------------------------------------------------
    def submit(
        self,
        preset: str = "stage8",
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        notes: str | None = None,
        idempotency_key: str | None = None,
        **config: Any,
    ) -> dict[str, Any]:
        """Queue a simulation: a preset plus config overrides; its resource (status queued)."""
        body: dict[str, Any] = {"preset": preset, **config}
        body |= {k: v for k, v in (("name", name), ("tags", tags), ("notes", notes)) if v}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return dict(self._call("POST", "/simulations", json=body, headers=headers).json())

    def get(self, simulation_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/simulations/{simulation_id}").json())

    def list(
        self,
        *,
        filter: str | None = None,
        order_by: str | None = None,
        status: str | None = None,
        page_size: int = 50,
    ) -> Iterator[dict[str, Any]]:
        """Every matching simulation (newest first unless `order_by`), page after page."""
        params: dict[str, Any] = {"limit": page_size}
        params |= {
            k: v for k, v in (("filter", filter), ("order_by", order_by), ("status", status)) if v
        }
        while True:
            page = self._call("GET", "/simulations", params=params).json()
            yield from page["data"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def update(self, simulation_id: str, **changes: Any) -> dict[str, Any]:
        """Set `name`, `tags` (merged key by key; None removes one) or `notes`."""
        return dict(self._call("PATCH", f"/simulations/{simulation_id}", json=changes).json())

    def cancel(self, simulation_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/simulations/{simulation_id}/cancel").json())

    def delete(self, simulation_id: str) -> None:
        self._call("DELETE", f"/simulations/{simulation_id}")

    # -- following a run -----------------------------------------------------------------
    def rounds(self, simulation_id: str, after_round: int = 0) -> Iterator[dict[str, Any]]:
        """Each stored round (metrics, expert usage, gossip pairs, participants) as it is
        written, from the event stream; ends when the run ends (`get` then has its final
        status)."""
        headers = {"Last-Event-ID": str(after_round)}
        path = f"/simulations/{simulation_id}/events"
        with connect_sse(self.http, "GET", path, headers=headers, timeout=None) as source:
            if source.response.status_code >= 400:
                source.response.read()
                raise ScarcityError(source.response.status_code, source.response.text)
            for event in source.iter_sse():
                if event.event == "round":
                    yield event.json()
                elif event.event == "end":
                    return

    def wait(
        self, simulation_id: str, timeout: float | None = None, progress: bool = False
    ) -> dict[str, Any]:
        """Follow the run to its end (a tqdm bar with `progress`); its final resource. A
        `timeout` polls instead of streaming and raises TimeoutError when it passes."""
        if timeout is None:
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=self.get(simulation_id)["progress"]["rounds_total"], unit="round")
            for _ in self.rounds(simulation_id):
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            return self.get(simulation_id)
        deadline = time.monotonic() + timeout
        while True:
            resource = self.get(simulation_id)
            if resource["status"] in FINISHED:
                return resource
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulation {simulation_id} still {resource['status']}")
            time.sleep(0.2)

    # -- results -------------------------------------------------------------------------
    def metrics(self, simulation_id: str, *, frame: bool = False) -> Any:
        """One row per round: `round`, every metric and, in a round that drew fewer than all
        clients, `participants` (their ids; a DataFrame with `frame`, the column empty where
        every client took part)."""
        rounds = self._call("GET", f"/simulations/{simulation_id}/metrics").json()["rounds"]
        rows = [
            {
                "round": r["round"],
                **r["metrics"],
                **({} if r.get("participants") is None else {"participants": r["participants"]}),
            }
            for r in rounds
        ]
        return _frame(rows) if frame else rows

    def insights(
        self,
        simulation_id: str,
        *,
        round: int | None = None,
        client_id: int | None = None,
        frame: bool = False,
    ) -> Any:
        """Per-client insights (flattened into columns with `frame`)."""
        params = {k: v for k, v in (("round", round), ("client_id", client_id)) if v is not None}
        rows, offset = [], 0
        while True:
            page = self._call(
                "GET",
                f"/simulations/{simulation_id}/insights",
                params={**params, "offset": offset, "limit": 1000},
            ).json()["insights"]
            rows += [{"round": i["round"], **i["insight"]} for i in page]
            if len(page) < 1000:
                if not rows:
                    self._say_why_no_insights(simulation_id)
                return _frame(rows) if frame else rows
            offset += len(page)

    def _say_why_no_insights(self, simulation_id: str) -> None:
        """An empty answer is right for a run whose clients send no insights; say so, rather
        than hand back an empty table without a word."""
        config = self.get(simulation_id)["config"]
        if not (config.get("insight_exchange") or config.get("meta_learning")):
            warnings.warn(
                f"simulation {simulation_id} stores no insights: its clients send none "
                f"(preset {config.get('preset')}: insight_exchange is off; stage3 and later "
                "send them)",
                stacklevel=3,
            )

    def clients(self, simulation_id: str, *, frame: bool = False) -> Any:
        """What each client holds: rows, held-out rows, label histogram or target moments."""
        rows = self._call("GET", f"/simulations/{simulation_id}/clients").json()["clients"]
        return _frame(rows) if frame else rows

    def model(
        self,
        simulation_id: str,
        round: int,
        *,
        client_id: int | None = None,
        format: str = "safetensors",
    ) -> bytes:
        """The global model (or a client's experts) after `round`, as the file's bytes:
        `safetensors` (`safetensors.torch.load(data)`) or `torch` (a state dict,
        `torch.load(io.BytesIO(data), weights_only=True)`). The service recomputes the run up
        to that round, so this can take as long as those rounds took."""
        params: dict[str, Any] = {"round": round, "format": format}
        if client_id is not None:
            params["client_id"] = client_id
        path = f"/simulations/{simulation_id}/model"
        timeout = httpx.Timeout(self.http.timeout.read, read=None)  # no bound on the replay
        return self._call("GET", path, params=params, timeout=timeout).content

    def model_architecture(
        self, simulation_id: str, round: int, *, client_id: int | None = None
    ) -> dict[str, Any]:
        """What `model` returns for the same query: the backbone (name, its config fields,
        input and output dims), the task and every tensor's name, shape and dtype."""
        params: dict[str, Any] = {"round": round}
        if client_id is not None:
            params["client_id"] = client_id
        path = f"/simulations/{simulation_id}/model/architecture"
        return dict(self._call("GET", path, params=params).json())

    def compare(self, *simulation_ids: str) -> dict[str, Any]:
        """The config fields that differ and every metric's series aligned by round."""
        params = {"ids": ",".join(simulation_ids)}
        return dict(self._call("GET", "/compare", params=params).json())

    # -- data sets ----------------------------------------------------------------------
    def upload_dataset(
        self,
        path: str | os.PathLike[str],
        label: str,
        *,
        client_column: str | None = None,
        test_fraction: float | None = None,
        task: str | None = None,
    ) -> dict[str, Any]:
        """Upload a CSV, Parquet or .npz file; its description, whose `id` (`ds_…`) a config's
        `dataset` takes. The same bytes with the same options give the same id again."""
        fields = {"label": label, "client_column": client_column, "task": task}
        data = {k: v for k, v in fields.items() if v is not None}
        if test_fraction is not None:
            data["test_fraction"] = repr(float(test_fraction))
        with open(path, "rb") as file:
            files = {"file": (os.path.basename(path), file, "application/octet-stream")}
            return dict(self._call("POST", "/datasets", data=data, files=files).json())

    def datasets(self) -> builtins.list[dict[str, Any]]:
        """The built-in data sets and your uploads."""
        return list(self._call("GET", "/datasets").json())

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/datasets/{dataset_id}").json())

    def delete_dataset(self, dataset_id: str) -> None:
        self._call("DELETE", f"/datasets/{dataset_id}")

    # -- sweeps --------------------------------------------------------------------------
    def sweep(
        self,
        base: Mapping[str, Any],
        space: Mapping[str, Any],
        *,
        seeds: Sequence[int] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Start a grid or random search (`method`, `run_cap`, `max_concurrent`, …)."""
        body = {"base": dict(base), "space": dict(space), **options}
        if seeds is not None:
            body["seeds"] = [*seeds]
        return dict(self._call("POST", "/sweeps", json=body).json())

    def sweep_status(self, sweep_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/sweeps/{sweep_id}").json())

    def sweep_results(self, sweep_id: str, *, frame: bool = False) -> Any:
        """One row per configuration: the varied fields, mean ± std of the final metrics."""
        rows = self._call("GET", f"/sweeps/{sweep_id}/results").json()["rows"]
        return _frame(rows) if frame else rows
