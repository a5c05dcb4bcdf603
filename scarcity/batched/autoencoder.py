"""Batched linear autoencoders (stage 8): loss and gradients from data moments, Adam steps.

For a linear autoencoder x ↦ D(Ex + e) + d the residual is A·x + c with A = DE − I and
c = De + d, so the summed squared error over a batch needs only its moments S = Σ x xᵀ,
s = Σ x and the count: Σ‖Ax + c‖² = ⟨AS, A⟩ + 2 cᵀAs + n‖c‖². Gradients follow in closed form.
A full batch's moments are computed once per round and reused by every epoch and expert,
which turns [n × d] products into [d × d] ones. The latent-replay term of the memory expert,
mean ‖Ex + e − z‖² over the buffer, is quadratic too (moments of the buffer). Zero-padded
rows (clients of unequal size) add nothing to a moment; only the counts differ. The moment
algebra runs in float64 so it rounds less than the float32 reference it stands in for.
Adam: Kingma & Ba 2015, as `torch.optim.Adam` (β = 0.9, 0.999; ε = 1e-8).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
PARTS = ("enc_w", "enc_b", "dec_w", "dec_b")


@dataclass(frozen=True)
class Moments:
    """Σ x xᵀ [B, d, d], Σ x [B, d] and the sample count of each row's batch (float64).

    The count is one number when every batch is full, else [B] (zero-padded batches of
    clients of unequal size: the padding adds nothing to the sums).
    """

    outer: Tensor
    total: Tensor
    count: float | Tensor

    @classmethod
    def of(cls, x: Tensor, count: Tensor | None = None) -> Moments:
        x64 = x.double()
        n = float(x.shape[1]) if count is None else count.double()
        return cls(torch.bmm(x64.transpose(1, 2), x64), x64.sum(dim=1), n)


@dataclass(frozen=True)
class ReplayMoments:
    """Moments of a zero-padded replay buffer of (input, latent) pairs (float64)."""

    xx: Tensor  # Σ mx mxᵀ [B, d, d]
    xz: Tensor  # Σ mx mzᵀ [B, d, L]
    zz: Tensor  # Σ ‖mz‖² [B]
    x: Tensor  # Σ mx [B, d]
    z: Tensor  # Σ mz [B, L]
    count: Tensor  # rows in the sums [B]
    divisor: Tensor  # rows the mean is over (rows in use) [B]

    @classmethod
    def of(
        cls, mx: Tensor, mz: Tensor, count: Tensor, divisor: Tensor | None = None
    ) -> ReplayMoments:
        mx64, mz64 = mx.double(), mz.double()
        t = mx64.transpose(1, 2)
        return cls(
            torch.bmm(t, mx64),
            torch.bmm(t, mz64),
            (mz64**2).sum(dim=(1, 2)),
            mx64.sum(dim=1),
            mz64.sum(dim=1),
            count.double(),
            (count if divisor is None else divisor).double(),
        )

    def take(self, rows: Tensor) -> ReplayMoments:
        """The moments of the buffers `rows` only."""
        return ReplayMoments(*(getattr(self, f.name)[rows] for f in dataclasses.fields(self)))

    def replace_rows(self, rows: Tensor, other: ReplayMoments) -> ReplayMoments:
        """These moments with the buffers `rows` taken from `other` (one per row), a copy."""
        return ReplayMoments(
            *(
                getattr(self, f.name).index_copy(0, rows, getattr(other, f.name))
                for f in dataclasses.fields(self)
            )
        )


def recon_loss_and_grads(
    params: dict[str, Tensor], m: Moments, with_grads: bool = True
) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean squared reconstruction error per row [R] (float64) and its gradients.

    `m` holds one batch per row, or one per client shared by R / clients consecutive rows
    (every expert of a client on the same full batch).
    """
    enc_w, enc_b = params["enc_w"].double(), params["enc_b"].double()
    dec_w, dec_b = params["dec_w"].double(), params["dec_b"].double()
    rows, latent, d = enc_w.shape
    group = rows // len(m.outer)
    a = torch.bmm(dec_w, enc_w)
    a.diagonal(dim1=1, dim2=2).sub_(1.0)  # A = DE − I
    c = torch.baddbmm(dec_b.unsqueeze(2), dec_w, enc_b.unsqueeze(2)).squeeze(2)
    grouped = a.view(len(m.outer), group * d, d)
    a_outer = torch.bmm(grouped, m.outer).view(rows, d, d)
    a_total = torch.bmm(grouped, m.total.unsqueeze(2)).view(rows, d)
    total = m.total.repeat_interleave(group, 0) if group > 1 else m.total
    count = m.count
    if isinstance(count, Tensor) and group > 1:
        count = count.repeat_interleave(group)
    scale = 1.0 / (count * d)
    sq = (
        torch.linalg.vecdot(a_outer.view(rows, -1), a.view(rows, -1))
        + 2 * torch.linalg.vecdot(c, a_total)
        + count * torch.linalg.vecdot(c, c)
    )
    loss = sq * scale
    if not with_grads:
        return loss, {}
    # dL/dA = 2/(nd)·(A·S + c sᵀ), dL/dc = 2/(nd)·(A s + n c)
    grad_a = torch.addcmul(a_outer, c.unsqueeze(2), total.unsqueeze(1))
    if isinstance(count, Tensor):  # one count per row
        twice = (2.0 / (count * d)).unsqueeze(1)
        grad_a.mul_(twice.unsqueeze(2))
        grad_c = torch.addcmul(a_total, c, count.unsqueeze(1)).mul_(twice)
    else:
        grad_a.mul_(2 * scale)
        grad_c = torch.add(a_total, c, alpha=count).mul_(2 * scale)
    dec_t = dec_w.transpose(1, 2)
    return loss, {
        "enc_w": torch.bmm(dec_t, grad_a),
        "enc_b": torch.bmm(dec_t, grad_c.unsqueeze(2)).squeeze(2),
        "dec_w": torch.baddbmm(
            grad_c.unsqueeze(2) * enc_b.unsqueeze(1), grad_a, enc_w.transpose(1, 2)
        ),
        "dec_b": grad_c,
    }


def _replay_sums(w: Tensor, b: Tensor, r: ReplayMoments) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """W·Σxxᵀ, W·Σx, Σ‖E·mx + e − mz‖² and 1 / rows, per row (float64 `w`, `b`)."""
    w_xx = torch.bmm(w, r.xx)  # [B, L, d]
    w_x = torch.bmm(w, r.x.unsqueeze(2)).squeeze(2)  # [B, L]
    sq = (
        (w_xx * w).sum(dim=(1, 2))
        + 2 * (b * w_x).sum(dim=1)
        - 2 * (w * r.xz.transpose(1, 2)).sum(dim=(1, 2))
        + r.count * (b * b).sum(dim=1)
        - 2 * (b * r.z).sum(dim=1)
        + r.zz
    )
    return w_xx, w_x, sq, 1.0 / r.divisor.clamp(min=1)


def replay_loss(enc_w: Tensor, enc_b: Tensor, r: ReplayMoments) -> Tensor:
    """`replay_loss_and_grads`'s loss alone."""
    _, _, sq, inv = _replay_sums(enc_w.double(), enc_b.double(), r)
    return sq * inv


def replay_loss_and_grads(
    enc_w: Tensor, enc_b: Tensor, r: ReplayMoments
) -> tuple[Tensor, Tensor, Tensor]:
    """Mean over the buffer of ‖E·mx + e − mz‖² per row [B] and its gradients (E, e)."""
    w, b = enc_w.double(), enc_b.double()
    w_xx, w_x, sq, inv = _replay_sums(w, b, r)
    grad_w = (
        2 * inv[:, None, None] * (w_xx + b.unsqueeze(2) * r.x.unsqueeze(1) - r.xz.transpose(1, 2))
    )
    grad_b = 2 * inv[:, None] * (w_x + r.count[:, None] * b - r.z)
    return sq * inv, grad_w, grad_b


def adam_step(
    param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: int | Tensor, lr: Tensor
) -> None:
    """One Adam update in place; `lr` [B] is each row's rate, `step` counts from 1: one count
    for every row, or [B] when rows have stepped unequally often (clients of unequal size)."""
    shape = (-1, *([1] * (param.dim() - 1)))
    root: float | Tensor
    if isinstance(step, Tensor):
        correction, per_row_root = _bias_corrections(step)
        step_size = (lr / correction).view(shape)
        root = per_row_root.view(shape)
    else:
        step_size = (lr / (1 - BETA1**step)).view(shape)
        root = math.sqrt(1 - BETA2**step)
    exp_avg.lerp_(grad, 1 - BETA1)
    exp_avg_sq.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
    denom = (exp_avg_sq.sqrt() / root).add_(EPS)
    param.sub_(step_size * exp_avg / denom)


def _bias_corrections(step: Tensor) -> tuple[Tensor, Tensor]:
    """1 − β1ᵗ and √(1 − β2ᵗ) per row as float32, by the scalar formula of each distinct t."""
    distinct, inverse = torch.unique(step, return_inverse=True)
    values = distinct.tolist()
    first = torch.tensor([1 - BETA1**t for t in values], dtype=torch.float64)
    second = torch.tensor([math.sqrt(1 - BETA2**t) for t in values], dtype=torch.float64)
    return first.float()[inverse], second.float()[inverse]


def reconstruction_errors(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Each sample's mean squared reconstruction error under every expert's autoencoder
    (`Expert.reconstruction_errors`): parameters [N, K, ...], data [N, n, d] → [N, K, n]."""
    z = torch.einsum("cnd,ckld->cknl", x, params["enc_w"]) + params["enc_b"].unsqueeze(2)
    back = torch.einsum("cknl,ckdl->cknd", z, params["dec_w"]) + params["dec_b"].unsqueeze(2)
    return ((back - x.unsqueeze(1)) ** 2).mean(dim=3)
