"""`tasks`: a sequence of tasks per client, as continual federated learning builds them.

Yoon, Jeong, Lee, Yang & Hwang (2021), "Federated Continual Learning with Weighted
Inter-client Transfer" (FedWeIT), ICML: every client learns the tasks one after another, each
task a block of consecutive rounds (`num_tasks` near-equal blocks, the first ones a round
longer), and is judged on every task seen so far. A task (`task_kind`):

- `class_split`: task t holds the classes of the t-th of `num_tasks` consecutive, near-equal
  groups of labels (Fashion-MNIST in 5 tasks of 2 classes: {0, 1}, {2, 3}, …): a client trains
  on its rows of those classes and is judged on its held-out rows of them (class-incremental);
  every client must hold a row of every task's classes;
- `rotated`: task t rotates every row by t·180°/T (rotated MNIST; images about their centre,
  tabular features pairwise);
- `permuted`: task t ≥ 1 reorders the features by its own random permutation, drawn once from
  the scenario's stream (permuted MNIST); task 0 is the data as it is.

The metrics (classification) come from the accuracy matrix a[l][j], the accuracy on task j's
held-out rows after training through task l (the last round of task l), here the mean over the
round's participants of the model each would use; they are reported in the last round of each
task, as the papers report them (scoring every task seen in every round would cost a pass over
their held-out rows each). At the end of task t: `avg_task_accuracy` = mean over j ≤ t of
a[t][j] (the average accuracy over the tasks seen); `forgetting` (Chaudhry, Dokania, Ajanthan &
Torr 2018, ECCV) = mean over j < t of max_{j ≤ l < t} a[l][j] − a[t][j]; `backward_transfer`
(Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory", NeurIPS) = mean over j < t of
a[t][j] − a[j][j]. The run's last round ends the last task: its figures are the papers'
end-of-sequence ones.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from scarcity.errors import ConfigError
from scarcity.params import Param, RunConfig
from scarcity.scenarios.base import (
    ClientRows,
    Scenario,
    Score,
    block_of,
    block_starts,
    permute_features,
    rotate,
    scenario_rng,
)

NUM_TASKS = Param(
    "num_tasks",
    int | None,
    None,
    "tasks: tasks in each client's sequence, each a block of rounds (default 5, at most the "
    "rounds; class_split: at most the classes).",
    ge=2,
    le=1000,
)
TASK_KIND = Param(
    "task_kind",
    Literal["class_split", "rotated", "permuted"] | None,
    None,
    "tasks: class_split (each task a group of classes; the default for classification), rotated "
    "(task t rotates rows by t·180°/num_tasks) or permuted (a random feature order per task; the "
    "default for regression).",
)


class Tasks(Scenario):
    name: ClassVar[str] = "tasks"
    paper: ClassVar[str] = (
        "Yoon, Jeong, Lee, Yang & Hwang 2021, Federated Continual Learning with Weighted "
        "Inter-client Transfer (ICML)"
    )
    summary: ClassVar[str] = (
        "A sequence of tasks per client (class-incremental, rotated or permuted), judged on "
        "every task seen (FedWeIT)."
    )
    params: ClassVar[tuple[Param, ...]] = (NUM_TASKS, TASK_KIND)
    defaults: ClassVar[Mapping[str, Any]] = {"num_tasks": 5}

    @classmethod
    def resolve(cls, config: RunConfig, classification: bool) -> dict[str, Any]:
        values = super().resolve(config, classification)
        if config.task_kind is None:
            values["task_kind"] = "class_split" if classification else "permuted"
        kind = values.get("task_kind", config.task_kind)
        tasks = values.get("num_tasks", config.num_tasks)
        if kind == "class_split" and not classification:
            raise ConfigError(
                "task_kind", "class_split needs class labels: use rotated or permuted"
            )
        if kind == "class_split" and tasks > config.output_dim:
            raise ConfigError(
                "num_tasks",
                f"class_split: {tasks} tasks need as many classes ({config.output_dim})",
            )
        if tasks > config.rounds:
            raise ConfigError(
                "num_tasks", f"{tasks} tasks need at least as many rounds ({config.rounds})"
            )
        return values

    def __init__(self, config: RunConfig, base: ClientRows, classes: int) -> None:
        super().__init__(config, base, classes)
        self.count = int(config.num_tasks)
        self.kind = config.task_kind
        features = base.train_x[0].shape[1] if base.train_x else 0
        rng = scenario_rng(config, 0x7A5C)
        #: permuted: each task's feature order (task 0 none).
        self.orders: list[Tensor | None] = [None] + [
            torch.from_numpy(rng.permutation(features)) for _ in range(self.count - 1)
        ]
        #: class_split: each task's classes.
        self.groups = [set(g.tolist()) for g in np.array_split(np.arange(classes), self.count)]
        if self.kind == "class_split":
            for c, y in enumerate(base.train_y):
                for t, group in enumerate(self.groups):
                    if not bool(torch.isin(y, torch.tensor(sorted(group))).any()):
                        raise ConfigError(
                            "num_tasks",
                            f"class_split: client {c} holds no training row of task {t}'s "
                            f"classes {sorted(group)}; use fewer tasks or a partition that gives "
                            "every client every class (iid)",
                        )
        #: The accuracy matrix's finished rows: a[l][j] for j ≤ l, one row per finished task.
        self.finished: list[list[float]] = []

    def task(self, round_index: int) -> int:
        return block_of(round_index, self.config.rounds, self.count)

    def last_round_of(self, task: int) -> int:
        starts = block_starts(self.config.rounds, self.count)
        return int(starts[task + 1]) - 1 if task + 1 < self.count else self.config.rounds

    def segment(self, round_index: int) -> Any:
        return self.task(round_index)

    def select(self, x: Tensor, y: Tensor, task: int) -> tuple[Tensor, Tensor]:
        """A client's rows of task `task`."""
        if self.kind == "class_split":
            keep = torch.isin(y, torch.tensor(sorted(self.groups[task])))
            return x[keep], y[keep]
        if self.kind == "rotated":
            return rotate(x, task * 180.0 / self.count), y
        return permute_features(x, self.orders[task]), y

    def rows(self, round_index: int) -> ClientRows:
        t = self.task(round_index)
        train = [
            self.select(x, y, t) for x, y in zip(self.base.train_x, self.base.train_y, strict=True)
        ]
        eval_x, eval_y = self._eval(t)
        return ClientRows(tuple(x for x, _ in train), tuple(y for _, y in train), eval_x, eval_y)

    @functools.lru_cache(maxsize=8)  # noqa: B019 (one scenario per simulation)
    def _eval(self, task: int) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Every client's held-out rows of task `task`."""
        pairs = [
            self.select(x, y, task) for x, y in zip(self.base.eval_x, self.base.eval_y, strict=True)
        ]
        return tuple(x for x, _ in pairs), tuple(y for _, y in pairs)

    def metrics(self, round_index: int, score: Score) -> dict[str, float]:
        t = self.task(round_index)
        if round_index != self.last_round_of(t):
            return {}  # the matrix's rows are the tasks' ends (scoring every task seen costs)
        row = []
        for j in range(t + 1):
            accuracy = score(list(zip(*self._eval(j), strict=True)))
            if accuracy is None:
                return {}
            row.append(accuracy)
        if len(self.finished) == t:
            self.finished.append(row)
        return task_metrics(self.finished[:t], row)

    def state_dict(self) -> dict[str, Any]:
        return {"finished": [list(r) for r in self.finished]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.finished = [list(r) for r in state["finished"]]


def task_metrics(finished: list[list[float]], current: list[float]) -> dict[str, float]:
    """Average accuracy, forgetting and backward transfer of the accuracy matrix whose finished
    rows are `finished` (row l: a[l][0..l]) and whose current row is `current` (a[t][0..t],
    t = len(finished))."""
    t = len(finished)
    out = {"avg_task_accuracy": float(np.mean(current))}
    if t == 0:
        return out
    out["forgetting"] = float(
        np.mean([max(row[j] for row in finished[j:t]) - current[j] for j in range(t)])
    )
    out["backward_transfer"] = float(np.mean([current[j] - finished[j][j] for j in range(t)]))
    return out
