"""Communication cost: the bytes a round's clients send up and receive down.

From `engine_version` 8 every round reports `bytes_up` and `bytes_down` (summed over the
clients) and the run's running totals `bytes_up_total` and `bytes_down_total`. A round counts
what it moves, at the dtype it moves it (a tensor is numel × element size; headers, keys and
framing are not counted):

- FedAvg on (`federated_averaging`): what the strategy's round moves
  (`Strategy.traffic`): by default the global model down to each participant and each
  participant's shared model up (and its loss of the global model for q-FedAvg, which reads
  it); SCAFFOLD adds the server control variate c down and the client's Δc up; IFCA sends all
  k cluster models down and gets the chosen cluster's index up with the model; `local` moves
  nothing.
- `insight_exchange`: each participant's insight up (`insight_bytes`): every number it
  carries as the 8-byte int64 / float64 Python holds it (client id, the per-client figures,
  each expert's metrics and summary, the personal score) and the selected expert's name in
  UTF-8; the keys are a schema both ends know and are not counted.
- `meta_learning`: the broadcast meta-parameters (8 bytes each, as above) down to each
  participant. The engine hands them to every client at once; one not drawn is offline and
  gets the broadcast of the next round it takes part in, counted then.
- `meta_init`: θ of every expert down to each participant taking part for the first time, and
  every participant's adapted experts up (the shared model's θ moves with FedAvg's models).
- `gossip`: each pair exchanges one expert's weights both ways: each client of a pair sends its
  copy up (to its peer) and receives the peer's down, so a pair adds 2 × the expert's bytes to
  each direction.

`Ledger` keeps the totals; they live in the simulation's checkpoint, so a resumed run
continues them exactly (a checkpoint written before them starts them at 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from scarcity.results import CLIENT_FIGURES, Insight

#: The engine_version from which rounds report their bytes.
BYTES_ENGINE_VERSION = 8
#: Bytes of one number of an insight or of the meta-parameters: a Python int or float, i.e.
#: an int64 or a float64.
SCALAR_BYTES = 8
#: The metrics a counting round reports (`scarcity.results.METRIC_NAMES`).
BYTE_METRICS = ("bytes_up", "bytes_down", "bytes_up_total", "bytes_down_total")


def tensor_bytes(tensors: Mapping[str, Tensor] | Iterable[Tensor]) -> int:
    """Bytes of the tensors at their dtype: Σ numel × element size."""
    values = tensors.values() if isinstance(tensors, Mapping) else tensors
    return sum(t.numel() * t.element_size() for t in values)


def scalar_bytes(values: Mapping[str, Any]) -> int:
    """Bytes of a flat mapping of numbers (meta-parameters): 8 per number."""
    return SCALAR_BYTES * len(values)


def insight_bytes(insight: Insight) -> int:
    """Bytes of one insight as the module docstring counts it: 8 per number (the client id,
    each per-client figure, each expert's metrics and summary, the personal score) plus the
    selected expert's name in UTF-8."""
    numbers = 1 + len(CLIENT_FIGURES)  # the client id and each per-client figure
    numbers += sum(len(r.metrics) + len(r.summary) for r in insight.experts.values())
    numbers += len(insight.personal)
    return SCALAR_BYTES * numbers + len(insight.selected_expert.encode())


@dataclass(frozen=True)
class Traffic:
    """Bytes moved by the clients of one round (or one part of it), summed over them."""

    #: client → server (or → peer)
    up: int = 0
    #: server (or peer) → client
    down: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(self.up + other.up, self.down + other.down)


def gossip_traffic(expert_bytes: Iterable[int]) -> Traffic:
    """A round's gossip, one entry per pair (the bytes of the expert it synced): each client
    sends its copy to its peer and receives the peer's."""
    moved = 2 * sum(expert_bytes)
    return Traffic(up=moved, down=moved)


class Ledger:
    """The run's running totals of bytes up and down."""

    def __init__(self) -> None:
        self.up_total = 0
        self.down_total = 0

    def record(self, traffic: Traffic) -> dict[str, float]:
        """Add a round's traffic; its metrics (floats: exact up to 2⁵³ bytes)."""
        self.up_total += traffic.up
        self.down_total += traffic.down
        return {
            "bytes_up": float(traffic.up),
            "bytes_down": float(traffic.down),
            "bytes_up_total": float(self.up_total),
            "bytes_down_total": float(self.down_total),
        }

    def state_dict(self) -> dict[str, int]:
        return {"up_total": self.up_total, "down_total": self.down_total}

    def load_state_dict(self, state: Mapping[str, int] | None) -> None:
        """Continue from `state_dict()`'s value; None (an older checkpoint) starts at 0."""
        state = state or {}
        self.up_total = int(state.get("up_total", 0))
        self.down_total = int(state.get("down_total", 0))
