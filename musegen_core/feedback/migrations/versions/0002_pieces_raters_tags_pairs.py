"""Pieces stored once by content, raters, tags, pair votes.

Data migration: every rating's inline `prime_midi` / `generated_midi` moves into `pieces` (one row per distinct
sha256, dated by the first rating that used it) and the rating keeps the two digests (`prime_sha256`,
`take_sha256`); `style` is filled from the rating's controls (`controls["style"]`, NULL for "any style"). Ratings
from before have no rater (`rater_id` NULL). Downgrading puts the MIDI bytes back inline and drops raters, tags and
pair votes (those did not exist in 0001, so they are lost).

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-20
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BATCH = 500


def _ratings_as(*, midi_nullable: bool, refs_final: bool) -> sa.Table:
    """`ratings` as it stands between the steps below: old columns plus the four new ones (batch mode copies it on
    SQLite). `refs_final`: the new columns are NOT NULL where they end up so, with their foreign keys and unique key."""
    meta = sa.MetaData()
    sa.Table("pieces", meta, sa.Column("sha256", sa.String(64), primary_key=True))
    sa.Table("raters", meta, sa.Column("id", sa.Integer, primary_key=True))

    def ref(target: str, name: str) -> list[sa.ForeignKey]:
        return [sa.ForeignKey(target, name=name)] if refs_final else []

    return sa.Table(
        "ratings",
        meta,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stars", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.String(length=100), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("controls_json", sa.Text(), nullable=False),
        sa.Column("prime_name", sa.String(length=300), nullable=False),
        sa.Column("prime_midi", sa.LargeBinary(), nullable=midi_nullable),
        sa.Column("generated_midi", sa.LargeBinary(), nullable=midi_nullable),
        sa.Column("prime_sha256", sa.String(64), *ref("pieces.sha256", "fk_ratings_prime"), nullable=not refs_final),
        sa.Column("take_sha256", sa.String(64), *ref("pieces.sha256", "fk_ratings_take"), nullable=not refs_final),
        sa.Column("rater_id", sa.Integer(), *ref("raters.id", "fk_ratings_rater"), nullable=True),
        sa.Column("style", sa.String(100), nullable=True),
        sa.CheckConstraint("stars BETWEEN 1 AND 5", name="stars_1_to_5"),
        *(
            [sa.UniqueConstraint("rater_id", "prime_sha256", "take_sha256", name="uq_ratings_rater_take")]
            if refs_final
            else []
        ),
    )


def _take_columns(side: str) -> list[sa.Column]:
    return [
        sa.Column(f"{side}_sha256", sa.String(64), nullable=False),
        sa.Column(f"{side}_model_name", sa.String(200), nullable=False),
        sa.Column(f"{side}_model_version", sa.String(100), nullable=False),
        sa.Column(f"{side}_seed", sa.Integer(), nullable=False),
        sa.Column(f"{side}_controls_json", sa.Text(), nullable=False),
    ]


def _style(controls_json: str) -> str | None:
    try:
        style = json.loads(controls_json).get("style")
    except (ValueError, AttributeError):
        return None
    return style[:100] if isinstance(style, str) and style else None


def upgrade() -> None:
    op.create_table(
        "raters",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", name="uq_raters_name"),
    )
    op.create_table(
        "pieces",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("midi", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("ratings") as batch:  # plain ADD COLUMNs, on SQLite too
        batch.add_column(sa.Column("prime_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("take_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("rater_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("style", sa.String(100), nullable=True))

    _move_midi_into_pieces(op.get_bind())

    with op.batch_alter_table("ratings", copy_from=_ratings_as(midi_nullable=False, refs_final=False)) as batch:
        batch.alter_column("prime_sha256", existing_type=sa.String(64), nullable=False)
        batch.alter_column("take_sha256", existing_type=sa.String(64), nullable=False)
        batch.drop_column("prime_midi")
        batch.drop_column("generated_midi")
        batch.create_foreign_key("fk_ratings_prime", "pieces", ["prime_sha256"], ["sha256"])
        batch.create_foreign_key("fk_ratings_take", "pieces", ["take_sha256"], ["sha256"])
        batch.create_foreign_key("fk_ratings_rater", "raters", ["rater_id"], ["id"])
        batch.create_unique_constraint("uq_ratings_rater_take", ["rater_id", "prime_sha256", "take_sha256"])
    op.create_index("ix_ratings_created_at", "ratings", ["created_at"])

    op.create_table(
        "rating_tags",
        sa.Column("rating_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(40), nullable=False),
        sa.ForeignKeyConstraint(["rating_id"], ["ratings.id"], name="fk_rating_tags_rating", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rating_id", "tag", name="pk_rating_tags"),
    )
    op.create_table(
        "pair_votes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("pair_key", sa.String(64), nullable=False),
        sa.Column("prime_name", sa.String(300), nullable=False),
        sa.Column("prime_sha256", sa.String(64), nullable=False),
        *_take_columns("a"),
        *_take_columns("b"),
        sa.Column("choice", sa.String(4), nullable=False),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"], name="fk_pair_votes_rater"),
        sa.ForeignKeyConstraint(["prime_sha256"], ["pieces.sha256"], name="fk_pair_votes_prime"),
        sa.ForeignKeyConstraint(["a_sha256"], ["pieces.sha256"], name="fk_pair_votes_a"),
        sa.ForeignKeyConstraint(["b_sha256"], ["pieces.sha256"], name="fk_pair_votes_b"),
        sa.CheckConstraint("choice IN ('a', 'b', 'tie', 'skip')", name="choice_a_b_tie_skip"),
        sa.UniqueConstraint("rater_id", "pair_key", name="uq_pair_votes_rater_pair"),
    )
    op.create_index("ix_pair_votes_created_at", "pair_votes", ["created_at"])
    op.create_table(
        "pair_vote_tags",
        sa.Column("vote_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(40), nullable=False),
        sa.ForeignKeyConstraint(["vote_id"], ["pair_votes.id"], name="fk_pair_vote_tags_vote", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("vote_id", "tag", name="pk_pair_vote_tags"),
    )


def _move_midi_into_pieces(conn: sa.Connection) -> None:
    ratings = sa.table(
        "ratings",
        sa.column("id", sa.Integer),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("controls_json", sa.Text),
        sa.column("prime_midi", sa.LargeBinary),
        sa.column("generated_midi", sa.LargeBinary),
        sa.column("prime_sha256", sa.String),
        sa.column("take_sha256", sa.String),
        sa.column("style", sa.String),
    )
    pieces = sa.table(
        "pieces",
        sa.column("sha256", sa.String),
        sa.column("midi", sa.LargeBinary),
        sa.column("size", sa.Integer),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    fill = (
        sa.update(ratings)
        .where(ratings.c.id == sa.bindparam("rid"))
        .values(prime_sha256=sa.bindparam("p_sha"), take_sha256=sa.bindparam("t_sha"), style=sa.bindparam("s"))
    )
    seen: set[str] = set()
    last_id = -1
    while True:
        rows = conn.execute(
            sa.select(ratings.c.id, ratings.c.created_at, ratings.c.controls_json, ratings.c.prime_midi,
                      ratings.c.generated_midi)
            .where(ratings.c.id > last_id)
            .order_by(ratings.c.id)
            .limit(BATCH)
        ).all()  # fmt: skip
        if not rows:
            return
        new_pieces, updates = [], []
        for row in rows:
            digests = []
            for data in (bytes(row.prime_midi), bytes(row.generated_midi)):
                digest = hashlib.sha256(data).hexdigest()
                digests.append(digest)
                if digest not in seen:
                    seen.add(digest)
                    new_pieces.append({"sha256": digest, "midi": data, "size": len(data), "created_at": row.created_at})
            updates.append({"rid": row.id, "p_sha": digests[0], "t_sha": digests[1], "s": _style(row.controls_json)})
        if new_pieces:
            conn.execute(sa.insert(pieces), new_pieces)
        conn.execute(fill, updates)
        last_id = rows[-1].id


def downgrade() -> None:
    op.drop_table("pair_vote_tags")
    op.drop_index("ix_pair_votes_created_at", table_name="pair_votes")
    op.drop_table("pair_votes")
    op.drop_table("rating_tags")
    op.drop_index("ix_ratings_created_at", table_name="ratings")
    with op.batch_alter_table("ratings") as batch:
        batch.add_column(sa.Column("prime_midi", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("generated_midi", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE ratings SET"
        " prime_midi = (SELECT midi FROM pieces WHERE pieces.sha256 = ratings.prime_sha256),"
        " generated_midi = (SELECT midi FROM pieces WHERE pieces.sha256 = ratings.take_sha256)"
    )
    with op.batch_alter_table("ratings", copy_from=_ratings_as(midi_nullable=True, refs_final=True)) as batch:
        batch.drop_constraint("uq_ratings_rater_take", type_="unique")
        batch.drop_constraint("fk_ratings_prime", type_="foreignkey")
        batch.drop_constraint("fk_ratings_take", type_="foreignkey")
        batch.drop_constraint("fk_ratings_rater", type_="foreignkey")
        batch.drop_column("prime_sha256")
        batch.drop_column("take_sha256")
        batch.drop_column("rater_id")
        batch.drop_column("style")
        batch.alter_column("prime_midi", existing_type=sa.LargeBinary(), nullable=False)
        batch.alter_column("generated_midi", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table("pieces")
    op.drop_table("raters")
