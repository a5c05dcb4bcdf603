"""The seed's log messages, worded and formatted as the seed gives them, in one place.

The reference components write them where they happen, at DEBUG (a `Client` or an expert used
on its own); every round of a `Simulation` writes them at INFO for both executions, under the
loggers of the components they speak for, so `logs/scarcity.log` reads as the seed's does.
Per-client lines only for runs of at most `MAX_DETAIL_CLIENTS` clients (a large run would
write thousands of them a round).
"""

from __future__ import annotations

from collections.abc import Mapping

#: Runs of at most this many clients get per-client log lines.
MAX_DETAIL_CLIENTS = 10

CLIENT = "scarcity.core.client.Client"
MEMORY_EXPERT = "scarcity.core.experts.MemoryConsolidationExpert"
ADAPTATION_EXPERT = "scarcity.core.experts.MetaAdaptationExpert"
META_LEARNER = "scarcity.core.meta_learner.MetaLearner"


def received_meta_params(client_id: int, params: Mapping[str, float]) -> str:
    return (
        f"Client {client_id}: Received meta-parameters - mean={params['mean']:.4f}, "
        f"std={params['std']:.4f}, lr={params['lr']:.4f}, updates={int(params['updates'])}"
    )


def synced(client_id: int, expert: str, peer_id: int) -> str:
    return f"Client {client_id}: Synced {expert} with Client {peer_id} (P2P gossip)"


def replayed(replay_error: float) -> str:
    return f"MemoryExpert: Replayed embeddings - avg replay error: {replay_error:.4f}"


def adjusted(times: int, final_lr: float) -> str:
    return f"MetaAdaptation: Adjusted learning rate {times} times - final_lr={final_lr:.6f}"


def completed_structure_discovery(client_id: int) -> str:
    return f"Client {client_id} completed structure discovery"


PRIORS_UPDATED = "Server updated structural priors"
