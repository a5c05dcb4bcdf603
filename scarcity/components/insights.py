"""Insight assembly (seed stage 3), per client and stacked: what a round measured, as insights.

`ClientRound` is what one client measured in its last round (floats) and `client_insight`
its insight; `PoolRound` is the same for every client (float64 [N] tensors), `build_insights`
turns it into every client's insight in one pass (only when a consumer needs them: insight
exchange or the meta-learner), and `statistics` is `Server.aggregate_insights` computed from
the tensors.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from scarcity.results import ExpertReport, Insight

#: What a training call reports per model (`train_supervised`, `HeadStats`), in this order.
SUPERVISED_KEYS = ("initial_loss", "train_loss", "final_loss", "uncertainty", "mean_grad")
#: The client's own figures of a round (`ClientRound` / `PoolRound` fields) ← the key of the
#: training report they are the mean of (the shared model's, else the trained experts').
ROUND_KEYS = {
    "loss": "train_loss",
    "initial_loss": "initial_loss",
    "final_loss": "final_loss",
    "uncertainty": "uncertainty",
    "mean_grad": "mean_grad",
}


@dataclass
class ClientRound:
    """What a client measured in its last round (plain floats)."""

    loss: float = 0.0
    initial_loss: float = 0.0
    final_loss: float = 0.0
    uncertainty: float = 0.0
    mean_grad: float = 0.0
    selected_expert: str = "all"
    expert_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    summaries: dict[str, dict[str, float]] = field(default_factory=dict)


def client_insight(client_id: int, r: ClientRound) -> Insight:
    """One client's structured insight of its round: learning metadata, no weights."""
    return Insight(
        client_id=client_id,
        loss=r.loss,
        mean_grad=r.mean_grad,
        uncertainty=r.uncertainty,
        loss_improvement=r.initial_loss - r.final_loss,
        selected_expert=r.selected_expert,
        experts={
            name: ExpertReport(dict(r.expert_metrics.get(name, {})), dict(summary))
            for name, summary in r.summaries.items()
        },
    )


@dataclass(frozen=True)
class PoolRound:
    """What every client measured in the last round (float64 tensors, one row per client)."""

    loss: Tensor
    initial_loss: Tensor
    final_loss: Tensor
    uncertainty: Tensor
    mean_grad: Tensor
    selected: Tensor | None  # [N] expert index when routing
    supervised: dict[str, Tensor]  # key → [N, J] (J = 1 with routing, K without)
    ssl: dict[str, Tensor] | None  # initial_recon_loss, recon_loss, mean_grad → [N, K]
    replay_error: Tensor | None  # [N], with self-supervised training
    summaries: dict[str, Tensor]  # "Expert.key" → [N]

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
    named: list[tuple[str, Tensor | None]] = [
        (key, getattr(r, key))
        for key in ("loss", "initial_loss", "final_loss", "uncertainty", "mean_grad")
    ]
    named += [(f"experts.metrics.{key}", t) for key, t in r.supervised.items()]
    named += [(f"experts.metrics.{key}", t) for key, t in (r.ssl or {}).items()]
    named.append(("experts.MemoryConsolidationExpert.metrics.replay_error", r.replay_error))
    named += [(f"experts.{key.replace('.', '.summary.', 1)}", t) for key, t in r.summaries.items()]
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
    columns = [
        r.loss.tolist(),
        r.mean_grad.tolist(),
        r.uncertainty.tolist(),
        (r.initial_loss - r.final_loss).tolist(),
    ]
    result: list[Insight] = []
    for c, (loss, grad, uncertainty, improvement) in enumerate(zip(*columns, strict=True)):
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
            experts[name] = ExpertReport.of(
                metrics, {key: values[c] for key, values in summary_columns[e]}
            )
        result.append(
            Insight.of(
                client_id=c if client_ids is None else client_ids[c],
                loss=loss,
                mean_grad=grad,
                uncertainty=uncertainty,
                loss_improvement=improvement,
                selected_expert=selected[c],
                experts=experts,
            )
        )
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
