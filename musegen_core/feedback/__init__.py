"""Ratings and pair votes: schema and migrations, the store, and the dataset export the fine-tuner reads.

The names below are imported on first use, so `musegen` commands that never touch the database do not load
SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from musegen_core.feedback.store import TAGS, FeedbackStore, PairTake, PairVote, Rating

__all__ = ["TAGS", "FeedbackStore", "PairTake", "PairVote", "Rating"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from musegen_core.feedback import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
