"""Requested client sizes: `samples_per_client` each, or lognormal quantity skew.

With `quantity_skew` σ > 0 (as in LEAF / FedProx): round(samples_per_client · w_i / mean(w))
with w_i ~ LogNormal(0, σ²), clipped to [MIN_CLIENT_SAMPLES, MAX_CLIENT_SIZE_FACTOR ·
samples_per_client], drawn from their own stream (seed, "data", "sizes") so they do not
depend on the data set. The synthetic data, `resample_to_size` and `inner_dirichlet` use
these sizes; the other partitions of a real data set have natural sizes.
"""

from __future__ import annotations

import numpy as np

from scarcity.params import RunConfig

# Bounds of a client's data size under quantity skew: at least 2 samples (a variance needs
# two), at most this multiple of samples_per_client (the padded batched tensors, and so the
# work, stay within a fixed factor of the unskewed run).
MIN_CLIENT_SAMPLES = 2
MAX_CLIENT_SIZE_FACTOR = 4

DATA_STREAM = 0xDA7A  # second seed word, so data draws never collide with training draws
SIZE_STREAM = 0x512E  # third seed word: client sizes, apart from the data draws


def requested_sizes(config: RunConfig) -> list[int]:
    n = config.samples_per_client
    if config.quantity_skew == 0:
        return [n] * config.num_clients
    rng = np.random.default_rng([config.seed, DATA_STREAM, SIZE_STREAM])
    weights = rng.lognormal(0.0, config.quantity_skew, size=config.num_clients)
    sizes = np.rint(n * weights / weights.mean())
    return np.clip(sizes, MIN_CLIENT_SAMPLES, MAX_CLIENT_SIZE_FACTOR * n).astype(int).tolist()
