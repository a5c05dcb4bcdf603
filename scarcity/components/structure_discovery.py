"""Structure discovery (seed stage 8), per client and stacked: every expert's linear
autoencoder trained by Adam on the client's unlabelled rows.

Per client, an expert owns its encoder, decoder and `torch.optim.Adam` (Kingma & Ba 2015);
`autoencoder_loss`, `reconstruction_loss` and `reconstruction_errors` are its objective and
measures, and `self_supervised_report` states a label-free client's round in the terms of a
supervised one. `StackedAutoencoders` trains the autoencoders of every expert of every client
at once from data moments (`scarcity.batched.autoencoder`), with the memory expert's replay
term (`scarcity.components.memory`) and the rate adaptation (`scarcity.components.adaptation`)
in the reference's order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from scarcity.batched.autoencoder import (
    PARTS,
    Moments,
    ReplayMoments,
    adam_step,
    recon_loss_and_grads,
    reconstruction_errors,
    replay_loss,
    replay_loss_and_grads,
)
from scarcity.batched.linear import gather_rows
from scarcity.batched.padding import at_least_one, batch_mask, masked_std_mean, real_rows
from scarcity.components.adaptation import LearningRateAdaptation
from scarcity.components.memory import REPLAY_WEIGHT, ReplayBuffers, store_memory_rows

if TYPE_CHECKING:
    from scarcity.batched.draws import RoundDraws
    from scarcity.components import StackedClients


def autoencoder_loss(encoder: nn.Module, decoder: nn.Module, x: Tensor) -> Tensor:
    """Mean squared reconstruction error of the rows `x` (differentiable)."""
    return torch.nn.functional.mse_loss(decoder(encoder(x)), x)


def reconstruction_loss(encoder: nn.Module, decoder: nn.Module, x: Tensor) -> float:
    with torch.no_grad():
        return float(autoencoder_loss(encoder, decoder, x))


def per_sample_errors(encoder: nn.Module, decoder: nn.Module, x: Tensor) -> Tensor:
    """Each sample's mean squared reconstruction error [n]."""
    with torch.no_grad():
        return ((decoder(encoder(x)) - x) ** 2).mean(dim=1)


def self_supervised_report(ssl: dict[str, float], errors: Tensor) -> dict[str, float]:
    """One expert's self-supervised training in the terms of a supervised one: its
    reconstruction loss before and after, the spread of the per-sample reconstruction errors
    (`errors` [n]) as its uncertainty."""
    return {
        "train_loss": ssl["recon_loss"],
        "initial_loss": ssl["initial_recon_loss"],
        "final_loss": ssl["recon_loss"],
        "uncertainty": float(errors.std(correction=0)),
        "mean_grad": ssl["mean_grad"],
    }


class StackedAutoencoders:
    """Every client's K autoencoders' Adam moments and Adam step counts.

    The weights themselves stay in the pool's stacked weights (`enc_w`, … [N, K, ...]), next
    to the heads, as checkpoints have always kept them."""

    def __init__(self, weights: dict[str, Tensor]) -> None:
        self.adam = {f"{s}.{p}": torch.zeros_like(weights[p]) for p in PARTS for s in ("m", "v")}
        #: Adam steps each client's autoencoders took (a client out of rows skips a step).
        self.steps = torch.zeros(len(weights[PARTS[0]]), dtype=torch.long)

    def train(
        self,
        w: dict[str, Tensor],
        x: Tensor,
        sizes: Tensor | None,
        perms: Tensor | None,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        memory: int | None,
        buffers: ReplayBuffers,
        stored: Tensor | None,
        fresh_replay: bool,
        adaptation: LearningRateAdaptation,
        meta: int | None,
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        """Self-supervised (Adam) training of every expert's autoencoder in `w`, in place.

        `x` [N, n, d] (zero-padded when `sizes` [N] says how many rows are real), `perms`
        each expert's epoch permutations [N, K, epochs, n] (None: full batches); `memory`,
        `meta`: the memory and meta-adaptation experts' index; `stored` how many rows each
        client's memory expert just stored, left out of the first step's replay term when
        `fresh_replay`. Returns initial and final reconstruction loss and mean |gradient|
        [N, K], and the memory expert's replay error [N] (None without one)."""
        n_clients, k = w[PARTS[0]].shape[:2]
        n = x.shape[1]
        count = n_clients * k
        params = {p: w[p].view(count, *w[p].shape[2:]) for p in PARTS}
        adam = {key: t.view(count, *t.shape[2:]) for key, t in self.adam.items()}
        row_sizes = None if sizes is None else sizes.repeat_interleave(k)
        full = Moments.of(x, sizes)  # per client, shared by its k experts
        initial, _ = recon_loss_and_grads(params, full, with_grads=False)
        replay: ReplayMoments | None = None
        # Before the first step the rows just stored add nothing to the replay term.
        first_replay: ReplayMoments | None = None
        memory_rows = torch.arange(n_clients) * k + (memory or 0)
        if memory is not None:
            replay = buffers.moments()
            if stored is not None and fresh_replay:
                first_replay = buffers.moments(stored)
            else:
                first_replay = replay
        experts = torch.arange(k).repeat(n_clients)
        is_meta = experts == (meta if meta is not None else -1)
        meta_clients = torch.arange(n_clients) if meta is not None else None

        def learning_rates() -> Tensor:
            rates = torch.full((count,), lr, dtype=torch.float64)
            if meta_clients is not None:
                rates[is_meta] = lr * adaptation.scale
            return rates.float()

        def loss_and_grads(
            part: dict[str, Tensor],
            moments: Moments,
            current: ReplayMoments | None,
            rows: Tensor | None = None,
        ) -> tuple[Tensor, dict[str, Tensor]]:
            return _loss_and_grads(part, moments, current, memory, k, rows)

        rates = learning_rates()
        numel = sum(params[p][0].numel() for p in PARTS)
        grad_sum = torch.zeros(count)
        steps: int | Tensor = 0
        epoch_losses = []
        perm = None if perms is None else perms.reshape(count, *perms.shape[2:])
        for epoch in range(epochs):
            batches: list[Tensor | None] = (
                [None] if perm is None else list(perm[:, epoch].split(batch_size, dim=1))
            )
            epoch_loss = torch.zeros(count, dtype=torch.float64)
            for batch, idx in enumerate(batches):
                if idx is not None and row_sizes is not None:
                    # Unequal sizes: only the experts of clients with samples left in this
                    # batch compute and step (the others' Adam is not stepped).
                    alive_rows = row_sizes > batch * batch_size
                    rows = alive_rows.nonzero().squeeze(1)
                    real = batch_mask(idx[rows], row_sizes[rows]).sum(dim=1)
                    moments = Moments.of(gather_rows(x, idx[rows], k, rows), real)
                    part = {p: t[rows] for p, t in params.items()}
                    current = first_replay if epoch == batch == 0 else replay
                    loss, grads = loss_and_grads(part, moments, current, rows)
                    epoch_loss.index_add_(0, rows, loss * (real / row_sizes[rows]))
                    grad_sum.index_add_(0, rows, mean_abs(grads, numel))
                    steps = steps + alive_rows
                    self.steps += alive_rows.view(n_clients, k)[:, 0]
                    row_steps = self.steps.repeat_interleave(k)[rows]
                    for p in PARTS:
                        m, v = adam[f"m.{p}"][rows], adam[f"v.{p}"][rows]
                        adam_step(part[p], grads[p], m, v, row_steps, rates[rows])
                        params[p].index_copy_(0, rows, part[p])
                        adam[f"m.{p}"].index_copy_(0, rows, m)
                        adam[f"v.{p}"].index_copy_(0, rows, v)
                    continue
                moments = full if idx is None else Moments.of(gather_rows(x, idx, k))
                current = first_replay if epoch == batch == 0 else replay
                loss, grads = loss_and_grads(params, moments, current)
                grad_sum += mean_abs(grads, numel)
                epoch_loss += loss * ((n if idx is None else idx.shape[1]) / n)
                steps += 1
                self.steps += 1  # one optimizer.step() of every expert's Adam
                # Every client has stepped as often, unless client sampling left some behind.
                uniform = bool((self.steps == self.steps[0]).all())
                step = int(self.steps[0]) if uniform else self.steps.repeat_interleave(k)
                for p in PARTS:
                    adam_step(params[p], grads[p], adam[f"m.{p}"], adam[f"v.{p}"], step, rates)
            epoch_losses.append(epoch_loss.float())
            if meta_clients is not None:
                adaptation.adapt("self_supervised", epoch_losses[-1][is_meta], meta_clients)
                rates = learning_rates()
        final, _ = recon_loss_and_grads(params, full, with_grads=False)
        replay_error = None
        if replay is not None:
            replay_error = replay_loss(
                params["enc_w"][memory_rows], params["enc_b"][memory_rows], replay
            )
        ssl = {
            "initial_recon_loss": initial.float().double().view(n_clients, k),
            "recon_loss": final.float().double().view(n_clients, k),
            "mean_grad": (grad_sum / at_least_one(steps)).double().view(n_clients, k),
        }
        return ssl, None if replay_error is None else replay_error.float().double()

    def take(self, clients: Tensor) -> StackedAutoencoders:
        part = StackedAutoencoders.__new__(StackedAutoencoders)
        part.adam = {key: t[clients] for key, t in self.adam.items()}
        part.steps = self.steps[clients]
        return part

    def put(self, clients: Tensor, part: StackedAutoencoders) -> None:
        for key, t in part.adam.items():
            self.adam[key][clients] = t
        self.steps[clients] = part.steps

    def state_dict(self) -> dict[str, Any]:
        """The pool's `adam` and `ssl_steps`, as checkpoints have always stored them."""
        return {
            "adam": {key: t.clone() for key, t in self.adam.items()},
            "ssl_steps": self.steps.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.adam = {key: t.clone() for key, t in state["adam"].items()}
        steps = state["ssl_steps"]  # one int for all clients in checkpoints of before
        self.steps = (
            torch.full((len(self.steps),), steps) if isinstance(steps, int) else steps.clone()
        )


def train_autoencoders_round(
    clients: StackedClients, x: Tensor, draws: RoundDraws
) -> tuple[dict[str, Tensor], Tensor | None, dict[str, Tensor] | None]:
    """A round's self-supervised training of `clients`, every expert's `train_self_supervised`
    on this round's rows `x` (`StackedAutoencoders.train`; the memory expert stores its share
    of rows first). Returns its report [N, K] per key, the memory expert's replay error [N]
    (None without one) and, with `label_free`, the round in a supervised one's terms."""
    cfg = clients.config
    stored = None
    if clients.memory is not None:
        stored = store_memory_rows(
            clients, x, draws.ssl_store, torch.arange(len(x)), clients.data.ragged_sizes
        )
    ssl, replay = clients.autoencoders.train(
        clients.w,
        x,
        clients.data.ragged_sizes,
        draws.ssl,
        epochs=cfg.ssl_epochs,
        batch_size=cfg.batch_size,
        lr=clients.ssl_lr,
        memory=clients.memory,
        buffers=clients.buffers,
        stored=stored,
        fresh_replay=cfg.engine_version >= 2,
        adaptation=clients.adaptation,
        meta=clients.meta,
    )
    report = None
    if cfg.label_free:  # the self-supervised objective is the client's training
        report = stacked_self_supervised_report(clients.w, x, clients.data.ragged_sizes, ssl)
    return ssl, replay, report


def stacked_self_supervised_report(
    w: dict[str, Tensor], x: Tensor, sizes: Tensor | None, ssl: dict[str, Tensor]
) -> dict[str, Tensor]:
    """`self_supervised_report` of every client, averaged over its experts."""
    errors = reconstruction_errors({p: w[p] for p in PARTS}, x)  # [N, K, n]
    if sizes is None:
        spread = errors.std(dim=2, correction=0)
    else:
        mask = real_rows(sizes, x.shape[1])
        spread = masked_std_mean(errors.transpose(1, 2), mask)[0]
    recon = ssl["recon_loss"]
    return {
        "train_loss": recon.mean(dim=1),
        "initial_loss": ssl["initial_recon_loss"].mean(dim=1),
        "final_loss": recon.mean(dim=1),
        "uncertainty": spread.double().mean(dim=1),
        "mean_grad": ssl["mean_grad"].mean(dim=1),
    }


def mean_abs(grads: dict[str, Tensor], numel: int) -> Tensor:
    """Mean |gradient| of each row over all parts, as `fit` records it per step."""
    return sum((g.abs().flatten(1).sum(dim=1) for g in grads.values()), torch.zeros(())) / numel


def _loss_and_grads(
    params: dict[str, Tensor],
    moments: Moments,
    replay: ReplayMoments | None,
    memory: int | None,
    k: int,
    rows: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Reconstruction loss (float64) and float32 gradients of the autoencoders `rows` (None =
    all N·K, in order), plus the memory expert's latent-replay term."""
    loss, grads = recon_loss_and_grads(params, moments)
    if replay is not None and memory is not None:
        row_ids = torch.arange(len(loss)) if rows is None else rows
        mem = (row_ids % k).eq(memory).nonzero().squeeze(1)
        if rows is not None:
            replay = replay.take(rows[mem].div(k, rounding_mode="floor"))
        r_loss, r_w, r_b = replay_loss_and_grads(params["enc_w"][mem], params["enc_b"][mem], replay)
        loss[mem] += REPLAY_WEIGHT * r_loss
        grads["enc_w"][mem] += REPLAY_WEIGHT * r_w
        grads["enc_b"][mem] += REPLAY_WEIGHT * r_b
    return loss, {p: g.float() for p, g in grads.items()}
