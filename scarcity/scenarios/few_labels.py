"""`few_labels`: each client holds labels for only a few of its rows.

Label scarcity at the clients, as federated semi-supervised learning sets it up (Jeong, Yoon,
Yang & Hwang 2021, "Federated Semi-Supervised Learning with Inter-Client Consistency & Disjoint
Learning" (FedMatch), ICLR, labels-at-client scenario): only a share `labelled_fraction` of each
client's training rows carries a label. The labelled rows are chosen once per client from the
seed (the scenario's own stream): the first max(1, ⌈fraction · n⌉) of a random permutation of its
n rows, kept in their order. Supervised training reads only those rows; each client is judged on
its held-out rows, all of them labelled, as in drift and tasks.

What reads no label keeps every row: a `label_free` run (stage 8's autoencoders and structure
discovery, whose probe is fitted on held-out rows) trains on all of each client's rows, as it
would without the scenario. A supervised run drops its unlabelled rows: no supervised client
model here learns from unlabelled rows (no pseudo-labelling or consistency term), so they would
change nothing but the autoencoders of a supervised stage 8, which then see the labelled rows only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from scarcity.params import Param, RunConfig
from scarcity.scenarios.base import ClientRows, Scenario, scenario_rng

LABELLED_FRACTION = Param(
    "labelled_fraction",
    float | None,
    None,
    "few_labels: share of each client's training rows that carries a label (at least one row "
    "each); supervised training reads only those (default 0.1).",
    gt=0,
    le=1,
)

_LABELS = 0x1AB1


class FewLabels(Scenario):
    name: ClassVar[str] = "few_labels"
    paper: ClassVar[str] = (
        "Jeong, Yoon, Yang & Hwang 2021, Federated Semi-Supervised Learning with Inter-Client "
        "Consistency & Disjoint Learning (ICLR)"
    )
    summary: ClassVar[str] = (
        "Only a share of each client's rows is labelled; supervised training reads those "
        "(FedMatch's labels-at-client)."
    )
    params: ClassVar[tuple[Param, ...]] = (LABELLED_FRACTION,)
    defaults: ClassVar[Mapping[str, Any]] = {"labelled_fraction": 0.1}

    def __init__(self, config: RunConfig, base: ClientRows, classes: int) -> None:
        super().__init__(config, base, classes)
        rng = scenario_rng(config, _LABELS)
        fraction = float(config.labelled_fraction)
        #: Each client's labelled rows, ascending indices into its training rows.
        self.labelled = [
            np.sort(rng.permutation(len(x))[: max(1, math.ceil(fraction * len(x)))])
            for x in base.train_x
        ]

    def rows(self, round_index: int) -> ClientRows:
        if self.config.label_free:  # no training step reads a label: every row stays
            return self.base
        keep = [torch.from_numpy(idx) for idx in self.labelled]
        return ClientRows(
            tuple(x[i] for x, i in zip(self.base.train_x, keep, strict=True)),
            tuple(y[i] for y, i in zip(self.base.train_y, keep, strict=True)),
            self.base.eval_x,
            self.base.eval_y,
        )
