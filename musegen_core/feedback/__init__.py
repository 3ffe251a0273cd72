"""Ratings and other feedback: schema, store, (later) dataset export."""

from musegen_core.feedback.store import FeedbackStore, Rating

__all__ = ["FeedbackStore", "Rating"]
