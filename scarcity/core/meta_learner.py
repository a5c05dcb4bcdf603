"""Meta-learning across clients (seed stages 3, 5 and 8).

`update_global_params` is the seed's "Reptile-style" meta-learning: exponential moving averages
(α = `meta_ema_alpha`, 0.1 by default) of the clients' data mean and std, plus an adaptive
learning-rate heuristic on the average loss. These meta-parameters are broadcast to the
clients, which store them. Every preset (stage5+) uses this EMA form. True Reptile
meta-initialisation (Nichol et al. 2018, θ ← θ + ε·mean_i(θ_i − θ)) is the `meta_reptile`
option (the `reptile` strategy), applied by the server to the shared model in place of FedAvg.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from scarcity import messages
from scarcity.core.aggregate import ema
from scarcity.results import ExpertReport, Insight


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _column(insights: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    """`insight[key]` of each insight; an `Insight`'s field read directly (its mapping form is
    a Python call per lookup, 1,000s a round)."""
    field = key in Insight.KEYS
    return [
        getattr(i, key) if field and type(i) is Insight and key not in i.personal else i[key]
        for i in insights
    ]


def _summaries(insights: Sequence[Mapping[str, Any]], expert: str) -> list[Mapping[str, Any]]:
    """The `expert` summary of each insight that has the expert, in order."""
    summaries = []
    for insight in insights:
        if type(insight) is Insight:
            report = insight.experts.get(expert)
            if report is not None:
                summaries.append(
                    report.summary if type(report) is ExpertReport else report["summary"]
                )
            continue
        experts = insight.get("experts", {})
        if expert in experts:
            summaries.append(experts[expert]["summary"])
    return summaries


def _values(summaries: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float(summary[key]) for summary in summaries if key in summary]


#: The priors that average an expert's summary value: expert → (prior, summary key).
_PRIOR_SUMMARIES = {
    "MemoryConsolidationExpert": ("prior_replay_error", "avg_replay_error"),
    "DriftExpert": ("prior_drift", "drift"),
    "MetaAdaptationExpert": ("prior_lr_adjustments", "lr_adjustments"),
}


class MetaLearner:
    """Aggregates client insights into meta-parameters and structural priors."""

    def __init__(self, alpha: float = 0.1, base_lr: float = 0.01) -> None:
        self.logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        self.alpha = alpha
        self.base_lr = base_lr
        self.mean = 0.0
        self.std = 1.0
        self.lr = base_lr
        self.updates = 0
        self.all_means: list[float] = []
        self.all_stds: list[float] = []
        self.all_losses: list[float] = []
        self.history: list[dict[str, Any]] = []
        self.priors: dict[str, float] = {}

    def aggregate(self, insights: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Average uncertainty and the clients above / at-or-below it."""
        ids, values = _column(insights, "client_id"), _column(insights, "uncertainty")
        uncertainties = {int(c): float(u) for c, u in zip(ids, values, strict=True)}
        avg = _mean(list(uncertainties.values()))
        summary = {
            "avg_uncertainty": avg,
            "high_uncertainty_clients": sorted(c for c, u in uncertainties.items() if u > avg),
            "low_uncertainty_clients": sorted(c for c, u in uncertainties.items() if u <= avg),
        }
        self.history.append({"avg_uncertainty": avg, "num_insights": len(insights)})
        return summary

    def adaptive_lr(self, avg_loss: float) -> float:
        """The seed's heuristic: a larger step while the loss is large (×5 above 10, ×2 above 1)."""
        if avg_loss > 10:
            return self.base_lr * 5
        if avg_loss > 1:
            return self.base_lr * 2
        return self.base_lr

    def update_global_params(self, insights: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """EMA of the clients' StructureExpert mean/std; lr from the average loss."""
        structure = _summaries(insights, "StructureExpert")
        means, stds = _values(structure, "mean"), _values(structure, "std")
        reported = [i for i in insights if type(i) is Insight or "loss" in i]
        losses = [float(loss) for loss in _column(reported, "loss")]
        if means:
            self.all_means.append(_mean(means))
            self.mean = ema(self.mean, self.all_means[-1], self.alpha)
        if stds:
            self.all_stds.append(_mean(stds))
            self.std = ema(self.std, self.all_stds[-1], self.alpha)
        if losses:
            self.all_losses.append(_mean(losses))
            self.lr = self.adaptive_lr(self.all_losses[-1])
        self.updates += 1
        self.logger.debug(
            "Meta-parameters updated: mean=%.4f, std=%.4f, lr=%.4f, updates=%d",
            self.mean,
            self.std,
            self.lr,
            self.updates,
        )
        return self.broadcast_params()

    def compute_structural_priors(self, insights: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Cross-client averages of reconstruction loss, replay error, drift, lr adjustments."""
        recon: list[float] = []
        summaries: dict[str, list[Mapping[str, Any]]] = {name: [] for name in _PRIOR_SUMMARIES}
        for experts in _column(insights, "experts"):  # one pass: each insight's experts once
            for report in experts.values():
                metrics = report.metrics if type(report) is ExpertReport else report["metrics"]
                if "recon_loss" in metrics:
                    recon.append(float(metrics["recon_loss"]))
            for name, found in summaries.items():
                if name in experts:
                    report = experts[name]
                    found.append(
                        report.summary if type(report) is ExpertReport else report["summary"]
                    )
        self.priors = {"prior_recon_loss": _mean(recon)}
        for name, (prior, key) in _PRIOR_SUMMARIES.items():
            self.priors[prior] = _mean(_values(summaries[name], key))
        self.logger.debug("%s: %s", messages.PRIORS_UPDATED, self.priors)
        return dict(self.priors)

    def broadcast_params(self) -> dict[str, float]:
        """The meta-parameters sent to every client (plus structural priors once computed)."""
        return {
            "mean": self.mean,
            "std": self.std,
            "lr": self.lr,
            "updates": self.updates,
            **self.priors,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "scalars": [self.mean, self.std, self.lr, self.updates],
            "all": [list(self.all_means), list(self.all_stds), list(self.all_losses)],
            "history": [dict(h) for h in self.history],
            "priors": dict(self.priors),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.std, self.lr, self.updates = state["scalars"]
        self.all_means, self.all_stds, self.all_losses = (list(v) for v in state["all"])
        self.history = [dict(h) for h in state["history"]]
        self.priors = dict(state["priors"])
