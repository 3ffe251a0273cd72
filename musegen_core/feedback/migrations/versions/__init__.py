"""Alembic revisions, oldest first: 0001 the first schema (ratings with inline MIDI), 0002 pieces/raters/tags/pairs."""
