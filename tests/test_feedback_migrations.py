"""Migrations (Alembic): a database made by the code before migrations upgrades without losing a row, on SQLite and
PostgreSQL; the migrated schema is exactly `musegen_core.feedback.schema`; downgrading and upgrading again keeps the
ratings; opening an old database from several threads at once migrates it once."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, DateTime, Integer, LargeBinary, String, Text, create_engine, inspect, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from musegen_core.feedback import FeedbackStore, migrate
from musegen_core.feedback.schema import metadata

# -- the schema as committed before migrations (musegen_core/feedback/store.py at 2738066), frozen history ----------


class OldBase(DeclarativeBase):
    pass


class OldRatingRow(OldBase):
    __tablename__ = "ratings"
    __table_args__ = (CheckConstraint("stars BETWEEN 1 AND 5", name="stars_1_to_5"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stars: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(100))
    seed: Mapped[int] = mapped_column(Integer)
    controls_json: Mapped[str] = mapped_column(Text)
    prime_name: Mapped[str] = mapped_column(String(300), default="")
    prime_midi: Mapped[bytes] = mapped_column(LargeBinary)
    generated_midi: Mapped[bytes] = mapped_column(LargeBinary)


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _old_rows() -> list[dict]:
    """Seven ratings as the old app stored them: two primes, takes repeated, one without a style."""
    rows = []
    for i in range(7):
        controls = {"bars": 8, "temperature": 1.0, "seed": i, "part_index": 0, "tune_index": 0}
        if i != 3:
            controls["style"] = ["irish", "german_folk"][i % 2]
        rows.append({
            "created_at": T0 + timedelta(hours=i),
            "stars": 1 + i % 5,
            "comment": f"comment {i}" if i % 2 else "",
            "model_name": "lstm-folk" if i < 5 else "transformer-folk",
            "model_version": "1" if i < 4 else "2",
            "seed": i,
            "controls_json": json.dumps(controls, sort_keys=True),
            "prime_name": f"tune{i % 2}.mid",
            "prime_midi": f"MThd prime {i % 2}".encode() + bytes(range(256)),
            "generated_midi": f"MThd take {i % 3}".encode() + bytes([0, 255, i % 3]),
        })  # fmt: skip
    return rows


def _make_old_database(url: str) -> list[dict]:
    engine = create_engine(url)
    try:
        OldBase.metadata.create_all(engine)
        rows = _old_rows()
        with Session(engine) as session, session.begin():
            session.add_all(OldRatingRow(**row) for row in rows)
        assert "alembic_version" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    return rows


def test_a_database_from_before_migrations_keeps_every_rating(db_url: str, open_store) -> None:
    old = _make_old_database(db_url)
    store = open_store()
    assert store.schema_revision() == migrate.head_revision() == "0002"

    ratings = store.ratings()
    assert len(ratings) == len(old) == store.count()
    for row, rating in zip(old, ratings, strict=True):
        assert rating.id is not None
        assert (rating.stars, rating.comment, rating.model_name, rating.model_version, rating.seed) == (
            row["stars"], row["comment"], row["model_name"], row["model_version"], row["seed"]
        )  # fmt: skip
        assert rating.controls == json.loads(row["controls_json"])
        assert rating.prime_name == row["prime_name"]
        assert rating.prime_midi == row["prime_midi"] and rating.generated_midi == row["generated_midi"]
        assert rating.created_at == row["created_at"]
        assert rating.rater is None and rating.tags == ()
    distinct = {r["prime_midi"] for r in old} | {r["generated_midi"] for r in old}
    assert store.counts().pieces == len(distinct) == 5
    assert [r.style for r in ratings] == ["irish", "german_folk", "irish", None, "irish", "german_folk", "irish"]
    assert {s.style for s in store.rating_stats()} == {"irish", "german_folk", "any"}  # "any": no style asked for

    # the old database now takes new kinds of records, and the upgrade is not repeated on the next open
    store.add_pair_vote(_pair_from(ratings))
    store.dispose()
    again = open_store()
    assert again.count() == len(old) and again.counts().pair_votes == 1


def _pair_from(ratings):  # type: ignore[no-untyped-def]
    from musegen_core.feedback import PairTake, PairVote

    a, b = ratings[0], ratings[2]
    takes = [PairTake(r.generated_midi, r.model_name, r.model_version, r.seed, r.controls) for r in (a, b)]
    return PairVote(a.prime_midi, takes[0], takes[1], "a", rater="ada")


def test_stored_pieces_are_keyed_by_their_sha256(db_url: str, open_store) -> None:
    _make_old_database(db_url)
    store = open_store()
    for rating in store.ratings():
        assert store.piece(hashlib.sha256(rating.generated_midi).hexdigest()) == rating.generated_midi


def test_migrated_and_fresh_databases_match_the_schema_module(db_url: str, tmp_path) -> None:
    engine = migrate.make_engine(db_url)
    try:
        assert migrate.upgrade(engine) == "0002"
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        assert set(inspect(engine).get_table_names()) == set(metadata.tables) | {"alembic_version"}
    finally:
        engine.dispose()


def test_downgrade_to_the_first_schema_and_back_keeps_the_ratings(db_url: str, open_store) -> None:
    old = _make_old_database(db_url)
    open_store().dispose()  # upgrades
    engine = migrate.make_engine(db_url)
    try:
        assert migrate.downgrade(engine, "0001") == "0001"
        with engine.connect() as conn:
            back = conn.execute(text("SELECT stars, prime_midi, generated_midi FROM ratings ORDER BY id")).all()
        assert [(r.stars, bytes(r.prime_midi), bytes(r.generated_midi)) for r in back] == [
            (row["stars"], row["prime_midi"], row["generated_midi"]) for row in old
        ]
        assert "pieces" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert [r.generated_midi for r in open_store().ratings()] == [row["generated_midi"] for row in old]


def test_an_old_database_opened_by_several_threads_at_once_migrates_once(db_url: str) -> None:
    _make_old_database(db_url)
    stores: list[FeedbackStore] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            stores.append(FeedbackStore(db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors
        assert {store.count() for store in stores} == {7}
        assert {store.schema_revision() for store in stores} == {"0002"}
    finally:
        for store in stores:
            store.dispose()


def test_an_empty_database_is_created_at_the_newest_schema(db_url: str, open_store) -> None:
    store = open_store()
    assert store.schema_revision() == "0002" and store.count() == 0


@pytest.mark.parametrize("revision", ["0001", "0002"])
def test_revisions_form_one_line(revision: str) -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(migrate.MIGRATIONS))
    assert scripts.get_heads() == ["0002"]
    assert scripts.get_revision(revision) is not None


def test_a_database_from_a_newer_musegen_is_refused_with_the_reason(db_url: str, open_store) -> None:
    from musegen_core.errors import StoreError

    open_store().dispose()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(StoreError, match="schema revision 0099, which this MuseGen does not know"):
        FeedbackStore(db_url)
