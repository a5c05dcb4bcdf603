"""Compare: 2–20 runs side by side (routes, service)."""
