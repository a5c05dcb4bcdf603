"""Results: what a run produced, read back: metrics, insights, meta-params, logs, attempts,
live events and the clients' data (routes, service)."""
