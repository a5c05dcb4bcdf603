"""The strategies' math as small pure functions over stacked client models.

No state, no I/O, inputs never modified. A stacked model maps each key to a tensor with a
leading participant axis [P, ...]; a model (the global one) maps the same keys to [...].
`flatten` concatenates the keys in the mapping's order into one row per participant [P, D].

- `weighted_mean`: FedAvg's sample-weighted mean (McMahan, Moore, Ramage, Hampson & Agüera y
  Arcas 2017, "Communication-Efficient Learning of Deep Networks from Decentralized Data"),
  computed by `scarcity.core.aggregate` so stored runs stay bit-identical.
- `reptile`: θ + ε·mean_i(θ_i − θ) (Nichol, Achiam & Schulman 2018, "On First-Order
  Meta-Learning Algorithms").
- `coordinate_median`, `trimmed_mean`: coordinate-wise median and trimmed mean (Yin, Chen,
  Ramchandran & Bartlett 2018, "Byzantine-Robust Distributed Learning: Towards Optimal
  Statistical Rates").
- `pairwise_squared_distances`, `krum_scores`, `krum_select`, `multi_krum_select`: Krum and
  Multi-Krum (Blanchard, El Mhamdi, Guerraoui & Stainer 2017, "Machine Learning with
  Adversaries: Byzantine Tolerant Gradient Descent").
- `bulyan_select`, `closest_to_median_mean`, `bulyan`: Bulyan (El Mhamdi, Guerraoui & Rouault
  2018, "The Hidden Vulnerability of Distributed Learning in Byzantium").
- `qffl_aggregate`: q-FedAvg (Li, Sanjabi, Beirami & Smith 2020, "Fair Resource Allocation in
  Federated Learning").
- `clip_to_norm`, `clip_updates`: per-update L2 clipping (McMahan, Ramage, Talwar & Zhang
  2018, "Learning Differentially Private Recurrent Language Models").
- `local_steps`, `scaffold_client_controls`: SCAFFOLD's option-II control variates
  (Karimireddy, Kale, Mohri, Reddi, Stich & Suresh 2020, "SCAFFOLD: Stochastic Controlled
  Averaging for Federated Learning").
- `cluster_means`: IFCA's per-cluster model average (Ghosh, Chung, Yin & Ramchandran 2020, "An
  Efficient Framework for Clustered Federated Learning").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from scarcity.strategies.base import Strategy

Weights = Mapping[str, Tensor]


def option(strategy: Strategy, name: str) -> Any:
    """The strategy's parameter `name`: the config's value, or the strategy's default while
    the field is unset (None)."""
    value = getattr(strategy.config, name, None)
    return strategy.defaults.get(name) if value is None else value


# -- layout -------------------------------------------------------------------------------


def flatten(stacked: Weights) -> Tensor:
    """One row per participant [P, D]: the keys' values concatenated in the mapping's order."""
    values = list(stacked.values())
    if not values:
        raise ValueError("flatten needs at least one key")
    rows = values[0].shape[0]
    return torch.cat([value.reshape(rows, -1) for value in values], dim=1)


def flatten_one(weights: Weights) -> Tensor:
    """One model as a vector [D] (the keys in the mapping's order)."""
    return torch.cat([value.reshape(-1) for value in weights.values()])


def unflatten(flat: Tensor, like: Weights) -> dict[str, Tensor]:
    """Inverse of `flatten` / `flatten_one`: `like` is one (unstacked) model giving each key's
    shape; the leading axes of `flat` ([D] or [P, D]) are kept."""
    lead = flat.shape[:-1]
    sizes = [value.numel() for value in like.values()]
    if sum(sizes) != flat.shape[-1]:
        raise ValueError(f"unflatten: {flat.shape[-1]} values for a model of {sum(sizes)}")
    pieces = torch.split(flat, sizes, dim=-1)
    return {
        key: piece.reshape(*lead, *value.shape)
        for (key, value), piece in zip(like.items(), pieces, strict=True)
    }


def rows(stacked: Weights, index: Tensor) -> dict[str, Tensor]:
    """The participants `index` (a [k] index tensor) of a stacked model, in that order."""
    return {key: value[index] for key, value in stacked.items()}


def deltas(stacked: Weights, global_weights: Weights) -> dict[str, Tensor]:
    """Each participant's update w_i − w_global [P, ...]."""
    return {key: value - global_weights[key] for key, value in stacked.items()}


# -- means --------------------------------------------------------------------------------


def weighted_mean(
    stacked: Weights, sample_counts: Tensor, sequential: bool = False
) -> dict[str, Tensor]:
    """Σ_i n_i·w_i / Σ_i n_i: one contraction over the client axis, or (`sequential`) summed
    client by client as the per-client reference execution always did."""
    # Imported here: the engine's core reads the config, which is assembled from the strategies.
    from scarcity.core.aggregate import fedavg, fedavg_stacked

    if sequential:
        size = next(iter(stacked.values())).shape[0]
        states = [{key: value[i] for key, value in stacked.items()} for i in range(size)]
        return fedavg(states, sample_counts.tolist())
    return fedavg_stacked(stacked, sample_counts)


def mean(stacked: Weights) -> dict[str, Tensor]:
    """Unweighted mean over the participants."""
    return {key: value.mean(dim=0) for key, value in stacked.items()}


def reptile(
    global_weights: Weights, stacked: Weights, step_size: float, sequential: bool = False
) -> dict[str, Tensor]:
    """θ + ε·mean_i(θ_i − θ) (client by client when `sequential`)."""
    from scarcity.core.aggregate import reptile_step, reptile_step_stacked  # as weighted_mean

    if sequential:
        size = next(iter(stacked.values())).shape[0]
        states = [{key: value[i] for key, value in stacked.items()} for i in range(size)]
        return reptile_step(global_weights, states, step_size)
    return reptile_step_stacked(global_weights, stacked, step_size)


def cluster_means(
    clusters: Weights,
    stacked: Weights,
    sample_counts: Tensor,
    choice: Tensor,
    sequential: bool = False,
) -> dict[str, Tensor]:
    """Each cluster model [C, ...] becomes the sample-weighted mean (`weighted_mean`) of the
    participants' models that chose it (`choice` [P]); a cluster no participant chose stays."""
    out = {key: value.clone() for key, value in clusters.items()}
    for j in range(next(iter(clusters.values())).shape[0]):
        members = (choice == j).nonzero().squeeze(1)
        if len(members) == 0:
            continue
        averaged = weighted_mean(rows(stacked, members), sample_counts[members], sequential)
        for key, value in averaged.items():
            out[key][j] = value
    return out


# -- coordinate-wise robust statistics ----------------------------------------------------


def _median(values: Tensor) -> Tensor:
    # torch.median returns the lower middle value (a selection, no full sort); an even count
    # takes the mean of both middle values, as numpy.median: the upper one is the lower
    # middle value of the negated values.
    lower = values.median(dim=0).values
    if values.shape[0] % 2:
        return lower
    upper = -(-values).median(dim=0).values
    return (lower + upper) / 2


def coordinate_median(stacked: Weights) -> dict[str, Tensor]:
    """Coordinate-wise median over the participants (even count: mean of the middle two)."""
    return {key: _median(value) for key, value in stacked.items()}


def trimmed_mean(stacked: Weights, beta: float) -> dict[str, Tensor]:
    """Coordinate-wise: drop the int(β·P) smallest and largest values, average the rest."""
    size = next(iter(stacked.values())).shape[0]
    cut = int(beta * size)
    if size - 2 * cut < 1:
        raise ValueError(f"trimmed_mean: cutting {cut} from each end of {size} leaves nothing")
    return {
        key: value.sort(dim=0).values[cut : size - cut].mean(dim=0)
        for key, value in stacked.items()
    }


# -- Krum, Multi-Krum, Bulyan -------------------------------------------------------------


#: Rows of the Gram matrix computed per product by `upper_gram`.
GRAM_BLOCK = 128


def upper_gram(y: Tensor) -> Tensor:
    """y yᵀ [P, P] from the row blocks on and above the diagonal, mirrored below: a little
    over half the multiply-adds of `y @ y.T`, and exactly symmetric (each diagonal block is
    made so from its upper triangle)."""
    size = y.shape[0]
    gram = torch.empty(size, size, dtype=y.dtype)
    for start in range(0, size, GRAM_BLOCK):
        stop = min(start + GRAM_BLOCK, size)
        band = y[start:stop] @ y[start:].T  # [b, P − start]: this block row from the diagonal on
        gram[start:stop, start:] = band
        gram[start:, start:stop] = band.T
        diagonal = band[:, : stop - start]
        gram[start:stop, start:stop] = diagonal.triu() + diagonal.triu(1).T
    return gram


def pairwise_squared_distances(flat: Tensor, half_products: bool = False) -> Tensor:
    """‖x_i − x_j‖² of the rows of `flat` [P, D] as [P, P] (float64, exactly symmetric).

    As ‖y_i‖² + ‖y_j‖² − 2·y_i·y_j of the rows centred on their mean (distances do not move):
    one float32 matrix product instead of P² differences (1,000 clients: ~15 ms, not
    seconds). Centring makes the norms the size of the distances, so float32 (the models'
    own precision) loses nothing a selection would notice; scores are then summed in float64.
    `half_products` (engine_version ≥ 4): the products from `upper_gram`, which is symmetric
    as it comes (the full product is symmetrised by averaging it with its transpose); the
    distances then differ from the full product's by float rounding.
    """
    y = flat.float()
    y = y - y.mean(dim=0)
    norms = y.square().sum(dim=1)
    if half_products:  # in place: each fresh [P, P] buffer costs a pass of page faults
        out = norms[:, None] + norms[None, :]
        out = out.sub_(upper_gram(y), alpha=2.0).clamp_(min=0.0).double()
    else:
        out = (norms[:, None] + norms[None, :] - 2.0 * (y @ y.T)).clamp_(min=0.0)
        out = ((out + out.T) / 2).double()
    return out.fill_diagonal_(0.0)


def krum_scores_from_distances(
    distances: Tensor, num_malicious: int, overwrite: bool = False
) -> Tensor:
    """Krum score of each of n models: the sum of its squared distances to its
    max(1, n − f − 2) nearest other models (at most the n − 1 others). `overwrite`: zero the
    farthest in `distances` itself (a matrix the caller is done with), not in a copy.

    The farthest f + 1 or so of each row are zeroed (a top-k instead of sorting every row)
    and the row summed (its diagonal is 0). Summing what is kept, rather than subtracting the
    farthest from the total, keeps ties exact: two mutual nearest neighbours get one score, so
    the first index wins in either execution."""
    size = distances.shape[0]
    nearest = min(max(1, size - num_malicious - 2), size - 1)
    if nearest == 0:
        return torch.zeros(size, dtype=distances.dtype)
    farthest = size - 1 - nearest
    if farthest == 0:
        return distances.sum(dim=1)
    # Unsorted: the same indices (only their order differs), without sorting them per row.
    dropped = distances.topk(farthest, dim=1, sorted=False).indices
    kept = distances.scatter_ if overwrite else distances.scatter
    return kept(1, dropped, 0.0).sum(dim=1)


def krum_scores(flat: Tensor, num_malicious: int, half_products: bool = False) -> Tensor:
    """Krum scores [P] of the participants' flattened models [P, D]."""
    return krum_scores_from_distances(
        pairwise_squared_distances(flat, half_products), num_malicious, overwrite=True
    )


def krum_select(flat: Tensor, num_malicious: int, half_products: bool = False) -> int:
    """Krum: the participant with the lowest score (the first one on a tie)."""
    return int(torch.argmin(krum_scores(flat, num_malicious, half_products)))


def multi_krum_select(
    flat: Tensor, num_malicious: int, num_to_keep: int, half_products: bool = False
) -> Tensor:
    """Multi-Krum: the min(m, P) participants of lowest score (ties: lower index first), as
    ascending participant indices."""
    scores = krum_scores(flat, num_malicious, half_products)
    keep = min(num_to_keep, scores.shape[0])
    chosen = torch.sort(scores, stable=True).indices[:keep]
    return chosen.sort().values


def bulyan_select(flat: Tensor, num_malicious: int, half_products: bool = False) -> Tensor:
    """Bulyan's selection: θ = P − 2f models, each the Krum choice among the models not yet
    selected (Krum scores recomputed over the remaining ones), in selection order.

    While n ≥ f + 4 models remain, a Krum score is (sum of the distances to the other
    remaining models) − (sum of the f + 1 largest of them); both sums are kept up to date as
    models leave (each row's distances sorted once, a pointer at its (f+1)-th largest
    remaining one), so a pick costs O(P), not O(P²): 1,000 clients in a fraction of a
    second instead of seconds. From n = f + 3 on a score is one distance (the nearest), taken
    directly so that mutual nearest neighbours tie exactly and the first index wins.
    """
    size = flat.shape[0]
    f = num_malicious
    distances = pairwise_squared_distances(flat, half_products)
    alive = torch.ones(size, dtype=torch.bool)
    selected: list[int] = []
    picks = size - 2 * f
    # Phase 1 state: each row's columns by decreasing distance, and where each column sits.
    order = distances.argsort(dim=1, descending=True, stable=True)
    position = torch.empty_like(order)
    position.scatter_(1, order, torch.arange(size).expand(size, size))
    boundary = torch.full((size,), f, dtype=torch.long)  # position of the (f+1)-th largest
    total = distances.sum(dim=1)
    top = distances.gather(1, order[:, : f + 1]).sum(dim=1) if size > f else total
    rows = torch.arange(size)
    while len(selected) < picks:
        n = int(alive.sum())
        if n == 1:  # no neighbour left to count: the last one
            scores = torch.where(alive, 0.0, math.inf)
        elif n >= f + 4:
            scores = torch.where(alive, total - top, math.inf)
        else:  # one neighbour counts: the nearest remaining one
            near = distances.masked_fill(~alive.unsqueeze(0), math.inf)
            near.fill_diagonal_(math.inf)
            scores = torch.where(alive, near.amin(dim=1), math.inf)
        chosen = int(torch.argmin(scores))
        selected.append(chosen)
        alive[chosen] = False
        if n - 1 < f + 4:
            continue  # the next picks take the direct rule
        # Remove `chosen` from every remaining row's sums.
        total -= distances[:, chosen]
        hit = rows[alive & (position[:, chosen] <= boundary)]
        # In those rows the (f+1)-th largest moves to the next remaining other model.
        q = boundary[hit] + 1
        while True:
            column = order[hit, q]
            passed = ~alive[column] | (column == hit)
            if not bool(passed.any()):
                break
            q = q + passed.long()
        boundary[hit] = q
        top[hit] += distances[hit, order[hit, q]] - distances[hit, chosen]
    return torch.tensor(selected, dtype=torch.long)


def closest_to_median_mean(stacked: Weights, count: int) -> dict[str, Tensor]:
    """Coordinate-wise mean of the `count` values closest to the coordinate-wise median
    (ties: earlier participant first)."""
    out = {}
    for key, value in stacked.items():
        distance = (value - _median(value)).abs()
        order = torch.sort(distance, dim=0, stable=True).indices[:count]
        out[key] = torch.gather(value, 0, order).mean(dim=0)
    return out


def bulyan(stacked: Weights, num_malicious: int, half_products: bool = False) -> dict[str, Tensor]:
    """Bulyan: Krum-select θ = P − 2f models, then per coordinate average the β = θ − 2f of
    them closest to their median. Needs P ≥ 4f + 3."""
    size = next(iter(stacked.values())).shape[0]
    if size < 4 * num_malicious + 3:
        raise ValueError(
            f"bulyan needs at least 4·f + 3 = {4 * num_malicious + 3} participants, got {size}"
        )
    selected = rows(stacked, bulyan_select(flatten(stacked), num_malicious, half_products))
    return closest_to_median_mean(selected, size - 4 * num_malicious)


# -- q-FedAvg -----------------------------------------------------------------------------


def qffl_aggregate(
    global_weights: Weights,
    stacked: Weights,
    losses: Tensor,
    q: float,
    learning_rate: float,
    epsilon: float = 1e-10,
) -> dict[str, Tensor]:
    """q-FedAvg's server step, in float64, with L = 1/learning_rate and F_k = losses[k] + ε:
    Δw_k = L·(w − w_k), Δ_k = F_k^q·Δw_k, h_k = q·F_k^(q−1)·‖Δw_k‖² + L·F_k^q,
    w ← w − Σ_k Δ_k / Σ_k h_k."""
    lipschitz = 1.0 / learning_rate
    current = flatten_one(global_weights).double()
    grads = (current - flatten(stacked).double()) * lipschitz
    loss = losses.double() + epsilon
    scaled = loss.pow(q)[:, None] * grads
    h = q * loss.pow(q - 1) * grads.square().sum(dim=1) + lipschitz * loss.pow(q)
    new = current - scaled.sum(dim=0) / h.sum()
    dtype = next(iter(global_weights.values())).dtype
    return unflatten(new.to(dtype), global_weights)


# -- differential privacy -----------------------------------------------------------------


def clip_to_norm(flat_updates: Tensor, clipping_norm: float) -> Tensor:
    """Each row Δ of [P, D] scaled by min(1, C/‖Δ‖₂) (a zero row stays zero)."""
    norms = torch.linalg.vector_norm(flat_updates, dim=1, keepdim=True)
    return flat_updates * torch.clamp(clipping_norm / norms, max=1.0)


def clip_updates(
    stacked: Weights,
    global_weights: Weights,
    clipping_norm: float,
    unclipped: Tensor | None = None,
) -> dict[str, Tensor]:
    """The models w_g + Δ_i·min(1, C/‖Δ_i‖₂), Δ_i = w_i − w_g over all parameters; rows where
    `unclipped` [P] is True are left as sent (attackers do not clip client-side)."""
    rows = flatten(deltas(stacked, global_weights))
    clipped = clip_to_norm(rows, clipping_norm)
    if unclipped is not None:
        clipped = torch.where(unclipped.unsqueeze(1), rows, clipped)
    restored = unflatten(clipped, global_weights)
    return {key: global_weights[key] + restored[key] for key in stacked}


# -- SCAFFOLD -----------------------------------------------------------------------------


def local_steps(sample_counts: Tensor, local_epochs: int, batch_size: int) -> Tensor:
    """Local SGD steps K_i [P] (float64): epochs·⌈n_i / B⌉ for 0 < B < n_i, else epochs
    (full batch)."""
    counts = sample_counts.double()
    if batch_size <= 0:
        return torch.full_like(counts, float(local_epochs))
    batches = torch.where(counts > batch_size, torch.ceil(counts / batch_size), 1.0)
    return local_epochs * batches


def scaffold_client_controls(
    client_controls: Weights,
    server_control: Weights,
    global_weights: Weights,
    stacked: Weights,
    steps: Tensor,
    learning_rate: float,
) -> dict[str, Tensor]:
    """Option II: c_i⁺ = c_i − c + (w − w_i)/(K_i·η_l), for the participants' c_i [P, ...]."""
    out = {}
    for key, value in stacked.items():
        scale = (1.0 / (steps * learning_rate)).to(value.dtype)
        scale = scale.reshape(-1, *([1] * (value.dim() - 1)))
        out[key] = (
            client_controls[key] - server_control[key] + (global_weights[key] - value) * scale
        )
    return out
