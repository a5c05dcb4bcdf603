"""Immutable per-round results: what the engine yields and every consumer (CLI, worker, API)
stores."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class GossipPair:
    """One P2P sync of a round: both clients end with the average of one expert's weights."""

    client_a: int
    client_b: int
    expert: str

    def to_dict(self) -> dict[str, Any]:
        return {"client_a": self.client_a, "client_b": self.client_b, "expert": self.expert}


@dataclass(frozen=True)
class ExpertReport(Mapping[str, Any]):
    """One expert's part of a client insight: what its training measured this round
    (`metrics`, empty when the router did not pick it) and its summary of the data.

    Read-only mapping access (`report["summary"]["mean"]`) is the seed's dict form.
    """

    metrics: Mapping[str, float]
    summary: Mapping[str, float]

    def __getitem__(self, key: str) -> Mapping[str, float]:
        if key == "metrics":
            return self.metrics
        if key == "summary":
            return self.summary
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("metrics", "summary"))

    def __len__(self) -> int:
        return 2

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"metrics": dict(self.metrics), "summary": dict(self.summary)}

    @classmethod
    def of(cls, metrics: Mapping[str, float], summary: Mapping[str, float]) -> ExpertReport:
        """`ExpertReport(metrics, summary)` without the frozen dataclass's `__init__` (an
        `object.__setattr__` call per field): the batched pool builds 5,000 a round."""
        report = object.__new__(cls)
        fields = report.__dict__
        fields["metrics"] = metrics
        fields["summary"] = summary
        return report


@dataclass(frozen=True)
class ClientFigure:
    """One per-client figure of an insight: what it measures (the API's description) and how
    a round computes it from what the round measured (`scarcity.components.insights`: the
    round's mean of each training report key, `r.loss`, `r.initial_loss`, …). One expression
    serves both executions: a client's floats, or every client's float64 [N] tensors."""

    description: str
    compute: Callable[[Any], Any]


def figure(description: str, compute: Callable[[Any], Any]) -> dict[str, ClientFigure]:
    """The metadata that makes an `Insight` field a per-client figure."""
    return {"figure": ClientFigure(description, compute)}


@dataclass(frozen=True)
class Insight(Mapping[str, Any]):
    """One client's structured insight of a round: learning metadata, no weights (stage 3).

    Both executions build this one type; `to_dict()` is its JSON form (what the API stores
    and serves), and read-only mapping access (`insight["loss"]`) is the seed's dict form.

    The per-client figures are declared here once, each a field with its `figure` metadata
    (`CLIENT_FIGURES`): the insight assembly of both executions computes them from it and the
    API's insight schema takes their names and descriptions from it. Add, never rename.
    """

    client_id: int
    loss: float = field(metadata=figure("Mean local training loss of the round.", lambda r: r.loss))
    mean_grad: float = field(
        metadata=figure("Mean |gradient| of its local training.", lambda r: r.mean_grad)
    )
    uncertainty: float = field(
        metadata=figure(
            "Spread (std) of its per-row losses after training.", lambda r: r.uncertainty
        )
    )
    loss_improvement: float = field(
        metadata=figure(
            "Its loss before local training minus after.", lambda r: r.initial_loss - r.final_loss
        )
    )
    selected_expert: str
    experts: Mapping[str, ExpertReport]
    #: The score of the model this client uses (the global one, or its own) on its own held-out
    #: rows (`personal_accuracy` or `personal_loss`), with `client_test_fraction`; empty = none.
    personal: Mapping[str, float] = field(default_factory=dict)

    #: The fields `to_dict()` always holds, in order (every field but `personal`).
    KEYS: ClassVar[tuple[str, ...]]

    def __getitem__(self, key: str) -> Any:
        if key in self.personal:
            return self.personal[key]
        if key not in self.KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter((*self.KEYS, *self.personal))

    def __len__(self) -> int:
        return len(self.KEYS) + len(self.personal)

    @classmethod
    def of(cls, *values: Any, **named: Any) -> Insight:
        """`Insight(...)` of the `KEYS` fields, in their order or by name (no personal scores),
        without the frozen dataclass's `__init__`, as `ExpertReport.of`."""
        insight = object.__new__(cls)
        state = insight.__dict__
        # Fewer values than KEYS: the rest by name. (No `strict=` keyword and no empty update:
        # the batched pool builds 1,000s a round, and each costs a third of the call.)
        state.update(zip(cls.KEYS, values))  # noqa: B905
        if named:
            state.update(named)
        state["personal"] = {}
        return insight

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: getattr(self, key) for key in self.KEYS[:-1]}
        out["experts"] = {name: report.to_dict() for name, report in self.experts.items()}
        out.update(self.personal)
        return out


Insight.KEYS = tuple(f.name for f in fields(Insight) if f.name != "personal")
#: Every per-client figure of an insight (its top-level numbers), in `KEYS` order.
CLIENT_FIGURES: Mapping[str, ClientFigure] = {
    f.name: f.metadata["figure"] for f in fields(Insight) if "figure" in f.metadata
}


#: Every name a round's `metrics` can hold, with what it measures. A run reports the subset its
#: config switches on (e.g. `test_accuracy` only with a labelled data set and the shared model).
#: Names are part of the public contract (docs/design.md): add, never rename.
METRIC_NAMES: Mapping[str, str] = {
    "loss": "mean local training loss of the round's clients (their reconstruction loss "
    "with label_free)",
    "test_loss": "shared model's loss on the held-out test set (federated_averaging; the local "
    "and ifca strategies, which have no one model for all: the mean over all clients of their "
    "own model's, their cluster model's)",
    "test_accuracy": "shared model's accuracy on the held-out test set (labelled data sets; "
    "local and ifca: the mean over all clients, as test_loss)",
    "clients_sampled": "clients that trained this round: those drawn, less any the scenario "
    "keeps away (availability: offline; arrivals: unseen); only when fewer than all",
    "attackers_sampled": "Byzantine clients among them (malicious_fraction > 0)",
    "data_mean": "mean of the clients' data",
    "data_std": "standard deviation of the clients' data",
    "drift": "how far the clients' data moved this round",
    "replay_error": "MemoryExpert's replay error (extended_experts)",
    "recon_loss": "autoencoders' reconstruction loss (structure_discovery)",
    "avg_uncertainty": "mean uncertainty of the clients' insights (insight_exchange)",
    "dp_noise_multiplier": "DP-FedAvg's noise multiplier z of the round",
    "dp_noise_std": "DP-FedAvg's Gaussian noise std of the round",
    "ifca_clusters_chosen": "IFCA: how many of the num_clusters cluster models the round's "
    "participants chose (the non-empty clusters)",
    "personal_accuracy_mean": "mean over the clients of the accuracy of the model each uses (the "
    "shared model, or its own: local, ditto, fedavg_ft, ifca) on its own held-out rows "
    "(client_test_fraction, labelled data sets)",
    "personal_accuracy_worst10": "its mean over the worst 10 % of clients",
    "personal_loss_mean": "mean over the clients of the loss of the model each uses (as "
    "personal_accuracy_mean) on its own held-out rows (client_test_fraction, regression)",
    "personal_loss_worst10": "its mean over the worst 10 % of clients",
    "ensemble_loss": "mean over the round's clients of their expert ensemble's loss (the routed "
    "expert, or all experts' mean) on held-out rows: their own with client_test_fraction, "
    "else the test set (ensemble_evaluation)",
    "ensemble_accuracy": "the same ensembles' mean accuracy (labelled data sets)",
    "probe_accuracy": "label_free: mean accuracy of a linear probe on each client's "
    "representation (its routed expert's latent) on the held-out rows the ensemble would "
    "predict, 5-fold cross-validated (engine_version < 7: fitted on half of them, scored on "
    "the other half)",
    "probe_loss": "label_free: the same probe's mean squared error (regression)",
    "probe_accuracy_untrained": "label_free, engine_version ≥ 7: the same probe on an untrained "
    "encoder of the same width (drawn as the experts' are initialised), the reference for "
    "probe_accuracy",
    "probe_loss_untrained": "label_free, engine_version ≥ 7: the untrained encoder's probe_loss "
    "(regression)",
    "next_block_accuracy": "scenario drift: mean accuracy over the round's clients of the model "
    "each uses on its held-out rows under its concept of the next time block (FedDrift's train "
    "at t, test at t + 1; none in the last block)",
    "drift_accuracy_drop": "scenario drift, a block's first round: accuracy on the clients' "
    "current concepts in the round before minus in this one",
    "drift_recovery_rounds": "scenario drift: rounds since the drift began when the accuracy is "
    "back within 0.01 of its level before it (reported once per drift)",
    "drift_alarms": "drift_detector: how many of the round's clients its detector alarmed on "
    "(each re-initialised the expert it trained and reset its router's counts)",
    "drift_detection_delay": "drift_detector on scenario drift: mean over the clients' true "
    "concept changes detected so far of the rounds from the change to the client's first alarm "
    "(0: in the change's own round)",
    "drift_false_alarms": "drift_detector on scenario drift: alarms so far on a client with no "
    "concept change since its last alarm",
    "avg_task_accuracy": "scenario tasks, a task's last round: mean accuracy over the tasks seen "
    "so far, each on the clients' held-out rows of that task",
    "forgetting": "scenario tasks, a task's last round: mean over the earlier tasks of their best "
    "accuracy at the end of a task minus their accuracy now (Chaudhry et al. 2018)",
    "backward_transfer": "scenario tasks, a task's last round: mean over the earlier tasks of "
    "their accuracy now minus at their own end (Lopez-Paz & Ranzato 2017)",
    "unseen_accuracy_k0": "scenario arrivals: mean accuracy of the shared model on the held-out "
    "rows of the clients that never train (Yuan et al. 2022's participation gap)",
    "unseen_accuracy_k1": "scenario arrivals: the same after 1 step of local SGD on each unseen "
    "client's own training rows",
    "unseen_accuracy_k5": "scenario arrivals: the same after 5 steps of local SGD on each unseen "
    "client's own training rows",
    "bytes_up": "bytes the round's clients sent, summed over them: their models (and a "
    "strategy's extras, e.g. SCAFFOLD's Δc) with federated_averaging, their insights with "
    "insight_exchange, the expert each gossip pair sends its peer (engine_version ≥ 8; "
    "scarcity.accounting)",
    "bytes_down": "bytes the round's clients received, summed over them: the global model (and "
    "a strategy's extras, e.g. SCAFFOLD's c), the meta-parameters with meta_learning, the "
    "expert each gossip pair receives (engine_version ≥ 8)",
    "bytes_up_total": "bytes_up summed over the run's rounds so far",
    "bytes_down_total": "bytes_down summed over the run's rounds so far",
    "epsilon": "DP-FedAvg: the privacy spent so far, ε at dp_delta (Opacus' RDP accountant, "
    "user-level, q = participants / clients); omitted when dp_noise_multiplier is 0 "
    "(engine_version ≥ 8)",
}


#: The meta-learner's two client lists of a round (`RoundResult.uncertainty_groups`), stored
#: and served beside its meta-parameters.
UNCERTAINTY_GROUPS = ("high_uncertainty_clients", "low_uncertainty_clients")


@dataclass(frozen=True)
class RoundResult:
    """Everything one finished round produced. Rounds are numbered from 1.

    `metrics` holds only quantities that are a pure function of the config (no wall-clock
    figures), so equal configs give equal metrics; timing lives in `duration_seconds`.
    """

    round: int
    metrics: Mapping[str, float]
    insights: tuple[Insight, ...] = ()
    meta_params: Mapping[str, float] = field(default_factory=dict)
    #: `MetaLearner.aggregate`'s split of the round's clients (meta_learning): ids above the
    #: mean uncertainty (`high_uncertainty_clients`) and at or below it (`low_…`); else empty.
    uncertainty_groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    expert_usage: Mapping[str, int] = field(default_factory=dict)
    gossip_pairs: tuple[GossipPair, ...] = ()
    logs: tuple[str, ...] = ()
    duration_seconds: float = 0.0
    #: The ids of the clients that took part, ascending, when fewer than all did
    #: (`clients_per_round` / `fraction_fit`); None when every client took part.
    participants: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the names match the HTTP API and `scarcity run --json`."""
        return {
            "round": self.round,
            "metrics": dict(self.metrics),
            "meta_params": dict(self.meta_params),
            **{key: list(self.uncertainty_groups.get(key, ())) for key in UNCERTAINTY_GROUPS},
            "insights": [i.to_dict() for i in self.insights],
            "expert_usage": dict(self.expert_usage),
            "gossip_pairs": [p.to_dict() for p in self.gossip_pairs],
            "participants": None if self.participants is None else list(self.participants),
            "logs": list(self.logs),
            "duration_seconds": self.duration_seconds,
        }


def non_finite(value: Any, path: str = "") -> tuple[str, float] | None:
    """The path and value of the first float in a nested payload that is NaN or inf (which
    JSON cannot carry), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, Mapping):
        items: Iterator[tuple[str, Any]] = (
            (f"{path}.{key}" if path else str(key), item) for key, item in value.items()
        )
    elif isinstance(value, list | tuple):
        items = ((path, item) for item in value)
    else:
        return None
    for item_path, item in items:
        found = non_finite(item, item_path)
        if found is not None:
            return found
    return None
