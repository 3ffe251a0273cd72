"""Alembic migrations of the feedback database; `musegen_core.feedback.migrate` runs them (the store does, on open)."""
