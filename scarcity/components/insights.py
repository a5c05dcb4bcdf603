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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from scarcity.components.training import SUPERVISED_KEYS
from scarcity.results import CLIENT_FIGURES, ExpertReport, Insight

__all__ = [
    "ROUND_KEYS",
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
    selected = r.selected_names(names)
    chosen = r.selected.tolist() if r.selected is not None else None
    sup = {key: value.tolist() for key, value in r.supervised.items()}
    ssl = {key: value.tolist() for key, value in r.ssl.items()} if r.ssl else None
    replay = r.replay_error.tolist() if r.replay_error is not None else None
    summary_columns: list[list[tuple[str, list[float]]]] = [[] for _ in names]
    for key, value in r.summaries.items():
        expert, name = key.split(".", 1)
        summary_columns[list(names).index(expert)].append((name, value.tolist()))
    # Each expert's summary of every client, built by zip (not a comprehension per client).
    summaries: list[list[dict[str, float]]] = [
        [dict(zip(keys, row, strict=True)) for row in zip(*values, strict=True)]
        if keys
        else [{} for _ in range(len(selected))]
        for keys, values in (
            (tuple(k for k, _ in cols), [v for _, v in cols]) for cols in summary_columns
        )
    ]
    columns = [f.compute(r).tolist() for f in CLIENT_FIGURES.values()]
    result: list[Insight] = []
    for c, figures in enumerate(zip(*columns, strict=True)):
        experts: dict[str, ExpertReport] = {}
        for e, name in enumerate(names):
            metrics: dict[str, float] = {}
            j = e if chosen is None else (0 if chosen[c] == e else -1)
            if j >= 0 and sup:  # nothing trained supervised with label_free
                metrics = {key: sup[key][c][j] for key in SUPERVISED_KEYS}
            if ssl is not None:
                metrics["initial_recon_loss"] = ssl["initial_recon_loss"][c][e]
                metrics["recon_loss"] = ssl["recon_loss"][c][e]
                metrics["mean_grad"] = ssl["mean_grad"][c][e]
                if e == memory and replay is not None:
                    metrics["replay_error"] = replay[c]
            experts[name] = ExpertReport.of(metrics, summaries[e][c])
        client_id = c if client_ids is None else client_ids[c]
        result.append(Insight.of(client_id, *figures, selected[c], experts))
    return result


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
