"""Insight assembly (seed stage 3), per client and stacked: what a round measured, as insights.

`ClientRound` is what one client measured in its last round (floats) and `client_insight`
its insight; `PoolRound` is the same for every client (float64 [N] tensors), `build_insights`
turns it into every client's insight in one pass (only when a consumer needs them: insight
exchange or the meta-learner), and `statistics` is `Server.aggregate_insights` computed from
the tensors. Both rounds hold the means of the training report (`ROUND_KEYS`); an insight's
per-client figures are computed from them as `scarcity.results.CLIENT_FIGURES` declares.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import Any, TypeVar

import torch
from torch import Tensor

from scarcity.components.training import SUPERVISED_KEYS
from scarcity.results import CLIENT_FIGURES, ExpertReport, Insight

__all__ = [
    "ROUND_KEYS",
    "SSL_KEYS",
    "SUPERVISED_KEYS",
    "ClientRound",
    "PoolRound",
    "build_insights",
    "check_finite",
    "client_insight",
    "statistics",
]

#: The round's means (`ClientRound` / `PoolRound` attributes) ← the key of the training report
#: each is the mean of (the shared model's, else the trained experts'): every key of it, its
#: `train_loss` as the round's `loss`. The insight's figures are computed from these.
ROUND_KEYS = {"loss": "train_loss", **{k: k for k in SUPERVISED_KEYS if k != "train_loss"}}

#: The self-supervised metrics of every expert (`PoolRound.ssl`), in the insight's order.
SSL_KEYS = ("initial_recon_loss", "recon_loss", "mean_grad")

T = TypeVar("T")


class _Means:
    """A round's means, read as attributes (`r.loss`, `r.initial_loss`, …, `ROUND_KEYS`)."""

    means: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["means"][name]
        except KeyError:
            raise AttributeError(name) from None


class ClientRound(_Means):
    """What a client measured in its last round (plain floats; zeros before the first)."""

    def __init__(
        self,
        selected_expert: str = "all",
        expert_metrics: dict[str, dict[str, float]] | None = None,
        summaries: dict[str, dict[str, float]] | None = None,
        **means: float,
    ) -> None:
        self.means: dict[str, float] = {name: 0.0 for name in ROUND_KEYS} | means
        self.selected_expert = selected_expert
        self.expert_metrics = expert_metrics if expert_metrics is not None else {}
        self.summaries = summaries if summaries is not None else {}


def client_insight(client_id: int, r: ClientRound) -> Insight:
    """One client's structured insight of its round: learning metadata, no weights."""
    experts = {
        name: ExpertReport(dict(r.expert_metrics.get(name, {})), dict(summary))
        for name, summary in r.summaries.items()
    }
    figures = (f.compute(r) for f in CLIENT_FIGURES.values())
    return Insight.of(client_id, *figures, r.selected_expert, experts)


class PoolRound(_Means):
    """What every client measured in the last round (float64 tensors, one row per client)."""

    def __init__(
        self,
        *,
        selected: Tensor | None,
        supervised: dict[str, Tensor],
        ssl: dict[str, Tensor] | None,
        replay_error: Tensor | None,
        summaries: dict[str, Tensor],
        **means: Tensor,
    ) -> None:
        #: The round's means [N] (`ROUND_KEYS`).
        self.means: dict[str, Tensor] = means
        self.selected = selected  # [N] expert index when routing
        self.supervised = supervised  # key → [N, J] (J = 1 with routing, K without)
        self.ssl = ssl  # initial_recon_loss, recon_loss, mean_grad → [N, K]
        self.replay_error = replay_error  # [N], with self-supervised training
        self.summaries = summaries  # "Expert.key" → [N]

    @classmethod
    def of(
        cls,
        shared: dict[str, Tensor] | None,
        supervised: dict[str, Tensor],
        label_free: dict[str, Tensor] | None,
        selected: Tensor | None,
        ssl: dict[str, Tensor] | None,
        replay_error: Tensor | None,
        summaries: dict[str, Tensor],
    ) -> PoolRound:
        """A round's figures as `Client.train_round` takes them: the shared model's report
        (FedAvg), else the self-supervised one (`label_free`), else the mean of the heads'."""
        if shared is not None:
            source = shared
        elif label_free is not None:
            source = label_free
        else:
            source = {key: value.mean(dim=1) for key, value in supervised.items()}
        return cls(
            **{field: source[key] for field, key in ROUND_KEYS.items()},
            selected=selected,
            supervised=supervised,
            ssl=ssl,
            replay_error=replay_error,
            summaries=summaries,
        )

    def selected_names(self, names: Sequence[str]) -> list[str]:
        if self.selected is None:
            return ["all"] * len(self.loss)
        return [names[i] for i in self.selected.tolist()]

    def lines(self, names: Sequence[str], ids: Sequence[int]) -> list[tuple[int, float, str]]:
        """(client id, loss, selected expert) of every client, for the round log."""
        return list(zip(ids, self.loss.tolist(), self.selected_names(names), strict=True))

    def usage(self, names: Sequence[str]) -> dict[str, int]:
        """How many clients trained each expert (routing on)."""
        assert self.selected is not None
        counts = torch.bincount(self.selected, minlength=len(names)).tolist()
        return dict(zip(names, counts, strict=True))


def statistics(r: PoolRound, has_memory: bool) -> dict[str, float]:
    """`Server.aggregate_insights` from the tensors (no per-client dicts)."""
    s = r.summaries
    result = {
        "data_mean": float(s["StructureExpert.mean"].mean()),
        "data_std": float(s["StructureExpert.std"].mean()),
        "drift": float(s["DriftExpert.drift"].mean()),
        "avg_uncertainty": float(r.uncertainty.mean()),
    }
    if has_memory:
        result["replay_error"] = float(s["MemoryConsolidationExpert.avg_replay_error"].mean())
    if r.ssl is not None:
        result["recon_loss"] = float(r.ssl["recon_loss"].mean())
    return result


def check_finite(r: PoolRound, fail: Callable[[str], None]) -> None:
    """Call `fail(path)` for the first quantity of the round that is NaN or inf."""
    named: list[tuple[str, Tensor | None]] = list(r.means.items())
    named += [(f"experts.metrics.{key}", t) for key, t in r.supervised.items()]
    named += [(f"experts.metrics.{key}", t) for key, t in (r.ssl or {}).items()]
    named.append(("experts.MemoryConsolidationExpert.metrics.replay_error", r.replay_error))
    named += [(f"experts.{key.replace('.', '.summary.', 1)}", t) for key, t in r.summaries.items()]
    tensors = [t.reshape(-1).double() for _, t in named if t is not None]
    if not tensors or bool(torch.isfinite(torch.cat(tensors)).all()):
        return  # one check for all: the usual case
    for path, tensor in named:
        if tensor is not None and not bool(torch.isfinite(tensor).all()):
            fail(path)


def build_insights(
    r: PoolRound, names: Sequence[str], memory: int | None, client_ids: Sequence[int] | None = None
) -> list[Insight]:
    """Every client's `Client.generate_insight()`, from the tensors in one pass.

    `client_ids`: the id of each row of `r` (the round's participants); None = 0, 1, ….

    The cyclic garbage collector is paused meanwhile: these dicts hold no cycles, and its
    full scans (over every insight the server keeps) would otherwise double the time.
    """
    with _gc_paused():
        return _build(r, names, memory, client_ids)


def _build(
    r: PoolRound, names: Sequence[str], memory: int | None, client_ids: Sequence[int] | None
) -> list[Insight]:
    # Column-wise: each expert's metrics and summaries of every client, then each client's
    # reports by zip (no per-client loop over the experts, no per-client key lookups).
    n = len(r.loss)
    columns = zip(names, _metrics(r, len(names), memory, n), _summaries(r, names, n), strict=True)
    reports = {name: list(map(ExpertReport.of, m, s)) for name, m, s in columns}
    figures = [f.compute(r).tolist() for f in CLIENT_FIGURES.values()]
    ids = range(n) if client_ids is None else client_ids
    return list(map(Insight.of, ids, *figures, r.selected_names(names), _rows(reports, n)))


def _metrics(
    r: PoolRound, experts: int, memory: int | None, n: int
) -> list[list[dict[str, float]]]:
    """Each expert's metrics of every client: `SUPERVISED_KEYS` where the client trained it
    supervised (every client without routing, its selected expert with), then `SSL_KEYS`
    (and `replay_error` for the memory expert) for every client with self-supervised training."""
    chosen = r.selected.tolist() if r.selected is not None else None
    routed = _supervised(r, 0, n) if chosen is not None and r.supervised else []
    result = []
    for e in range(experts):
        trained: Sequence[dict[str, float] | None]
        if not r.supervised:  # nothing trained supervised with label_free
            trained = [None] * n
        elif chosen is None:
            trained = _supervised(r, e, n)
        else:  # each client's dict goes to the one expert it selected
            trained = [m if c == e else None for m, c in zip(routed, chosen, strict=True)]
        own = _self_supervised(r, e, memory)
        if own:  # the supervised keys first, a shared key (`mean_grad`) valued as here
            rows = _rows(own, n)
            result.append([o if m is None else m | o for m, o in zip(trained, rows, strict=True)])
        else:
            result.append([{} if m is None else m for m in trained])
    return result


def _supervised(r: PoolRound, j: int, n: int) -> list[dict[str, float]]:
    """Every client's `SUPERVISED_KEYS` of column j of `r.supervised`."""
    return _rows({key: r.supervised[key][:, j].tolist() for key in SUPERVISED_KEYS}, n)


def _self_supervised(r: PoolRound, e: int, memory: int | None) -> dict[str, list[float]]:
    """Expert e's self-supervised columns (none without self-supervised training)."""
    if not r.ssl:
        return {}
    columns = {key: r.ssl[key][:, e].tolist() for key in SSL_KEYS}
    if e == memory and r.replay_error is not None:
        columns["replay_error"] = r.replay_error.tolist()
    return columns


def _summaries(r: PoolRound, names: Sequence[str], n: int) -> list[list[dict[str, float]]]:
    """Each expert's summary of every client (`r.summaries`' "Expert.key" columns)."""
    columns: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for key, value in r.summaries.items():
        expert, name = key.split(".", 1)
        columns[expert][name] = value.tolist()
    return [_rows(columns[name], n) for name in names]


def _rows(columns: Mapping[str, list[T]], n: int) -> list[dict[str, T]]:
    """Each of the n rows of `columns` as a dict, keys in the columns' order."""
    if not columns:
        return [{} for _ in range(n)]
    rows = zip(*columns.values(), strict=True)
    # zip by map: each row's zip unchecked (the lengths are one row's), a third faster.
    return list(map(dict, map(zip, repeat(tuple(columns)), rows)))


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
