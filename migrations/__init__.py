"""Alembic revisions of the Scarcity schema (applied by `scarcity migrate` / `models.migrate`)."""
