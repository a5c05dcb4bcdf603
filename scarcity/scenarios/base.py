"""What a scenario is: which rows each client holds in each round, and how the round is judged.

Every run so far held static data: each client the same rows in every round. A scenario (config
`scenario`) takes the clients' rows as the partition gave them (`ClientRows`: each client's
training rows and the held-out rows it is judged on) and decides, round by round, what each
client holds (`Scenario.rows`), as a pure function of the config and the round (its random choices
come from their own stream of the seed), so both executions see the same rows and a run resumed
from a checkpoint continues exactly. Its metrics (`Scenario.metrics`) score the model each client
would use on rows the scenario chooses (the next block's concept, every task seen so far), through
a `Score` the simulation provides. A scenario may also decide who trains (`Scenario.available`:
clients offline, or never joining) and judge the shared model itself (`Scenario.model_metrics`,
e.g. after a few steps of adaptation on a newcomer's rows).

A scenario module defines one `Scenario` subclass, cites the paper whose set-up it builds, declares
the config fields it reads (`scarcity.params.Param`, filled with `defaults` when the scenario is
chosen and left unset) and is listed in `scarcity.scenarios.SCENARIOS`. It imports nothing of the
engine that runs it: rows in, rows out.
"""

from __future__ import annotations

import math
from abc import ABC
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scarcity.errors import ConfigError
from scarcity.params import Param, RunConfig

#: Second and third seed words of a scenario's own random stream (apart from the data's draws).
SCENARIO_STREAM = (0xDA7A, 0x5CE)

Rows = tuple[Tensor, ...]
#: Each client's held-out rows (x, y), one pair per client of the run.
EvalSets = Sequence[tuple[Tensor, Tensor]]
#: The simulation's scorer: the mean over this round's participants of the accuracy of the model
#: each would use on its own rows of `EvalSets`; None when the run has nothing to score with
#: (regression, or no supervised model: the label-free stage 8).
Score = Callable[[EvalSets], float | None]


@dataclass(frozen=True)
class ClientRows:
    """Each client's training rows and the held-out rows it is judged on, one entry per client."""

    train_x: Rows
    train_y: Rows
    eval_x: Rows
    eval_y: Rows

    @property
    def eval_sets(self) -> list[tuple[Tensor, Tensor]]:
        return list(zip(self.eval_x, self.eval_y, strict=True))

    @property
    def num_clients(self) -> int:
        return len(self.train_x)


class Scenario(ABC):
    """One way the clients' data changes over the rounds; one instance per simulation."""

    #: The registry name (the config's `scenario` value).
    name: ClassVar[str]
    #: Short citation of the paper whose set-up this builds.
    paper: ClassVar[str] = ""
    #: One line for users.
    summary: ClassVar[str]
    #: The config fields this scenario reads beyond the run's own.
    params: ClassVar[tuple[Param, ...]] = ()
    #: The value of each of its fields that a request leaving it unset (null) gets.
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: Whether the simulation consults the scenario at all (False: static, the run as it was).
    consulted: ClassVar[bool] = True
    #: Whether the rows ever differ from the partition's (False: every client trains and is
    #: judged on the partition's rows, as in a static run).
    moves_data: ClassVar[bool] = True
    #: Whether the scenario needs class labels (a classification data set).
    needs_labels: ClassVar[bool] = False

    def __init__(self, config: RunConfig, base: ClientRows, classes: int) -> None:
        self.config = config
        self.base = base
        self.classes = classes

    @classmethod
    def resolve(cls, config: RunConfig, classification: bool) -> dict[str, Any]:
        """The values of this scenario's unset (None) fields for a run on a classification (or
        regression) data set; raises `ConfigError` naming the field for a config the scenario
        cannot run. The default: `defaults`, and classes needed where `needs_labels`."""
        if cls.needs_labels and not classification:
            raise ConfigError(
                "scenario", f"{cls.name} needs class labels (a classification data set)"
            )
        return {
            name: value for name, value in cls.defaults.items() if getattr(config, name) is None
        }

    def rows(self, round_index: int) -> ClientRows:
        """What every client holds in round `round_index` (rounds start at 1)."""
        return self.base

    def segment(self, round_index: int) -> Any:
        """Rounds with equal segments hold equal rows (the clients' rows re-stack on a change)."""
        return 0

    def available(self, round_index: int, drawn: Tensor) -> Tensor:
        """Which of the round's drawn participants (ascending ids [P]) train in round
        `round_index`, ascending, at least one: all of them unless the scenario keeps some away."""
        return drawn

    def metrics(self, round_index: int, score: Score) -> dict[str, float]:
        """The scenario's own figures of round `round_index`, after training."""
        return {}

    def model_metrics(self, round_index: int, model: nn.Module) -> dict[str, float]:
        """The scenario's figures of the shared model as round `round_index` left it (runs with
        federated_averaging only). `model` is the server's: read it, never change it."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What `metrics` carries from round to round (checkpointed)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 (stateless: no-op)
        """Continue exactly from `state_dict()`'s value."""


def scenario_rng(config: RunConfig, *words: int) -> np.random.Generator:
    """The scenario's own random stream: a fixed function of the seed, apart from the data's."""
    return np.random.default_rng([config.seed, *SCENARIO_STREAM, *words])


def keep_allowed(
    config: RunConfig, round_index: int, drawn: Tensor, allowed: np.ndarray, word: int
) -> Tensor:
    """The drawn participants [P] that `allowed` [N] (bool, at least one True) lets train; when
    none of them may, one allowed client drawn from the scenario's stream (`word`, the round),
    so that every round trains someone and the run's own draws stay as they were."""
    kept = drawn[torch.from_numpy(allowed[drawn.numpy()])]
    if len(kept):
        return kept
    pick = scenario_rng(config, word, round_index).choice(np.flatnonzero(allowed))
    return torch.tensor([int(pick)], dtype=drawn.dtype)


def block_of(round_index: int, rounds: int, blocks: int) -> int:
    """The time block (0-based) round `round_index` falls in when `rounds` rounds are cut into
    `blocks` near-equal consecutive blocks (the first ones one round longer)."""
    return int(np.searchsorted(block_starts(rounds, blocks), round_index, side="right")) - 1


def block_starts(rounds: int, blocks: int) -> np.ndarray:
    """The first round of each block, [blocks] (rounds start at 1)."""
    sizes = [len(part) for part in np.array_split(np.arange(rounds), blocks)]
    return 1 + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


# -- transforms a concept or a task applies to a client's rows --------------------------------
def swap_labels(y: Tensor, concept: int, classes: int) -> Tensor:
    """Concept j ≥ 1 swaps classes 2(j−1) and 2(j−1)+1 (mod the number of classes), as FedDrift
    swaps pairs of labels; concept 0 is the data as it is."""
    if concept == 0:
        return y
    a, b = (2 * (concept - 1)) % classes, (2 * (concept - 1) + 1) % classes
    swapped = y.clone()
    swapped[y == a], swapped[y == b] = b, a
    return swapped


def image_side(features: int) -> int | None:
    """The side of a square one-channel image of `features` pixels (8×8 digits, 28×28 MNIST and
    Fashion-MNIST), else None (tabular features)."""
    side = math.isqrt(features)
    return side if side * side == features and side > 1 else None


def rotate(x: Tensor, degrees: float) -> Tensor:
    """Rows rotated by `degrees`: a square image about its centre (bilinear, zero outside, as
    rotated-MNIST builds its tasks); tabular features pairwise, (x₀, x₁), (x₂, x₃), … each turned
    by the angle in its plane (a rotation of the feature space; an odd last feature stays)."""
    if degrees == 0 or len(x) == 0:
        return x
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    side = image_side(x.shape[1])
    if side is None:
        out = x.clone()
        pairs = x.shape[1] // 2 * 2
        a, b = x[:, 0:pairs:2], x[:, 1:pairs:2]
        out[:, 0:pairs:2], out[:, 1:pairs:2] = cos * a - sin * b, sin * a + cos * b
        return out
    matrix = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype)
    images = x.reshape(len(x), 1, side, side)
    grid = F.affine_grid(matrix.expand(len(x), 2, 3), list(images.shape), align_corners=False)
    turned = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return turned.reshape(len(x), -1)


def permute_features(x: Tensor, order: Tensor | None) -> Tensor:
    """Rows with their features (pixels) in `order`, as permuted-MNIST builds its tasks."""
    return x if order is None else x[:, order]
