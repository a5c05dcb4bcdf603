"""Simulations: submit, read, list, rename, cancel and delete runs (routes, service)."""
