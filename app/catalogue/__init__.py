"""The catalogue: presets, strategies, partitions and models a config can name (routes,
service)."""
