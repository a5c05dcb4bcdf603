"""Request and response bodies of the public API, kept apart from the ORM.

Their names are the public contract: add, never rename (docs/design.md).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Le
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
    create_model,
    field_validator,
)

from app.text import StorableText
from models.base import as_utc
from models.settings import Settings, get_settings
from scarcity.backbones import BACKBONES
from scarcity.config import PRESETS, SimulationConfig
from scarcity.datasets import DATASETS, SYNTHETIC
from scarcity.partitions import PARTITIONERS
from scarcity.results import CLIENT_FIGURES, METRIC_NAMES
from scarcity.scenarios import SCENARIOS
from scarcity.strategies import STRATEGIES

# The database stores rounds, client ids and row ids as INTEGER: a bigger query value is a 422,
# never an overflow in the driver.
MAX_INT = 2**31 - 1

# Which setting caps which config field (over a cap → 422 naming the field and the limit).
FIELD_LIMITS: dict[str, str] = {
    "num_clients": "max_clients",
    "rounds": "max_rounds",
    "samples_per_client": "max_samples_per_client",
    "batch_size": "max_samples_per_client",
    "input_dim": "max_dim",
    "output_dim": "max_dim",
    "local_epochs": "max_local_epochs",
    "latent_dim": "max_dim",
    "memory_capacity": "max_samples_per_client",
    "replay_size": "max_samples_per_client",  # replayed rows train like the client's own
}


def field_caps(settings: Settings | None = None) -> dict[str, int]:
    """Single-field limits from the settings, written into the schema so clients see them."""
    s = settings or get_settings()
    return {name: getattr(s, limit) for name, limit in FIELD_LIMITS.items()} | {"seed": MAX_INT}


# What a researcher calls a run: free text the engine never reads (README, "Runs you can find").
TAG_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
MAX_TAGS = 50
# Every free text of a request is `StorableText` (app/text.py): no NUL, no lone surrogate.
TagKey = Annotated[StorableText, StringConstraints(pattern=TAG_KEY_PATTERN)]
TagValue = Annotated[StorableText, StringConstraints(max_length=500)]
RunName = Annotated[StorableText, StringConstraints(min_length=1, max_length=200)]
RunNotes = Annotated[StorableText, StringConstraints(max_length=10_000)]
RUN_FIELDS: dict[str, Any] = {
    "name": (RunName | None, Field(None, description="A name for the run (not unique).")),
    "tags": (
        dict[TagKey, TagValue] | None,
        Field(
            None,
            max_length=MAX_TAGS,
            description=f"Labels, key → value (at most {MAX_TAGS}; keys: letters, digits, _.:-).",
        ),
    ),
    "notes": (RunNotes | None, Field(None, description="Free-form notes.")),
}


def _make_simulation_create() -> type[BaseModel]:
    """`SimulationCreate`: a preset plus optional overrides of any `SimulationConfig` field."""
    caps = field_caps()
    fields: dict[str, Any] = {}
    for name, info in SimulationConfig.model_fields.items():
        if name == "preset":
            continue
        metadata = list(info.metadata) + ([Le(caps[name])] if name in caps else [])
        annotation: Any = info.annotation
        annotation = Annotated[(annotation, *metadata)] if metadata else annotation
        # The engine checks these names against its registries; the schema lists them.
        if name == "strategy":
            annotation = Literal[tuple(STRATEGIES)]
        if name == "partition":
            annotation = Literal[tuple(PARTITIONERS)]
        if name == "model":
            annotation = Literal[tuple(BACKBONES)]
        if name == "scenario":
            annotation = Literal[tuple(SCENARIOS)]
        # The data set is an open set (uploads): its schema gives the built-in names as examples.
        names: list[JsonValue] = [SYNTHETIC, *DATASETS]
        extra: dict[str, JsonValue] | None = {"examples": names} if name == "dataset" else None
        # Built at run time from the engine's fields, so mypy cannot follow the types here.
        fields[name] = (
            annotation | None,  # type: ignore[operator]
            Field(None, description=info.description, json_schema_extra=extra),
        )
    return create_model(  # type: ignore[call-overload]
        "SimulationCreate",
        __config__=ConfigDict(
            extra="forbid",
            allow_inf_nan=False,  # Python's json accepts NaN/Infinity; no simulation setting does
            strict=True,  # the types the schema states: no "5" for 5, no false for 0.0
            json_schema_extra={
                "example": {
                    "preset": "stage8",
                    "name": "stage8 first look",
                    "num_clients": min(5, caps["num_clients"]),
                    "rounds": min(5, caps["rounds"]),
                }
            },
        ),
        preset=(  # type: ignore[arg-type]
            Literal[tuple(PRESETS)],  # type: ignore[valid-type]
            Field("stage8", description="Preset whose defaults fill every field not given."),
        ),
        **fields,
        **RUN_FIELDS,
    )


SimulationCreate = _make_simulation_create()


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class Progress(BaseModel):
    rounds_completed: int
    rounds_total: int


class SimulationUpdate(BaseModel):
    """`PATCH /simulations/{id}`: fields left out stay as they are; `name` or `notes` null
    clears it; `tags` is merged key by key (RFC 7396): a string sets a tag, null removes it."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: RunName | None = Field(None, description="New name; null clears it.")
    tags: dict[TagKey, TagValue | None] | None = Field(
        None, max_length=MAX_TAGS, description="Tags to set (string) or remove (null)."
    )
    notes: RunNotes | None = Field(None, description="New notes; null clears them.")


#: A resolved config as stored: documented with `SimulationConfig`'s own schema (every field,
#: its type and bounds) but passed through as stored, not validated again on every read.
ConfigJSON = Annotated[
    dict[str, Any], WithJsonSchema(SimulationConfig.model_json_schema(mode="serialization"))
]


class SimulationPublic(BaseModel):
    id: uuid.UUID
    status: Literal["pending", "queued", "running", "succeeded", "failed", "cancelled"]
    preset: str
    name: str | None = None
    tags: dict[str, str] = {}
    notes: str | None = None
    config: ConfigJSON
    progress: Progress
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    final_metrics: dict[str, float] | None = Field(
        None, description="Metrics of the last stored round; null before the first one."
    )

    _utc_times = field_validator("created_at", "started_at", "finished_at")(_utc)

    @classmethod
    def from_row(cls, row: Any, final_metrics: dict[str, float] | None = None) -> SimulationPublic:
        return cls(
            id=row.id,
            status=row.status,
            preset=row.preset,
            name=row.name,
            tags=row.tags or {},
            notes=row.notes,
            config=row.config,
            progress=Progress(rounds_completed=row.rounds_completed, rounds_total=row.rounds_total),
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            error=row.error,
            final_metrics=final_metrics,
        )


class SimulationsPublic(BaseModel):
    data: list[SimulationPublic]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class CompareRun(BaseModel):
    id: uuid.UUID
    name: str | None
    tags: dict[str, str]
    status: Literal["pending", "queued", "running", "succeeded", "failed", "cancelled"]
    preset: str
    differing: dict[str, Any] = Field(
        description="This run's value of each config field in `differing_fields`."
    )
    label: str = Field(
        description="A legend text: the name if set, then the differing fields (`lr=0.1`)."
    )


class ComparePublic(BaseModel):
    differing_fields: list[str] = Field(
        description="Config fields whose values are not the same in every run, in config order."
    )
    runs: list[CompareRun] = Field(description="In the order of `ids`.")
    rounds: list[int] = Field(description="Every round any of the runs has stored, ascending.")
    metrics: dict[str, list[list[float | None]]] = Field(
        description="Metric name → one series per run (order of `runs`), each aligned with "
        "`rounds`: null where that run has no such round or metric."
    )


class GossipPairPublic(BaseModel):
    client_a: int
    client_b: int
    expert: str


class RoundMetricsPublic(BaseModel):
    round: int
    metrics: dict[str, float]
    expert_usage: dict[str, int] = {}
    gossip_pairs: list[GossipPairPublic] = []
    participants: list[int] | None = Field(
        None,
        description="The ids of the clients that took part, ascending, when the round drew "
        "fewer than all (clients_per_round / fraction_fit); null when every client took part, "
        "and in rounds stored before the ids were kept (their `clients_sampled` metric says "
        "whether they were sampled).",
    )


class MetricsPublic(BaseModel):
    simulation_id: uuid.UUID
    rounds: list[RoundMetricsPublic]


class ExpertReportPublic(BaseModel):
    """One expert's part of an insight (scarcity.results.ExpertReport.to_dict())."""

    metrics: dict[str, float] = Field(
        description="What its training measured this round; empty when the router did not pick it."
    )
    summary: dict[str, float] = Field(description="Its summary of the client's data.")


# Only with client_test_fraction: absent otherwise (never null), as the engine writes it.
_Personal = Annotated[float | None, WithJsonSchema({"type": "number"})]


# An insight's id and per-client figures, in its order: the figures are the engine's
# (scarcity.results.CLIENT_FIGURES), built at run time, so mypy sees a plain model here.
if TYPE_CHECKING:
    _ClientFigures = BaseModel
else:
    _ClientFigures = create_model(
        "_ClientFigures",
        client_id=(int, ...),
        **{name: (float, Field(description=f.description)) for name, f in CLIENT_FIGURES.items()},
    )


class ClientInsightPublic(_ClientFigures):
    """One client's insight of a round: scarcity.results.Insight.to_dict(), as stored."""

    selected_expert: str = Field(description="The expert the router picked (`all`: every one).")
    experts: dict[str, ExpertReportPublic]
    personal_accuracy: _Personal = Field(
        None,
        exclude_if=lambda v: v is None,
        description="The shared model's accuracy on the client's own held-out rows "
        "(client_test_fraction, labelled data sets).",
    )
    personal_loss: _Personal = Field(
        None,
        exclude_if=lambda v: v is None,
        description="The shared model's loss on the client's own held-out rows "
        "(client_test_fraction, regression).",
    )


class InsightPublic(BaseModel):
    round: int
    client_id: int
    insight: ClientInsightPublic


class InsightsPublic(BaseModel):
    simulation_id: uuid.UUID
    insights: list[InsightPublic]


class ClientDataPublic(BaseModel):
    """What one client holds: label_counts (classification) or target_mean / target_std."""

    client_id: int
    train_samples: int
    test_samples: int = Field(description="Its own held-out rows (client_test_fraction).")
    label_counts: list[int] | None
    target_mean: list[float] | None
    target_std: list[float] | None
    malicious: bool | None = Field(
        description="One of the run's Byzantine attackers (malicious_fraction), fixed per run; "
        "false for every client of a run without attackers. null: not recorded (a run with "
        "attackers whose clients were described before the flag was kept; its round-1 log line "
        "names them).",
    )
    rounds_trained: int = Field(
        0,
        description="How many of the stored rounds it trained in: fewer than the rounds when "
        "clients are sampled (clients_per_round, fraction_fit) or a scenario keeps it away "
        "(availability, arrivals).",
    )


class ClientsPublic(BaseModel):
    simulation_id: uuid.UUID
    clients: list[ClientDataPublic]


class MetaParamsRow(BaseModel):
    """One round's meta-parameters; structural priors (`prior_*`) appear from stage 8."""

    model_config = ConfigDict(extra="allow")
    # the `prior_*` keys are numbers: so says the document, and clients generated from it
    __pydantic_extra__: dict[str, float] = Field(init=False)
    round: int
    mean: float | None = None
    std: float | None = None
    lr: float | None = None
    updates: float | None = None
    high_uncertainty_clients: list[int] | None = Field(
        None,
        description="Clients whose uncertainty is above the round's mean (the meta-learner's "
        "aggregate); null for rounds stored before it was kept.",
    )
    low_uncertainty_clients: list[int] | None = Field(
        None, description="Clients at or below the round's mean uncertainty."
    )


class MetaParamsPublic(BaseModel):
    simulation_id: uuid.UUID
    rounds: list[MetaParamsRow]


class LogLine(BaseModel):
    id: int
    round: int
    level: str
    message: str


class LogsPublic(BaseModel):
    simulation_id: uuid.UUID
    lines: list[LogLine]


class AttemptPublic(BaseModel):
    attempt: int = Field(description="The claim's number (1 = the first worker to run it).")
    worker: str = Field(description="host:pid of the worker process.")
    started_at: datetime
    environment: dict[str, Any] = Field(
        description="scarcity, git_commit, python, torch, numpy, torch_threads, "
        "cpu_capability, host: what the attempt computed on."
    )


class AttemptsPublic(BaseModel):
    simulation_id: uuid.UUID
    attempts: list[AttemptPublic]


class TensorPublic(BaseModel):
    name: str = Field(description="Its key in the file (the state dict's name).")
    shape: list[int]
    dtype: str = Field(description="float32, …")


class BackbonePublic(BaseModel):
    name: str = Field(description="The config's `model` (`GET /models`).")
    fields: dict[str, Any] = Field(description="The config fields it reads (hidden_sizes, …).")
    input_dim: int
    output_dim: int
    description: str


class ModelArchitecturePublic(BaseModel):
    """What `GET /simulations/{id}/model` returns for the same query: the architecture and
    every tensor (a safetensors file also holds this under `scarcity.architecture`)."""

    simulation_id: uuid.UUID
    round: int
    kind: Literal["global", "client_experts"] = Field(
        description="`global`: the shared model (the backbone's state dict); `client_experts`: "
        "one client's experts, `<expert>.model.<param>` (a backbone each) and "
        "`<expert>.encoder.*` / `<expert>.decoder.*` (its linear autoencoder)."
    )
    client_id: int | None
    backbone: BackbonePublic
    task: Literal["classification", "regression"]
    feature_scaling: str | None = Field(
        description="How the run scaled its input features (the model expects them so)."
    )
    engine_version: int
    experts: list[str] | None = Field(None, description="client_experts: the client's experts.")
    latent_dim: int | None = Field(None, description="client_experts: the autoencoders' width.")
    tensors: list[TensorPublic]


class PresetPublic(BaseModel):
    name: str
    description: str
    config: ConfigJSON


class StrategyPublic(BaseModel):
    name: str = Field(description="The value of the config field `strategy`.")
    summary: str
    paper: str = Field(description="The paper whose update rule this is.")
    parameters: dict[str, Any] = Field(
        description="Config fields the strategy reads, with the default a request gets."
    )


class ScenarioPublic(BaseModel):
    name: str = Field(description="The value of the config field `scenario`.")
    summary: str
    paper: str = Field(description="The paper whose set-up this builds (none for static).")
    parameters: dict[str, Any] = Field(
        description="Config fields the scenario reads, with the default a request gets (null: "
        "decided by the data set's task)."
    )


class PartitionPublic(BaseModel):
    name: str = Field(description="The value of the config field `partition`.")
    summary: str
    mirrors: str = Field(description="The benchmark split (and paper) this one mirrors.")
    parameters: dict[str, Any] = Field(
        description="Config fields the partition reads, with their defaults."
    )
    by_label: bool = Field(description="Splits by label (needs a labelled data set).")


class ModelPublic(BaseModel):
    name: str = Field(description="The value of the config field `model`.")
    description: str
    parameters: dict[str, Any] = Field(
        description="Config fields the model reads, with their defaults."
    )


class UploadOptionsPublic(BaseModel):
    label: str = Field(description="The label column (an .npz: the label array).")
    client_column: str | None = Field(
        None, description="The column (or array) of each row's natural client; null: none."
    )
    test_fraction: float | None = Field(
        None, description="The share held out as the upload's own test split; null: none."
    )
    task: Literal["classification", "regression"] | None = Field(
        None, description="The task as asked; null: decided from the label's values."
    )


class DatasetPublic(BaseModel):
    """A data set a config's `dataset` can name: built in, or uploaded by you."""

    id: str = Field(
        description="The value of the config field `dataset`: a built-in data set's name, or "
        "an upload's id (`ds_` and 24 hex digits of its content's sha256)."
    )
    kind: Literal["built_in", "upload"]
    summary: str
    source: str = Field(description="Where the rows come from (`uploaded` for an upload).")
    task: Literal["classification", "regression"]
    features: int = Field(description="Features per row: a run's `input_dim`.")
    classes: int = Field(description="Classes (1 for a regression target): its `output_dim`.")
    natural_clients: int = Field(
        description="Natural clients the rows name (0: none); a run then splits by them "
        "(`partition: natural`) unless it says otherwise."
    )
    own_test_split: bool = Field(description="Its own test rows (`test_fraction` is not read).")
    feature_scaling: Literal["standard", "minmax", "none"] = Field(
        description="The scaling a run gets when it leaves `feature_scaling` unset."
    )
    defaults: dict[str, Any] = Field(
        description="Config fields a new run on it gets unless the request sets them."
    )
    stream: bool = Field(
        False,
        description="Its rows are a stream in time order (`scenario: drift` then defaults to "
        "`drift_kind: stream`).",
    )
    drift_points: list[int] = Field(
        default_factory=list,
        description="A stream's documented concept-drift points: the first row of each new "
        "concept.",
    )
    rows: int | None = Field(None, description="An upload's rows, test rows included.")
    test_rows: int | None = Field(None, description="An upload's rows held out for testing.")
    filename: str | None = Field(None, description="The name of the file you uploaded.")
    format: Literal["csv", "parquet", "npz"] | None = None
    sha256: str | None = Field(None, description="The sha256 of the uploaded file's bytes.")
    options: UploadOptionsPublic | None = Field(None, description="An upload's options.")
    class_names: list[str] | None = Field(
        None, description="Class i's name (an upload's labels, in sorted order)."
    )
    client_names: list[str] | None = Field(
        None, description="Natural client i's name, in the order each first appears."
    )
    feature_names: list[str] | None = Field(None, description="The feature columns, in order.")
    created_at: datetime | None = Field(None, description="When you uploaded it.")

    _utc_times = field_validator("created_at")(_utc)


class ErrorBody(BaseModel):
    type: str
    detail: Any


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


# --- sweeps ---------------------------------------------------------------------------------

SpaceValue = StorableText | int | float | bool | None


class SpaceValues(BaseModel):
    """Grid values (method grid), or the choices random search draws from."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    values: list[SpaceValue] = Field(min_length=1, max_length=100)


class SpaceRange(BaseModel):
    """A range random search draws from: uniform, or log-uniform (min > 0)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    distribution: Literal["uniform", "log_uniform"]
    min: float
    max: float


class EarlyStop(BaseModel):
    """The median stopping rule: after round r ≥ `grace_rounds`, a run whose best `metric` so
    far is worse than the median of at least `min_runs` other runs' running means over their
    first r rounds stops (status cancelled, the reason in its log)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    rule: Literal["median"] = "median"
    metric: Literal[tuple(METRIC_NAMES)] = Field(  # type: ignore[valid-type]
        description="A metric name (scarcity.results.METRIC_NAMES)."
    )
    mode: Literal["min", "max"] = Field("min", description="min: lower is better.")
    grace_rounds: int = Field(1, ge=1, le=MAX_INT, description="No stop before this round.")
    min_runs: int = Field(3, ge=1, le=1000, description="Other runs needed for a median.")


class SweepCreate(BaseModel):
    """`POST /sweeps`: a base request, the fields to vary (`space`), and the seeds each
    configuration runs with."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "example": {
                "name": "lr × alpha",
                "base": {"preset": "stage2", "dataset": "digits", "partition": "dirichlet"},
                "space": {
                    "learning_rate": {"values": [0.01, 0.1]},
                    "dirichlet_alpha": {"values": [0.1, 1.0]},
                },
                "seeds": [0, 1, 2],
                "method": "grid",
                "max_concurrent": 4,
            }
        },
    )
    name: RunName | None = Field(
        None, description="A name for the sweep; its runs' names start so."
    )
    base: SimulationCreate = Field(  # type: ignore[valid-type]
        description="What every run shares: a `POST /simulations` body without `name` or "
        "`seed` (422: the sweep's `name` names its runs, `seeds` seeds them)."
    )
    space: dict[str, SpaceValues | SpaceRange] = Field(
        default_factory=dict,
        max_length=20,
        description="Config field → `{values: [...]}` or `{distribution: uniform | log_uniform, "
        "min, max}` (random search only).",
    )
    seeds: list[Annotated[int, Field(ge=0, le=MAX_INT)]] = Field(
        default_factory=lambda: [0],
        min_length=1,
        max_length=100,
        description="Every configuration runs once per seed.",
    )
    method: Literal["grid", "random"] = Field(
        "grid", description="grid: every combination of the values; random: `run_cap` runs drawn."
    )
    run_cap: int | None = Field(
        None, ge=1, le=MAX_INT, description="At most this many runs (random search needs it)."
    )
    max_concurrent: int = Field(4, ge=1, le=1000, description="At most this many runs at once.")
    random_seed: int = Field(0, ge=0, le=MAX_INT, description="Seed of random search's draws.")
    early_stop: EarlyStop | None = Field(None, description="Stop runs that fall behind.")


class SweepProgress(BaseModel):
    total: int
    pending: int = Field(description="Waiting for a slot of `max_concurrent`.")
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


class SweepPublic(BaseModel):
    id: uuid.UUID
    name: str | None
    status: Literal["running", "finished", "cancelled"] = Field(
        description="running until every run has ended; cancelled once cancel was asked."
    )
    method: Literal["grid", "random"]
    varied: list[str] = Field(description="The config fields the space varies.")
    max_concurrent: int
    progress: SweepProgress
    created_at: datetime
    request: dict[str, Any] = Field(description="The sweep's request as sent.")

    _utc_times = field_validator("created_at")(_utc)


class SweepsPublic(BaseModel):
    data: list[SweepPublic]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class MetricSummary(BaseModel):
    mean: float
    std: float | None = Field(description="Sample standard deviation (n − 1); null for one run.")
    count: int = Field(description="Runs whose final metrics have this metric.")


class SweepResultRow(BaseModel):
    params: dict[str, Any] = Field(description="The configuration's value of each varied field.")
    runs: int = Field(description="Runs of this configuration in the sweep (one per seed).")
    succeeded: int = Field(description="Of them, succeeded: only their final metrics count.")
    metrics: dict[str, MetricSummary]


class SweepResultsPublic(BaseModel):
    sweep_id: uuid.UUID
    varied: list[str]
    rows: list[SweepResultRow] = Field(description="One per configuration, in the sweep's order.")
