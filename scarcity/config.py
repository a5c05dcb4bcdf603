"""Simulation configuration: one validated, immutable `SimulationConfig` and the stage presets.

A request is a preset name plus overrides; `resolve_config` fills every other field from the
preset, then validates the whole. Field names are part of the public HTTP contract (docs/design.md):
add fields, never rename them.

`SimulationConfig` is assembled: the run's own fields (`_RunFields`), each strategy's,
partitioner's and backbone's fields as they declare them (`scarcity.params.Param`) after the
field that chooses them, and the checks of every combination (`_Checks`, raising `ConfigError`
naming the field). Validation reads no data: whether a real data set can be split as asked is
the run plan's question (`scarcity.plan`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model, model_validator

from scarcity.backbones import BACKBONES, backbone_params, make_backbone
from scarcity.datasets import DATASETS, SYNTHETIC, Dataset, find_dataset
from scarcity.errors import ConfigError
from scarcity.partitions import PARTITIONERS, partition_params
from scarcity.partitions.sizes import MAX_CLIENT_SIZE_FACTOR, MIN_CLIENT_SAMPLES
from scarcity.scenarios import SCENARIOS, scenario_class, scenario_params
from scarcity.strategies import STRATEGIES, strategy_params

PresetName = Literal[
    "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "stage8", "baseline"
]
AttackName = Literal["sign_flip", "gaussian", "label_flip"]


def dataset_info(name: str) -> Dataset | None:
    """The registered (or uploaded) data set `name`; None for synthetic data."""
    if name == SYNTHETIC:
        return None
    found = find_dataset(name)
    if found is None:
        known = ", ".join([SYNTHETIC, *DATASETS])
        raise ConfigError(
            "dataset", f"unknown {name!r}: one of {known}, or an uploaded data set's id (ds_…)"
        )
    return found


def is_regression(name: str) -> bool:
    info = dataset_info(name)
    return info is None or info.task == "regression"


#: The engine's numerical revision (`engine_version`): bumped by a change that moves results
#: by float rounding, that fails runs an earlier engine let finish (5: an exploding loss), or
#: that deals out other data (6: shard drops a random shard, resample_to_size keeps held-out
#: rows distinct; 7: the label-free probe is cross-validated, beside an untrained encoder's), or
#: that reports metrics a stored run did not (8: bytes moved, DP-FedAvg's ε), so that stored
#: runs, which keep theirs, resume bit for bit and end as they did.
ENGINE_VERSION = 8


class _RunFields(BaseModel):
    """The run's own fields, in the order users see them. The fields of the strategies,
    partitioners and backbones are declared by them and come after `strategy`, `partition`
    and `model` in `SimulationConfig`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: PresetName = "stage8"
    num_clients: int = Field(5, ge=1, description="Simulated clients.")
    rounds: int = Field(5, ge=1, description="Global rounds.")
    seed: int = Field(0, ge=0, description="Seed of every random choice in the run.")
    input_dim: int = Field(10, ge=1, description="Features per sample.")
    output_dim: int = Field(1, ge=1, description="Targets (regression) or classes.")
    samples_per_client: int = Field(
        50, ge=2, description="Training samples each client holds (the mean with quantity_skew)."
    )
    quantity_skew: float = Field(
        0.0,
        ge=0,
        le=3,
        description=(
            "Unequal client data sizes (quantity skew); 0 = every client holds exactly "
            "samples_per_client. Else client i holds round(samples_per_client · w_i / mean(w)) "
            "samples, w_i ~ LogNormal(0, quantity_skew²) drawn from the seed, clipped to "
            f"[{MIN_CLIENT_SAMPLES}, {MAX_CLIENT_SIZE_FACTOR} · samples_per_client]. The mean "
            "size stays about samples_per_client; the batched execution pads every client to "
            "the largest."
        ),
    )
    local_epochs: int = Field(1, ge=1, description="Local passes over the data per round.")
    learning_rate: float = Field(0.01, gt=0, le=10, description="Local SGD learning rate.")
    batch_size: int = Field(0, ge=0, description="Local mini-batch size; 0 = full batch.")
    model: str = Field(
        "linear",
        description=(
            "The supervised model of the shared model and of every expert (GET /models lists "
            "them): linear (the seed's), mlp (hidden_sizes, ReLU), cnn (8×8 digits images) or "
            "simple_cnn (28×28 images: NIID-Bench's CNN for MNIST and Fashion-MNIST). "
            "The experts' autoencoders stay linear (encoder → latent → decoder)."
        ),
        json_schema_extra=lambda schema: _list_models(schema),
    )
    # (Each backbone's own fields come here: scarcity.backbones.)
    router_strategy: Literal["variance", "random", "round_robin", "balanced", "loss"] = Field(
        "variance",
        description=(
            "Expert routing: variance (the seed's rule: StructureExpert above "
            "variance_threshold, else DriftExpert), random, round_robin, balanced (each "
            "client's least-trained expert, ties by the variance rule; the stage7/stage8 "
            "default, so every expert of the portfolio trains), or loss (the expert with the "
            "lowest loss on the client's rows of the round before training, as IFCA picks a "
            "cluster; needs labels)."
        ),
    )
    variance_threshold: float = Field(
        0.5, ge=0, description="`variance` routing: data variance above it → StructureExpert."
    )
    gossip_peers: Literal["random", "insight"] = Field(
        "random",
        description=(
            "Gossip: random (disjoint random pairs, one random expert each, plain average) or "
            "insight (the server pairs the clients that chose the same expert, then those of "
            "the most similar data mean, and each peer's expert weighs inversely to its "
            "uncertainty). insight needs gossip, expert_routing and insight_exchange."
        ),
    )
    drift_detector: Literal["none", "adwin", "page_hinkley"] = Field(
        "none",
        description=(
            "DriftExpert's detector on each client's training-loss stream (the routed "
            "expert's loss, one value a round it trains): none, adwin or page_hinkley (river's). "
            "An alarm re-initialises the expert the client trained and resets its router's "
            "counts; metric drift_alarms. Needs expert_routing and labels (not label_free)."
        ),
    )
    dataset: str = Field(
        SYNTHETIC,
        description=(
            "The data: synthetic (generated from the seed) or a data set GET /datasets lists "
            "(built in, or an upload's id ds_…)."
        ),
        json_schema_extra=lambda schema: _list_datasets(schema),
        max_length=64,
    )
    # How a real data set is split among the clients (GET /partitions lists the rules and
    # the parameters each reads): disjoint shares at natural sizes, Flower Datasets' names.
    partition: str = Field(
        "iid",
        description="Split of a real data set among the clients (GET /partitions lists them).",
        json_schema_extra=lambda schema: _list_partitions(schema),
    )
    # (Each partitioner's own fields come here: scarcity.partitions.)
    resample_to_size: bool = Field(
        False,
        description=(
            "Real data sets: resize every client of an iid or dirichlet split to "
            "samples_per_client rows (drawn again with replacement when short, an empty share "
            "from the whole training set), the data of simulations stored before natural "
            "sizes. False: each client holds its own rows once."
        ),
    )
    feature_scaling: Literal["standard", "minmax", "none"] | None = Field(
        None,
        description=(
            "Real data sets, with the training rows' statistics: standard (zero mean, unit "
            "variance), minmax (to [0, 1], as image pipelines scale pixels) or none (as "
            "stored, e.g. a text's character codes); null = the data set's own (GET /datasets)."
        ),
    )
    feature_noise: float = Field(
        0.0,
        ge=0,
        le=100,
        description=(
            "Feature skew (NIID-Bench's noise): client i's features get fixed Gaussian noise "
            "of std feature_noise · i / (N − 1); 0 = none."
        ),
    )
    drift: float = Field(0.0, ge=0, le=100, description="Per-round shift of client data; 0 = none.")
    scenario: str = Field(
        "static",
        description=(
            "How the clients' data changes over the rounds (GET /scenarios lists them): static "
            "(the same rows every round), drift (concepts over time blocks), tasks (a task "
            "sequence per client), availability (clients online or offline round by round), "
            "few_labels (a share of each client's rows labelled), arrivals (clients that never "
            "train, scored as newcomers), …"
        ),
        json_schema_extra=lambda schema: _list_scenarios(schema),
    )
    # (Each scenario's own fields come here: scarcity.scenarios.)
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Held-out share of the data set.")
    client_test_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description=(
            "Share of each client's rows it holds out for personalised evaluation: the global "
            "model's accuracy (or loss) on every client's own rows, mean and worst 10 %; 0 = none."
        ),
    )

    ensemble_evaluation: bool = Field(
        True,
        description=(
            "Every round each participating client's expert ensemble (the routed expert, or "
            "all experts' mean) predicts held-out rows, its own with client_test_fraction, "
            "else the test set: ensemble_loss, ensemble_accuracy. Runs stored before it "
            "existed have it false."
        ),
    )
    expert_ensemble: bool = Field(
        True,
        description=(
            "Clients hold the expert portfolio (stages 1–8); false = the shared model alone, "
            "as in any FL library (the baseline preset)."
        ),
    )
    # Feature toggles: stage N switches on every toggle of stages <= N.
    federated_averaging: bool = Field(
        False,
        description=(
            "Stage 2: FedAvg of a shared model (from stage 3 the clients send the server "
            "insights, not weights: an explicit option there)."
        ),
    )
    insight_exchange: bool = Field(False, description="Stage 3: structured insights to server.")
    expert_routing: bool = Field(False, description="Stage 4: router picks the expert to train.")
    meta_learning: bool = Field(False, description="Stage 5: EMA meta-parameters broadcast.")
    gossip: bool = Field(False, description="Stage 6: pairwise P2P expert averaging.")
    extended_experts: bool = Field(False, description="Stage 7: Memory + MetaAdaptation experts.")
    structure_discovery: bool = Field(False, description="Stage 8: self-supervised experts.")
    label_free: bool = Field(
        False,
        description=(
            "Stage 8 as the seed has it, no labels: the experts train only their "
            "self-supervised objectives, `loss` is their reconstruction loss, and a linear "
            "probe on held-out labelled rows scores the representation (probe_accuracy, or "
            "probe_loss for regression) instead of the ensemble's heads. Needs "
            "structure_discovery and no shared model; on in the stage8 preset for new "
            "requests, off for runs stored before it."
        ),
    )

    # Algorithm hyper-parameters.
    meta_ema_alpha: float = Field(0.1, gt=0, le=1, description="EMA weight of new statistics.")
    apply_meta_params: bool = Field(
        False,
        description=(
            "Clients use the meta-learner's broadcast: its learning rate `lr` (the base "
            "learning_rate ×5 while the clients' mean loss is above 10, ×2 above 1) becomes "
            "their supervised learning rate in the rounds after it (shared model and expert "
            "heads; MetaAdaptation scales it by its own factor); label_free clients, which "
            "train no head, scale ssl_learning_rate by the same multiple. On from stage 5 for "
            "new requests; runs stored before it have it off; without meta_learning nothing "
            "is broadcast and it does nothing."
        ),
    )
    meta_reptile: bool = Field(
        False, description="Reptile server step θ ← θ + ε·mean(θ_i − θ) instead of FedAvg."
    )
    reptile_step_size: float = Field(1.0, gt=0, le=1, description="Reptile ε.")
    meta_init: bool = Field(
        False,
        description=(
            "Reptile meta-initialisation (Nichol et al. 2018): the server keeps an "
            "initialisation per expert (and for the shared model), moved each round towards "
            "the mean of the participants' adapted weights by meta_step_size; a client's first "
            "round starts its experts from it, and arrivals' unseen clients adapt from it. "
            "Sends expert weights to the server."
        ),
    )
    meta_step_size: float = Field(
        1.0,
        gt=0,
        le=1,
        description=(
            "Reptile's outer step ε of meta_init: θ ← θ + ε·(mean of adapted − θ); 1 = the "
            "mean of the round's adapted weights."
        ),
    )

    # Federated strategy of the shared model (federated_averaging on): the server's aggregate
    # and what clients are told to do. Parameters left unset (null) take the chosen strategy's
    # default (`scarcity.strategies`); those of other strategies stay null.
    strategy: str = Field(
        "fedavg",
        description="Server aggregate of the shared model (GET /strategies lists them).",
        json_schema_extra=lambda schema: _list_strategies(schema),
    )

    # Client sampling (Flower's names): each round a deterministic draw of the participants.
    clients_per_round: int | None = Field(
        None, ge=1, description="Clients drawn each round; null = fraction_fit of them."
    )
    fraction_fit: float = Field(1.0, gt=0, le=1, description="Share of clients drawn per round.")
    min_fit_clients: int = Field(1, ge=1, description="At least this many drawn per round.")

    # Byzantine clients, fixed per run, so robust aggregators can be seen working.
    malicious_fraction: float = Field(
        0.0, ge=0, lt=1, description="Share of clients that attack (round(fraction·N), seeded)."
    )
    attack: AttackName = Field(
        "sign_flip",
        description=(
            "sign_flip: send w_g − s·Δ; gaussian: send w_g + N(0, s²); label_flip: train on "
            "flipped labels (s = attack_scale)."
        ),
    )
    attack_scale: float = Field(1.0, gt=0, le=1000, description="Strength s of the attack.")

    latent_dim: int = Field(4, ge=1, description="Autoencoder latent size (stage 8).")
    ssl_epochs: int = Field(
        10, ge=1, le=1000, description="Self-supervised autoencoder passes per round (stage 8)."
    )
    ssl_learning_rate: float = Field(
        0.01, gt=0, le=10, description="Adam learning rate of the experts' autoencoders."
    )
    memory_capacity: int = Field(50, ge=1, description="Replay buffer size of MemoryExpert.")
    replay_size: int = Field(
        0,
        ge=0,
        le=100_000,
        description=(
            "Experience replay: past training rows (with labels) each client keeps, chosen by "
            "reservoir sampling; every local epoch of its supervised training (shared model, "
            "experts) passes over the round's rows plus the buffer's. 0 = off."
        ),
    )
    lr_decrease_factor: float = Field(0.9, gt=0, le=1, description="MetaAdaptation on loss rise.")
    lr_increase_factor: float = Field(1.05, ge=1, le=10, description="MetaAdaptation on drop.")
    lr_improvement_threshold: float = Field(0.1, ge=0, description="Drop that raises the LR.")

    engine_version: int = Field(
        ENGINE_VERSION,
        ge=1,
        le=ENGINE_VERSION,
        description=(
            "Numerical revision of the engine a run was made with; a stored run keeps its own, "
            "so it resumes to the same numbers. 2: the memory expert's first replay step of a "
            "round is exact in the batched execution (1: within float rounding). 3: "
            "FedAdagrad/FedAdam/FedYogi average the clients' own updates, so a weight no "
            "client moved gets no server step (2: float rounding there became a step of η); "
            "meta_learning needs insight_exchange (2: it read insights never sent). 4: Krum, "
            "Multi-Krum and Bulyan take their distances from half the matrix products (3: the "
            "full product, symmetrised). 5: a loss or meta-parameter above 1e12 fails the run "
            "as diverged (4: only NaN and inf did). 6: shard leaves random shards out, as Flower "
            "Datasets does (5: the highest labels' rows); under resample_to_size a client's "
            "held-out rows are never copies of its training rows (5: they could be). 7: "
            "label_free's probe is 5-fold cross-validated and reported beside an untrained "
            "encoder's (6: fitted on half the held-out rows, scored on the other half). 8: every "
            "round reports the bytes its clients sent and received (bytes_up, bytes_down and "
            "the run's totals) and dp_fedavg the privacy spent (epsilon at dp_delta); 7 reports "
            "neither."
        ),
    )

    # How the engine computes (not what): both give the same metrics up to float rounding.
    execution: Literal["batched", "reference"] = Field(
        "batched",
        description=(
            "batched: all clients as tensors with a leading client axis, one round in a few "
            "tensor ops (fast at scale); reference: one object per client (readable)."
        ),
    )


# The type checker sees the run's own fields on the config; at run time they come with the
# assembled class (below), after which the owners' fields are inserted.
if TYPE_CHECKING:
    _Fields = _RunFields
else:
    _Fields = BaseModel


class _Checks(_Fields):
    """What a config checks and derives: every combination of fields, without reading data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _preset_is_applied(cls, data: Any) -> Any:
        """A preset named here must come with its settings: `SimulationConfig(preset="stage2")`
        alone would be stage 2 with every feature off. `resolve_config` fills them in."""
        if isinstance(data, Mapping) and isinstance(data.get("preset"), str):
            preset = PRESETS.get(data["preset"])
            missing = (
                {}
                if preset is None
                else {k: v for k, v in preset.overrides.items() if k not in data}
            )
            if missing:
                settings = ", ".join(f"{k}={v}" for k, v in missing.items())
                raise ConfigError(
                    "preset",
                    f"{data['preset']} means {settings}; build the config with "
                    f"resolve_config(preset={data['preset']!r}, ...) (or set them here)",
                )
        return data

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        info = dataset_info(self.dataset)
        if info is not None:
            features, classes = info.features, info.classes
            if self.input_dim != features:
                raise ConfigError(
                    "input_dim",
                    f"data set {self.dataset} has {features} features, got {self.input_dim}",
                )
            if self.output_dim != classes:
                raise ConfigError(
                    "output_dim",
                    f"data set {self.dataset} has {classes} classes, got {self.output_dim}",
                )
        self._check_partition()
        self._check_model()
        scored = self.federated_averaging or (self.expert_ensemble and self.ensemble_evaluation)
        if self.client_test_fraction > 0 and not scored:
            raise ConfigError(
                "client_test_fraction",
                "evaluates the shared model (federated_averaging) or the "
                "experts (ensemble_evaluation) on each client's rows and needs one of them",
            )
        if self.meta_init and not self.expert_ensemble and self.scenario != "arrivals":
            raise ConfigError(
                "meta_init",
                "without experts it initialises only the shared model, which only the unseen "
                "clients of scenario arrivals start from",
            )
        if self.meta_reptile and not self.federated_averaging:
            raise ConfigError("meta_reptile", "needs federated_averaging (the shared model)")
        if not self.expert_ensemble:
            if not self.federated_averaging:
                raise ConfigError(
                    "expert_ensemble",
                    "without experts a client trains only the shared model, "
                    "which needs federated_averaging",
                )
            for toggle in EXPERT_TOGGLES:
                if getattr(self, toggle):
                    raise ConfigError(toggle, "needs the experts (expert_ensemble true)")
        if self.label_free:
            self._check_label_free()
        if self.drift_detector != "none" and not (self.expert_ensemble and self.expert_routing):
            raise ConfigError(
                "drift_detector",
                "watches the loss of the expert the router picked and re-initialises it: "
                "needs the experts (expert_ensemble) and expert_routing",
            )
        if self.router_strategy == "loss" and self.label_free:
            raise ConfigError(
                "router_strategy",
                "loss routing measures each expert's supervised loss, which label_free never "
                "reads (choose variance, random, round_robin or balanced)",
            )
        if self.gossip_peers == "insight":
            for needed in ("gossip", "expert_routing", "insight_exchange"):
                if not getattr(self, needed):
                    raise ConfigError(
                        "gossip_peers",
                        "insight pairs the clients by the expert each chose and the insights "
                        f"they send the server: needs {needed}",
                    )
        if self.drift_detector != "none" and self.label_free:
            raise ConfigError(
                "drift_detector", "watches a supervised training loss, which label_free never has"
            )
        if self.replay_size > 0 and self.label_free:
            raise ConfigError(
                "replay_size",
                "replays labelled rows in supervised training, which label_free does not run",
            )
        if self.meta_learning and not self.insight_exchange and self.engine_version >= 3:
            # Earlier engines let it read the insights the clients never sent.
            raise ConfigError(
                "meta_learning",
                "the meta-learner learns from the insights the clients send the "
                "server and needs insight_exchange",
            )
        self._resolve_strategy()
        self._resolve_scenario()
        if self.malicious_fraction > 0 and self.attack != "label_flip":
            if not self.federated_averaging:
                raise ConfigError(
                    "attack",
                    f"{self.attack} tampers with the models sent to the server and "
                    "needs federated_averaging (label_flip does not)",
                )
        return self

    def _check_label_free(self) -> None:
        """Nothing may read the training labels."""
        if not self.structure_discovery:
            raise ConfigError(
                "label_free",
                "trains the experts' self-supervised objectives and needs "
                "structure_discovery (stage8)",
            )
        if self.federated_averaging:
            raise ConfigError(
                "label_free",
                "the shared model trains on labels; set federated_averaging false "
                "(or label_free false for the supervised hybrid)",
            )
        if self.malicious_fraction > 0 and self.attack == "label_flip":
            raise ConfigError("attack", "label_flip flips labels that label_free never reads")

    def _check_model(self) -> None:
        """The model must be a registered one that suits the data's shape."""
        if self.model not in BACKBONES:
            raise ConfigError(
                "model", f"unknown {self.model!r}; choose one of {', '.join(BACKBONES)}"
            )
        make_backbone(self)  # raises naming `model` when the shape does not fit (cnn: 8×8)

    def _check_partition(self) -> None:
        """The partition must suit the data set and be one that can be made."""
        partitioner = PARTITIONERS.get(self.partition)
        if partitioner is None:
            raise ConfigError(
                "partition",
                f"unknown {self.partition!r}, expected one of {', '.join(PARTITIONERS)}",
            )
        info = dataset_info(self.dataset)
        if info is None:
            if self.feature_scaling is not None:
                raise ConfigError("feature_scaling", "applies to a real data set, not synthetic")
            if partitioner.by_label:
                raise ConfigError(
                    "partition",
                    f"{self.partition} splits by label and needs a labelled data set "
                    "(digits, breast_cancer, wine, iris), not synthetic",
                )
            if self.partition != "iid":
                raise ConfigError(
                    "partition",
                    f"{self.partition} splits a real data set; synthetic clients "
                    "draw their own data (use quantity_skew for unequal sizes)",
                )
            return
        if self.feature_scaling is None:
            # A frozen model: filled in during validation only, as pydantic allows.
            object.__setattr__(self, "feature_scaling", info.scaling)
        if partitioner.by_client_id and not info.natural_clients:
            raise ConfigError(
                "partition",
                f"{self.partition} needs a data set whose rows name their client; "
                f"{self.dataset} has none (GET /datasets shows natural_clients)",
            )
        if partitioner.by_label and info.task == "regression":
            raise ConfigError(
                "partition",
                f"{self.partition} splits by label and {self.dataset} is a "
                "regression data set (iid, linear, square or exponential split it)",
            )
        if self.resample_to_size:
            if self.partition not in ("iid", "dirichlet"):
                raise ConfigError(
                    "resample_to_size",
                    "resizes an iid or dirichlet split only (the data of "
                    f"earlier simulations), not {self.partition}",
                )
            return
        if self.quantity_skew > 0 and "quantity_skew" not in partitioner.parameters:
            raise ConfigError(
                "quantity_skew",
                f"the clients of a real data set hold their natural share under "
                f"{self.partition}; use partition inner_dirichlet (requested sizes), linear, "
                "square or exponential, or resample_to_size",
            )
        # Whether the split can be made needs the data: `scarcity.plan` tries it.

    def _resolve_strategy(self) -> None:
        """`meta_reptile` is the `reptile` strategy; unset strategy parameters take the
        strategy's defaults; the combination must be one the strategy can run."""
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                "strategy", f"unknown {self.strategy!r}, expected one of {', '.join(STRATEGIES)}"
            )
        # A frozen model: fields are filled in during validation only, as pydantic allows.
        fill = object.__setattr__
        if self.meta_reptile and self.strategy not in ("fedavg", "reptile"):
            raise ConfigError(
                "meta_reptile",
                f"is the reptile strategy; it cannot go with strategy "
                f"{self.strategy} (drop meta_reptile or set strategy=reptile)",
            )
        if self.meta_reptile:
            fill(self, "strategy", "reptile")
        elif self.strategy == "reptile":
            fill(self, "meta_reptile", True)
        if self.strategy != "fedavg" and not self.federated_averaging:
            raise ConfigError(
                "strategy",
                f"{self.strategy} aggregates the shared model and needs "
                "federated_averaging (stage2 or later)",
            )
        resolved = STRATEGIES[self.strategy].resolve(self, participants_per_round(self))
        for name, value in resolved.items():
            fill(self, name, value)

    def _resolve_scenario(self) -> None:
        """Unset scenario parameters take the scenario's defaults (for this data set's task)."""
        cls = scenario_class(self.scenario)
        classification = not is_regression(self.dataset)
        for name, value in cls.resolve(self, classification).items():
            object.__setattr__(self, name, value)

    @property
    def stage(self) -> int:
        return int(self.preset.removeprefix("stage"))


def _assemble() -> type[_Checks]:
    """`SimulationConfig`: the run's own fields, each owner's fields after the field that
    chooses it (a backbone's after `model`, ...), and the checks."""
    owned = {
        "model": backbone_params(),
        "partition": partition_params(),
        "strategy": strategy_params(),
        "scenario": scenario_params(),
    }
    fields: dict[str, Any] = {}
    for name, info in _RunFields.model_fields.items():
        fields[name] = (info.annotation, info)
        for param in owned.get(name, ()):
            if param.name in fields or param.name in _RunFields.model_fields:
                raise TypeError(f"{param.name}: declared by two owners, or also the run's own")
            fields[param.name] = param.field()
    model: type[_Checks] = create_model(
        "SimulationConfig",
        __base__=_Checks,
        __module__=__name__,
        __doc__="Every knob of one SF-HFE simulation, fully resolved (no field is ever missing).",
        **fields,
    )
    return model


if TYPE_CHECKING:
    SimulationConfig = _Checks
else:
    SimulationConfig = _assemble()


def strategy_names() -> list[str]:
    """The registered strategies (`scarcity.strategies.STRATEGIES`), the one list of them."""
    return list(STRATEGIES)


def _list_strategies(schema: dict[str, JsonValue]) -> None:
    """The `strategy` field's JSON schema names the registry's strategies (the form's choices)."""
    names: list[JsonValue] = [*strategy_names()]
    schema["enum"] = names


def _list_scenarios(schema: dict[str, JsonValue]) -> None:
    """The `scenario` field's JSON schema names the registry's scenarios (the form's choices)."""
    names: list[JsonValue] = [*SCENARIOS]
    schema["enum"] = names


def _list_models(schema: dict[str, JsonValue]) -> None:
    """The `model` field's JSON schema names the registry's backbones."""
    names: list[JsonValue] = [*BACKBONES]
    schema["enum"] = names


def _list_datasets(schema: dict[str, JsonValue]) -> None:
    """The `dataset` field's JSON schema names the built-in data sets (an upload's id is
    also accepted)."""
    names: list[JsonValue] = [SYNTHETIC, *DATASETS]
    schema["examples"] = names


def _list_partitions(schema: dict[str, JsonValue]) -> None:
    """The `partition` field's JSON schema names the registry's partitioners."""
    names: list[JsonValue] = [*PARTITIONERS]
    schema["enum"] = names


#: The SF-HFE mechanisms that work on the experts (off in the baseline preset).
EXPERT_TOGGLES = (
    "insight_exchange",
    "expert_routing",
    "meta_learning",
    "gossip",
    "extended_experts",
    "structure_discovery",
)


def participants_per_round(config: SimulationConfig) -> int:
    """Clients drawn each round: `clients_per_round`, else max(⌊N·fraction_fit⌋,
    min_fit_clients) as Flower counts them, at most N."""
    n = config.num_clients
    if config.clients_per_round is not None:
        return min(config.clients_per_round, n)
    return min(n, max(int(n * config.fraction_fit), config.min_fit_clients))


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    overrides: Mapping[str, Any]


_STAGE_FEATURES: list[tuple[str, str | None, str]] = [
    (
        "stage1",
        None,
        "Local training and insight generation: 2 experts per client, no coordination.",
    ),
    ("stage2", "federated_averaging", "Federated learning: FedAvg of a shared Linear model."),
    (
        "stage3",
        "insight_exchange",
        "Insight exchange: gradient/uncertainty insights, no raw weights.",
    ),
    ("stage4", "expert_routing", "Expert routing: the router picks the expert each client trains."),
    ("stage5", "meta_learning", "Reptile-style meta-learning: EMA meta-parameters broadcast."),
    ("stage6", "gossip", "P2P gossip: random client pairs average one expert's weights."),
    (
        "stage7",
        "extended_experts",
        "Extended portfolio: Memory and MetaAdaptation experts (4), balanced routing.",
    ),
    (
        "stage8",
        "structure_discovery",
        "Full SF-HFE round with self-supervised structure discovery, no labels (linear probe).",
    ),
]


def _build_presets() -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    switched_on: dict[str, Any] = {}
    for name, feature, description in _STAGE_FEATURES:
        if feature is not None:
            switched_on[feature] = True
        if feature == "insight_exchange":
            # From stage 3 clients share insights, not weights, with the server: the shared
            # model is stage 2's, an explicit option later on.
            switched_on["federated_averaging"] = False
        if feature == "meta_learning":
            # The broadcast is used, not only stored (the seed's "faster convergence").
            switched_on["apply_meta_params"] = True
        if feature == "structure_discovery":
            switched_on["label_free"] = True  # "no labels, only unlabeled data"
        if feature == "extended_experts":
            # Four experts: the variance rule alone picks only two of them.
            switched_on["router_strategy"] = "balanced"
        presets[name] = Preset(name, description, dict(switched_on))
    presets["baseline"] = Preset(
        "baseline",
        "FL baseline: the chosen strategy on the shared Linear model alone, no expert ensemble.",
        {"federated_averaging": True, "expert_ensemble": False},
    )
    return presets


PRESETS: dict[str, Preset] = _build_presets()


def stored_config(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A config stored by an earlier version, with each field added since then set to what
    that version did where the new default would change its results: a real data set stored
    before natural sizes was resampled (`resample_to_size`) and standardised
    (`feature_scaling`), any stored run keeps `engine_version` 1, reports no ensemble metrics
    (`ensemble_evaluation`), has clients that do not use the meta-parameters
    (`apply_meta_params`) and a stage 8 that trains on labels (`label_free`). The database
    migrations write the same into stored rows; checkpoints keep the config they were written
    with."""
    upgraded = dict(fields)
    upgraded.setdefault("engine_version", 1)
    upgraded.setdefault("ensemble_evaluation", False)
    upgraded.setdefault("apply_meta_params", False)
    upgraded.setdefault("label_free", False)
    if upgraded.get("dataset", "synthetic") != "synthetic":
        upgraded.setdefault("resample_to_size", True)
        upgraded.setdefault("feature_scaling", "standard")
    return upgraded


def resolve_config(
    request: Mapping[str, Any] | None = None, /, **overrides: Any
) -> SimulationConfig:
    """Preset defaults, then the caller's overrides, validated as one `SimulationConfig`.

    Raises `pydantic.ValidationError` naming the offending field (a combination refused is a
    `ConfigError` in its context). It reads no data: whether a real data set can be split as
    asked is for `scarcity.plan.plan`, which raises `ConfigError` naming the field.
    """
    fields = {**(request or {}), **overrides}
    preset_name = fields.get("preset", "stage8")
    preset = PRESETS.get(preset_name) if isinstance(preset_name, str) else None
    base: dict[str, Any] = dict(preset.overrides) if preset else {}
    dataset = fields.get("dataset")
    info = find_dataset(dataset) if isinstance(dataset, str) and dataset != SYNTHETIC else None
    if info is not None:
        base.update(input_dim=info.features, output_dim=info.classes)
        if info.natural_clients:
            base.update(partition="natural", num_clients=info.natural_clients)
        base.update(info.defaults)  # what a paper trains it with; the request may override
    return SimulationConfig.model_validate({**base, **fields})
