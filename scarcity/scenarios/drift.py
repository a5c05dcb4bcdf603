"""`drift`: concept drift over time blocks, as FedDrift builds it.

Jothimurugesan, Hsieh, Wang, Joshi & Gibbons (2023), "Federated Learning under Distributed
Concept Drift", AISTATS. The rounds are cut into `drift_blocks` consecutive time blocks of
near-equal length (the first ones a round longer). Each client holds one concept per block:
concept j in block j, except the clients that drift late (each client, drawn once from the
scenario's stream with probability ½), which hold concept j − 1 in block j — so clients drift at
different times, as FedDrift staggers them. A concept is a transformation of the client's rows
(`drift_kind`):

- `label_swap`: concept j ≥ 1 swaps classes 2(j−1) and 2(j−1)+1 (mod the classes), FedDrift's
  label swaps; the features stay (a classification data set only);
- `rotation`: concept j rotates every row by j·180°/B (B blocks): a square image about its
  centre, tabular features pairwise in their planes (`scarcity.scenarios.base.rotate`);
- `shift`: concept j adds j to every feature (j standard deviations of a standardised feature;
  labels and targets stay: covariate shift);
- `stream` (the default on a stream data set, whose row order is time: `sea`, `stagger`,
  `hyperplane`, `rainfall`): the concept is the stream's own. Each client's training rows, in
  time order, are cut into `drift_blocks` consecutive chunks of near-equal size (the first ones
  a row longer), and so are its held-out rows; in block b the client trains on its chunk b and
  is judged on its held-out chunk b, and `next_block_accuracy` scores held-out chunk b + 1:
  FedDrift's train at t, test at t + 1 on a real stream. Every client follows the one timeline
  (no client drifts late; the stream decides when its concept changes). The rows reach the
  clients as the partition deals them, each client's in time order (a split keeps data-set
  order), so under `iid` every client holds a uniform share of the whole stream and its chunk b
  covers the same stretch of time as every other client's; its held-out rows are the test rows
  dealt in turn (row i to client i mod N), in time order too. A client's own random held-out
  rows (`client_test_fraction`) have no time order, nor do resampled clients
  (`resample_to_size`): both are refused, as is `gradual` (the chunks follow one another).

`drift_mode` `sudden`: a client's rows change at the first round of its new block. `gradual`: over
the block in which a client changes, a growing share of its rows (i/m in the block's i-th of m
rounds, rows in an order drawn once per client) follows the new concept, the rest the old one.
A client is judged on its held-out rows under its concept of the block (the new one while it moves).

`next_block_accuracy` (FedDrift's figure: train at time t, test on t + 1): the mean over the
round's participants of the accuracy of the model each would use on its held-out rows under its
concept of the next block; the last block has none. After each drift (a block's first round),
`drift_accuracy_drop`: the accuracy on the clients' current concepts in the round before minus
in this one; and in the first round it is back within 0.01 of that level,
`drift_recovery_rounds`: the rounds it took (1: the drift's own round). A drift not recovered
from before the next one reports no recovery. With a `drift_detector`, `DetectionScore` also
scores its alarms against each client's true changes: `drift_detection_delay` and
`drift_false_alarms`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from scarcity.datasets import is_stream
from scarcity.errors import ConfigError
from scarcity.params import Param, RunConfig
from scarcity.scenarios.base import (
    ClientRows,
    Scenario,
    Score,
    block_of,
    block_starts,
    rotate,
    scenario_rng,
    swap_labels,
)

#: A drift is recovered from once the accuracy is back within this of its level before the drift.
RECOVERY_TOLERANCE = 0.01

DRIFT_BLOCKS = Param(
    "drift_blocks",
    int | None,
    None,
    "drift: time blocks the rounds are cut into; clients change concept between blocks "
    "(default 4, at most the rounds).",
    ge=2,
    le=1000,
)
DRIFT_KIND = Param(
    "drift_kind",
    Literal["label_swap", "rotation", "shift", "stream"] | None,
    None,
    "drift: what a new concept does to a client's rows: label_swap (two classes swap labels; "
    "the default for classification), rotation (images about their centre, tabular features "
    "pairwise), shift (every feature + j; the default for regression), stream (a stream data "
    "set's own drift: block b trains on the b-th time chunk of each client's rows; the "
    "default on a stream).",
)
DRIFT_MODE = Param(
    "drift_mode",
    Literal["sudden", "gradual"] | None,
    None,
    "drift: sudden (a client's rows change at once; the default) or gradual (a growing share "
    "of its rows over the block).",
)


class Drift(Scenario):
    name: ClassVar[str] = "drift"
    paper: ClassVar[str] = (
        "Jothimurugesan, Hsieh, Wang, Joshi & Gibbons 2023, Federated Learning under "
        "Distributed Concept Drift (AISTATS)"
    )
    summary: ClassVar[str] = (
        "Concept drift: time blocks, a concept per client per block, clients drifting at "
        "different times (FedDrift)."
    )
    params: ClassVar[tuple[Param, ...]] = (DRIFT_BLOCKS, DRIFT_KIND, DRIFT_MODE)
    defaults: ClassVar[Mapping[str, Any]] = {"drift_blocks": 4, "drift_mode": "sudden"}

    @classmethod
    def resolve(cls, config: RunConfig, classification: bool) -> dict[str, Any]:
        values = super().resolve(config, classification)
        stream = is_stream(config.dataset)
        if config.drift_kind is None:
            values["drift_kind"] = (
                "stream" if stream else "label_swap" if classification else "shift"
            )
        kind = values.get("drift_kind", config.drift_kind)
        if kind == "stream":
            cls._check_stream(config, stream, values.get("drift_mode", config.drift_mode))
        if kind == "label_swap" and not classification:
            raise ConfigError(
                "drift_kind",
                "label_swap swaps class labels: a regression data set drifts by rotation or shift",
            )
        blocks = values.get("drift_blocks", config.drift_blocks)
        if blocks > config.rounds:
            raise ConfigError(
                "drift_blocks", f"{blocks} blocks need at least as many rounds ({config.rounds})"
            )
        return values

    @staticmethod
    def _check_stream(config: RunConfig, stream: bool, mode: str) -> None:
        """A stream's chunks need its rows in time order on every client."""
        if not stream:
            raise ConfigError(
                "drift_kind",
                f"stream cuts a stream data set's rows in time order; {config.dataset} is not "
                "one (sea, stagger, hyperplane and rainfall are)",
            )
        if mode == "gradual":
            raise ConfigError("drift_mode", "a stream's time chunks follow one another: sudden")
        if config.client_test_fraction > 0:
            raise ConfigError(
                "client_test_fraction",
                "a client's own held-out rows are drawn at random, out of time order: the "
                "stream drift kind is judged on the test rows dealt in turn (leave it 0)",
            )
        if getattr(config, "resample_to_size", False):  # noqa: B009 (a field of the run)
            raise ConfigError(
                "resample_to_size",
                "resampled clients hold rows out of time order: the stream drift kind needs "
                "natural sizes",
            )

    def __init__(self, config: RunConfig, base: ClientRows, classes: int) -> None:
        super().__init__(config, base, classes)
        self.blocks = int(config.drift_blocks)
        self.starts = block_starts(config.rounds, self.blocks)
        rng = scenario_rng(config, 0xD1F7)
        #: 1 for the clients that drift a block late, 0 for the others [N].
        self.lag = rng.integers(0, 2, size=base.num_clients)
        self.stream = config.drift_kind == "stream"
        if self.stream:
            self.lag[:] = 0  # one timeline: concept b is time chunk b for every client
            short = [
                c
                for c in range(base.num_clients)
                if min(len(base.train_y[c]), len(base.eval_y[c])) < self.blocks
            ]
            if short:
                raise ConfigError(
                    "drift_blocks",
                    f"client {short[0]} holds fewer training or held-out rows than the "
                    f"{self.blocks} time chunks the stream is cut into",
                )
        #: Gradual drift: the order in which each client's rows take up the new concept.
        self.order = [rng.permutation(len(x)) for x in base.train_x]
        #: The accuracy on the current concept in the last round, and the level before the
        #: drift being recovered from (None: none pending).
        self.last: float | None = None
        self.before: float | None = None

    # -- the schedule ---------------------------------------------------------------------
    def concept(self, client: int, block: int) -> int:
        """Client `client`'s concept in block `block` (0-based; block −1 is concept 0)."""
        return max(0, block - int(self.lag[client]))

    def block(self, round_index: int) -> int:
        return block_of(round_index, self.config.rounds, self.blocks)

    def share(self, client: int, round_index: int) -> float:
        """The share of the client's rows under its block's concept in round `round_index`:
        1, except while a gradual drift moves it (i/m in the i-th of the block's m rounds)."""
        b = self.block(round_index)
        if self.config.drift_mode == "sudden" or self.concept(client, b) == self.concept(
            client, b - 1
        ):
            return 1.0
        end = self.starts[b + 1] if b + 1 < self.blocks else self.config.rounds + 1
        return (round_index - self.starts[b] + 1) / (end - self.starts[b])

    def segment(self, round_index: int) -> Any:
        b = self.block(round_index)
        moving = self.config.drift_mode == "gradual" and any(
            self.concept(c, b) != self.concept(c, b - 1) for c in range(self.base.num_clients)
        )
        return (b, round_index) if moving else (b,)

    # -- the rows ------------------------------------------------------------------------
    def transform(self, x: Tensor, y: Tensor, concept: int) -> tuple[Tensor, Tensor]:
        """Rows under concept `concept` (0: as they are)."""
        if concept == 0:
            return x, y
        kind = self.config.drift_kind
        if kind == "label_swap":
            return x, swap_labels(y, concept, self.classes)
        if kind == "rotation":
            return rotate(x, concept * 180.0 / self.blocks), y
        return x + float(concept), y

    def chunk(self, rows: int, block: int) -> slice:
        """A stream's time chunk `block` of a client's `rows` rows in time order: consecutive,
        near-equal (the first ones a row longer)."""
        return chunk_of(rows, self.blocks, block)

    def rows(self, round_index: int) -> ClientRows:
        b = self.block(round_index)
        if self.stream:
            chunks = [
                (x[self.chunk(len(x), b)], y[self.chunk(len(y), b)])
                for x, y in zip(self.base.train_x, self.base.train_y, strict=True)
            ]
            return ClientRows(
                tuple(x for x, _ in chunks), tuple(y for _, y in chunks), *self._eval(b)
            )
        train_x, train_y = [], []
        for c, (x, y) in enumerate(zip(self.base.train_x, self.base.train_y, strict=True)):
            new, old = self.concept(c, b), self.concept(c, b - 1)
            share = self.share(c, round_index)
            if share >= 1.0 or new == old:
                x, y = self.transform(x, y, new)
            else:  # gradual: the first ⌈share·n⌉ rows of the client's order take the new concept
                moved = torch.from_numpy(np.sort(self.order[c][: math.ceil(share * len(x))]))
                stay = torch.ones(len(x), dtype=torch.bool)
                stay[moved] = False
                x_new, y_new = self.transform(x[moved], y[moved], new)
                x_old, y_old = self.transform(x[stay], y[stay], old)
                x, y = x.clone(), y.clone()
                x[moved], y[moved], x[stay], y[stay] = x_new, y_new, x_old, y_old
            train_x.append(x)
            train_y.append(y)
        eval_x, eval_y = self._eval(b)
        return ClientRows(tuple(train_x), tuple(train_y), eval_x, eval_y)

    @functools.lru_cache(maxsize=2)  # noqa: B019 (one scenario per simulation, two blocks held)
    def _eval(self, block: int) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Every client's held-out rows under its concept of block `block` (a stream: its held-out
        time chunk `block`)."""
        if self.stream:
            pairs = [
                (x[self.chunk(len(x), block)], y[self.chunk(len(y), block)])
                for x, y in zip(self.base.eval_x, self.base.eval_y, strict=True)
            ]
            return tuple(x for x, _ in pairs), tuple(y for _, y in pairs)
        pairs = [
            self.transform(x, y, self.concept(c, block))
            for c, (x, y) in enumerate(zip(self.base.eval_x, self.base.eval_y, strict=True))
        ]
        return tuple(x for x, _ in pairs), tuple(y for _, y in pairs)

    def metrics(self, round_index: int, score: Score) -> dict[str, float]:
        b = self.block(round_index)
        current = score(list(zip(*self._eval(b), strict=True)))
        if current is None:
            return {}
        out = self._recovery(round_index, b, current)
        if b + 1 < self.blocks:
            upcoming = score(list(zip(*self._eval(b + 1), strict=True)))
            if upcoming is not None:
                out["next_block_accuracy"] = upcoming
        return out

    def _recovery(self, round_index: int, block: int, accuracy: float) -> dict[str, float]:
        """The drop and the recovery after each drift: in a block's first round (block ≥ 1)
        `drift_accuracy_drop` = the accuracy on the current concept in the previous round minus
        now; in the first round whose accuracy is back within `RECOVERY_TOLERANCE` of that level,
        `drift_recovery_rounds` = the rounds since the drift began (1: at once)."""
        out: dict[str, float] = {}
        if block > 0 and round_index == self.starts[block] and self.last is not None:
            self.before = self.last
            out["drift_accuracy_drop"] = self.before - accuracy
        if self.before is not None and accuracy >= self.before - RECOVERY_TOLERANCE:
            out["drift_recovery_rounds"] = float(round_index - self.starts[block] + 1)
            self.before = None
        self.last = accuracy
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"last": self.last, "before": self.before}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last, self.before = state["last"], state["before"]


class DetectionScore:
    """How well a `drift_detector` finds a drift scenario's true changes (each client's concept
    change: `Drift.concept` differs between the blocks of two consecutive rounds, whether or not
    the client trains then). A change is pending until the client's first alarm;
    `drift_detection_delay` is the mean over the detected changes so far of the rounds from the
    change to that alarm (0: in the change's own round), `drift_false_alarms` the number of
    alarms so far with no change pending (none since the client's last alarm)."""

    def __init__(self, scenario: Drift) -> None:
        self.scenario = scenario
        n = len(scenario.lag)
        #: Each client's round of its undetected change (0: none pending).
        self.pending = [0] * n
        self.delays: list[int] = []
        self.false_alarms = 0

    def metrics(self, round_index: int, alarmed: list[int]) -> dict[str, float]:
        """Round `round_index`'s changes and alarms (client ids) counted in; the run's figures."""
        scenario = self.scenario
        if round_index > 1:
            b, before = scenario.block(round_index), scenario.block(round_index - 1)
            for c in range(len(self.pending)):
                if scenario.concept(c, b) != scenario.concept(c, before):
                    self.pending[c] = round_index
        for c in alarmed:
            if self.pending[c]:
                self.delays.append(round_index - self.pending[c])
                self.pending[c] = 0
            else:
                self.false_alarms += 1
        out = {"drift_false_alarms": float(self.false_alarms)}
        if self.delays:
            out["drift_detection_delay"] = sum(self.delays) / len(self.delays)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "pending": list(self.pending),
            "delays": list(self.delays),
            "false_alarms": self.false_alarms,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pending = list(state["pending"])
        self.delays = list(state["delays"])
        self.false_alarms = int(state["false_alarms"])


def chunk_of(rows: int, blocks: int, block: int) -> slice:
    """Chunk `block` (0-based) of `rows` consecutive rows cut into `blocks` near-equal parts,
    the first ones a row longer (`numpy.array_split`'s cut)."""
    small, extra = divmod(rows, blocks)
    start = block * small + min(block, extra)
    return slice(start, start + small + (1 if block < extra else 0))
