"""Drift detection (`DriftExpert`, `drift_detector`), per client and stacked: a detector on each
client's training-loss stream that, when it fires, resets what the client learnt.

Each round a client trains, its routed expert's training loss (`train_loss`, one value) goes to
a river detector (Montiel et al. 2021, "River: machine learning for streaming data in Python",
JMLR 22(110)):

- `adwin`: ADWIN (Bifet & Gavaldà 2007, "Learning from time-changing data with adaptive
  windowing", SDM), `river.drift.ADWIN` with its confidence δ = 0.002, checked after every
  value (`clock=1`) from the fifth value on (`grace_period=5`), as a round gives one value.
  Its bound needs long streams: a loss that doubles after 60 steady rounds is found 30 rounds
  later, and within a run of tens of rounds it stays silent (measured in the tests);
- `page_hinkley`: the Page-Hinkley test (Page 1954, "Continuous inspection schemes",
  Biometrika), `river.drift.PageHinkley`, for a rise of the loss only (`mode="up"`), from the
  fifth value on, alarming once the cumulative rise above the running mean passes 0.1 (a loss
  in nats: the defaults, 30 values and 50, never fire within a run's rounds).

An alarm is acted on at once, after the round's training: the expert the client trained is
re-initialised (its supervised head, drawn afresh from a generator of its own seeded by the
run's seed, `REINIT_STREAM`, the client and how many losses its detector has seen, so both
executions draw the same weights; the autoencoder, which reads no label, keeps what it
learnt) and the client's router forgets its counts (`balanced` and `round_robin` start
over; `variance` and `random` pick afresh every round anyway). The detector keeps running
on the same stream (river's detectors restart themselves after an alarm).

A river detector is a Python object, which a checkpoint (`torch.load(weights_only=True)`)
cannot hold: the state kept is the stream of losses seen, replayed into a fresh detector on
load, which gives the same detector (they are deterministic). `LossDetector` is one client's,
`StackedDetectors` a list of N of them (river is per stream; one float per client a round).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from river.base import DriftDetector

#: Second seed word of the generator a re-initialised expert's head is drawn from.
REINIT_STREAM = 0xD21F7


def make_detector(kind: str) -> DriftDetector:
    """A fresh detector of `drift_detector` `kind` (river is imported here, on first use:
    importing it pulls in its SQL stream readers, which the engine must not import)."""
    from river.drift import ADWIN, PageHinkley

    if kind == "adwin":
        return ADWIN(clock=1, grace_period=5)
    if kind == "page_hinkley":
        return PageHinkley(min_instances=5, threshold=0.1, mode="up")
    raise ValueError(f"drift_detector: unknown detector {kind!r}")


def reinit_generator(seed: int, client: int, seen: int) -> torch.Generator:
    """The generator client `client`'s re-initialised head is drawn from, after its detector
    has seen `seen` losses (unique per alarm)."""
    word = np.random.SeedSequence([seed, REINIT_STREAM, client, seen]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(word))


class LossDetector:
    """One client's detector and the losses it has seen."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.detector = make_detector(kind)
        self.losses: list[float] = []

    def observe(self, loss: float) -> bool:
        """Feed one round's training loss; whether the detector alarms on it."""
        self.losses.append(float(loss))
        self.detector.update(float(loss))
        return bool(self.detector.drift_detected)

    def state_dict(self) -> list[float]:
        return list(self.losses)

    def load_state_dict(self, losses: Sequence[float]) -> None:
        """A fresh detector fed `losses` again: the state the one that saw them had."""
        self.detector, self.losses = make_detector(self.kind), []
        for loss in losses:
            self.observe(loss)


class StackedDetectors:
    """Every client's `LossDetector`, in client order."""

    def __init__(self, num_clients: int, kind: str) -> None:
        self.detectors = [LossDetector(kind) for _ in range(num_clients)]

    def observe(self, clients: Sequence[int], losses: Tensor) -> list[int]:
        """Feed each of `clients` its loss (`losses` [len(clients)]); the clients alarmed."""
        # `LossDetector.observe` inlined: a round calls it for every client.
        alarmed = []
        detectors = self.detectors
        for c, value in zip(clients, losses.double().tolist(), strict=True):
            detector = detectors[c]
            detector.losses.append(value)
            river = detector.detector
            river.update(value)
            if river.drift_detected:
                alarmed.append(c)
        return alarmed

    def seen(self, client: int) -> int:
        return len(self.detectors[client].losses)

    def state_dict(self) -> list[list[float]]:
        return [d.state_dict() for d in self.detectors]

    def load_state_dict(self, state: Any) -> None:
        for detector, losses in zip(self.detectors, state, strict=True):
            detector.load_state_dict(losses)
