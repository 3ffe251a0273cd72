"""The first schema: one `ratings` table, with the prime and the take inline as MIDI bytes.

This is the table that `Base.metadata.create_all` made before the store used migrations (commit 2738066 and
earlier); such a database has no `alembic_version` table and is stamped with this revision when first opened.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stars", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.String(length=100), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("controls_json", sa.Text(), nullable=False),
        sa.Column("prime_name", sa.String(length=300), nullable=False),
        sa.Column("prime_midi", sa.LargeBinary(), nullable=False),
        sa.Column("generated_midi", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("stars BETWEEN 1 AND 5", name="stars_1_to_5"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("ratings")
