"""Sweeps: grid and random searches expanded into ordinary simulations (routes, service)."""
