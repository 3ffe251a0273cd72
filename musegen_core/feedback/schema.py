"""The feedback database's tables (SQLAlchemy Core), as the newest Alembic revision leaves them.

The schema changes only through a migration in `musegen_core/feedback/migrations/versions/`; these `Table`s are
what the store reads and writes, and a test checks that they match what the migrations build (SQLite and
PostgreSQL). Every constraint is named, so migrations can refer to it on every backend.

    raters          id, name (unique: a chosen name, or an anonymous per-browser id "anon-<hex>"), anonymous,
                    created_at
    pieces          sha256 (primary key: hex digest of the MIDI bytes), midi, size, created_at — each piece once
    ratings         id, created_at, stars (1–5), comment, model_name, model_version, seed, controls_json, style,
                    prime_name, prime_sha256 → pieces, take_sha256 → pieces, rater_id → raters (NULL for ratings
                    stored before raters existed, or given without one); one rating per (rater, prime, take)
    rating_tags     rating_id → ratings (cascade), tag
    pair_votes      id, created_at, rater_id → raters, pair_key, prime_name, prime_sha256 → pieces, choice
                    (a | b | tie | skip), and per take X in (a, b): X_sha256 → pieces, X_model_name,
                    X_model_version, X_seed, X_controls_json; one vote per (rater, pair_key)
    pair_vote_tags  vote_id → pair_votes (cascade), tag
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

raters = Table(
    "raters",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("anonymous", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("name", name="uq_raters_name"),
)

pieces = Table(
    "pieces",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("midi", LargeBinary, nullable=False),
    Column("size", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

ratings = Table(
    "ratings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("stars", Integer, nullable=False),
    Column("comment", Text, nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(100), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("controls_json", Text, nullable=False),
    Column("prime_name", String(300), nullable=False),
    Column("prime_sha256", String(64), ForeignKey("pieces.sha256", name="fk_ratings_prime"), nullable=False),
    Column("take_sha256", String(64), ForeignKey("pieces.sha256", name="fk_ratings_take"), nullable=False),
    Column("rater_id", Integer, ForeignKey("raters.id", name="fk_ratings_rater"), nullable=True),
    Column("style", String(100), nullable=True),
    CheckConstraint("stars BETWEEN 1 AND 5", name="stars_1_to_5"),
    UniqueConstraint("rater_id", "prime_sha256", "take_sha256", name="uq_ratings_rater_take"),
)
Index("ix_ratings_created_at", ratings.c.created_at)

rating_tags = Table(
    "rating_tags",
    metadata,
    Column("rating_id", Integer, ForeignKey("ratings.id", name="fk_rating_tags_rating", ondelete="CASCADE")),
    Column("tag", String(40)),
    PrimaryKeyConstraint("rating_id", "tag", name="pk_rating_tags"),
)


def _take_columns(side: str) -> list[Column]:
    return [
        Column(f"{side}_sha256", String(64), ForeignKey("pieces.sha256", name=f"fk_pair_votes_{side}"), nullable=False),
        Column(f"{side}_model_name", String(200), nullable=False),
        Column(f"{side}_model_version", String(100), nullable=False),
        Column(f"{side}_seed", Integer, nullable=False),
        Column(f"{side}_controls_json", Text, nullable=False),
    ]


pair_votes = Table(
    "pair_votes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("rater_id", Integer, ForeignKey("raters.id", name="fk_pair_votes_rater"), nullable=False),
    Column("pair_key", String(64), nullable=False),
    Column("prime_name", String(300), nullable=False),
    Column("prime_sha256", String(64), ForeignKey("pieces.sha256", name="fk_pair_votes_prime"), nullable=False),
    *_take_columns("a"),
    *_take_columns("b"),
    Column("choice", String(4), nullable=False),
    CheckConstraint("choice IN ('a', 'b', 'tie', 'skip')", name="choice_a_b_tie_skip"),
    UniqueConstraint("rater_id", "pair_key", name="uq_pair_votes_rater_pair"),
)
Index("ix_pair_votes_created_at", pair_votes.c.created_at)

pair_vote_tags = Table(
    "pair_vote_tags",
    metadata,
    Column("vote_id", Integer, ForeignKey("pair_votes.id", name="fk_pair_vote_tags_vote", ondelete="CASCADE")),
    Column("tag", String(40)),
    PrimaryKeyConstraint("vote_id", "tag", name="pk_pair_vote_tags"),
)
