"""The feedback store on SQLite and on a real PostgreSQL server (`db_url`/`open_store` in conftest.py: each test
taking them runs on both): ratings and pair votes round-trip, survive a new engine and a new process, pieces are
stored once, tags and raters are validated, duplicates are replaced, statistics add up."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from musegen_core.errors import StoreError
from musegen_core.feedback import TAGS, FeedbackStore, PairTake, PairVote, Rating
from musegen_core.feedback.store import is_anonymous_rater, new_anonymous_rater_id


def _rating(stars: int = 4, **overrides: object) -> Rating:
    fields: dict = {
        "stars": stars,
        "model_name": "lstm-folk",
        "model_version": "1",
        "seed": 7,
        "controls": {"bars": 8, "temperature": 0.9, "top_p": 1.0, "part_index": 0, "style": "irish"},
        "prime_midi": b"MThd-prime",
        "generated_midi": b"MThd-take",
        "prime_name": "tune.mid",
        "comment": "nice turn in bar 3",
    }
    fields.update(overrides)
    return Rating(**fields)


def _take(midi: bytes, model: str = "lstm-folk", version: str = "1", seed: int = 0) -> PairTake:
    return PairTake(midi=midi, model_name=model, model_version=version, seed=seed, controls={"bars": 4, "seed": seed})


def _vote(choice: str = "a", rater: str = "ada", **overrides: object) -> PairVote:
    fields: dict = {
        "prime_midi": b"MThd-prime",
        "a": _take(b"MThd-A", seed=1),
        "b": _take(b"MThd-B", "transformer-folk", "1", seed=2),
        "choice": choice,
        "rater": rater,
        "prime_name": "tune.mid",
    }
    fields.update(overrides)
    return PairVote(**fields)


def test_rating_round_trip_keeps_every_field(open_store) -> None:
    store = open_store()
    rating_id = store.add(_rating())
    tagged_id = store.add_rating(_rating(stars=2, seed=8, tags=("too busy", "catchy"), rater="ada"))
    stored_tagged, stored = store.recent()
    assert stored.id == rating_id and stored_tagged.id == tagged_id
    assert stored.created_at is not None and stored.created_at.tzinfo is not None
    assert abs(stored.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert stored == _rating(id=rating_id)
    assert stored.rater is None and stored.style == "irish"
    assert stored_tagged == _rating(stars=2, seed=8, tags=("catchy", "too busy"), rater="ada", id=tagged_id)
    assert store.ratings() == [stored, stored_tagged]  # oldest first


def test_ratings_survive_a_new_engine_and_a_new_process(db_url: str, open_store) -> None:
    first = open_store()
    first.add(_rating(stars=2))
    first.add(_rating(stars=5, comment="best", rater="bo", tags=["catchy"]))
    first.dispose()

    again = open_store()
    assert [(r.stars, r.rater, r.tags) for r in again.recent()] == [(5, "bo", ("catchy",)), (2, None, ())]
    script = (
        "from musegen_core.feedback import FeedbackStore; import sys;"
        "s = FeedbackStore(sys.argv[1]); print(s.count(), s.recent()[0].comment); s.dispose()"
    )
    out = subprocess.run([sys.executable, "-c", script, db_url], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "best"]


def test_default_location_is_a_sqlite_file_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUSEGEN_DB_URL", raising=False)
    monkeypatch.setenv("MUSEGEN_DATA_DIR", str(tmp_path / "data"))
    store = FeedbackStore()
    store.add(_rating())
    store.dispose()
    db = tmp_path / "data" / "musegen.sqlite3"
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT stars, model_name FROM ratings").fetchall() == [(4, "lstm-folk")]
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_connections_have_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.sqlite3'}")
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    store.dispose()


@pytest.mark.parametrize("stars", [0, 6, -1, True])
def test_out_of_range_stars_are_refused(stars: int) -> None:
    with pytest.raises(StoreError, match="1 to 5"):
        _rating(stars=stars)


def test_database_enforces_the_star_range_and_the_references(db_url: str, open_store) -> None:
    store = open_store()
    store.add(_rating())
    digest = store.recent()[0].prime_sha256
    engine = create_engine(db_url)
    insert = (
        "INSERT INTO ratings (created_at, stars, comment, model_name, model_version, seed, controls_json, prime_name,"
        " prime_sha256, take_sha256) VALUES ('2026-01-01', :stars, '', 'm', '1', 0, '{}', '', :prime, :take)"
    )
    try:
        for stars, take in ((9, digest), (3, "f" * 64)):  # out of range; a take that is not in `pieces`
            with pytest.raises(IntegrityError), engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.execute(text(insert), {"stars": stars, "prime": digest, "take": take})
    finally:
        engine.dispose()
    assert store.count() == 1


def test_each_piece_is_stored_once(open_store) -> None:
    store = open_store()
    store.add(_rating(seed=1, generated_midi=b"take-1"))
    store.add(_rating(seed=2, generated_midi=b"take-2"))
    store.add(_rating(seed=3, generated_midi=b"take-1"))
    store.add_pair_vote(_vote(a=_take(b"take-1"), b=_take(b"take-3")))
    counts = store.counts()
    assert (counts.ratings, counts.pair_votes, counts.pieces) == (3, 1, 4)  # prime, take-1, take-2, take-3
    assert store.piece(store.recent()[0].take_sha256) == b"take-1"
    assert store.piece("0" * 64) is None


def test_tags_are_validated_and_normalised(open_store) -> None:
    with pytest.raises(StoreError, match=r"Unknown tag\(s\): great\. Tags allowed: catchy, boring"):
        _rating(tags=("catchy", "great"))
    with pytest.raises(StoreError, match="Unknown tag"):
        _vote(tags=("meh",))
    rating = _rating(tags=["Wrong  Notes", "catchy", "catchy"])
    assert rating.tags == ("catchy", "wrong notes")
    assert all(name == " ".join(name.lower().split()) and about for name, about in TAGS.items())
    assert {"catchy", "boring", "off-style", "wrong notes", "too busy", "too sparse"} <= TAGS.keys()
    store = open_store()
    rating_id = store.add(rating)
    assert store.recent()[0].tags == ("catchy", "wrong notes")
    assert store.delete_rating(rating_id) and not store.delete_rating(rating_id)
    assert store.count() == 0


def test_raters_are_named_or_anonymous(open_store) -> None:
    anonymous = new_anonymous_rater_id()
    assert is_anonymous_rater(anonymous) and not is_anonymous_rater("ada")
    for bad in ("", "   ", "x" * 101, "tab\x07bell"):
        with pytest.raises(StoreError, match="rater name"):
            _vote(rater=bad)
    store = open_store()
    store.add(_rating(rater="  Ada   Lovelace "))
    store.add_pair_vote(_vote(rater=anonymous))
    store.add_pair_vote(_vote(rater="Ada Lovelace", choice="b"))
    assert store.add_rater("cy").name == "cy"
    assert [(r.name, r.anonymous, r.ratings, r.pair_votes) for r in store.raters()] == [
        ("Ada Lovelace", False, 1, 1),
        (anonymous, True, 0, 1),
        ("cy", False, 0, 0),
    ]


def test_pair_vote_round_trip(open_store) -> None:
    store = open_store()
    vote = _vote(tags=("catchy", "off-style"))
    vote_id = store.add_pair_vote(vote)
    [stored] = store.recent_pair_votes()
    assert stored == PairVote(**{**vars(vote), "id": vote_id})
    assert stored.a.controls == {"bars": 4, "seed": 1} and stored.b.model == ("transformer-folk", "1")
    assert stored.created_at is not None
    with pytest.raises(StoreError, match="one of a, b, tie, skip"):
        _vote(choice="c")


def test_a_raters_repeated_vote_on_a_pair_replaces_the_earlier_one(open_store) -> None:
    store = open_store()
    first = store.add_pair_vote(_vote("a", tags=("catchy",)))
    swapped = _vote("tie", a=_vote().b, b=_vote().a)  # the same two takes, the other way round
    assert swapped.pair_key == _vote().pair_key
    assert store.add_pair_vote(swapped) == first
    [stored] = store.pair_votes()
    assert (stored.id, stored.choice, stored.tags, stored.a.midi) == (first, "tie", (), b"MThd-B")

    other_rater = store.add_pair_vote(_vote("b", rater="bo"))
    other_pair = store.add_pair_vote(_vote("b", b=_take(b"MThd-C")))
    assert len({first, other_rater, other_pair}) == 3
    assert store.counts().pair_votes == 3


def test_a_raters_repeated_rating_of_a_take_replaces_the_earlier_one(open_store) -> None:
    store = open_store()
    first = store.add(_rating(stars=2, rater="ada", tags=("boring",)))
    assert store.add(_rating(stars=5, rater="ada", comment="grew on me")) == first
    store.add(_rating(stars=1, rater="bo"))
    store.add(_rating(stars=3))  # no rater: never merged
    store.add(_rating(stars=3))
    assert [(r.stars, r.rater, r.tags) for r in store.ratings()] == [
        (5, "ada", ()),
        (1, "bo", ()),
        (3, None, ()),
        (3, None, ()),
    ]


def test_statistics_per_model_version_style_and_day_and_win_rates(open_store) -> None:
    store = open_store()
    store.add(_rating(stars=5))
    store.add(_rating(stars=2, seed=2))
    store.add(_rating(stars=3, model_version="2", controls={"bars": 8}))
    stats = store.rating_stats()
    today = datetime.now(UTC).date()
    assert [(s.day, s.model_name, s.model_version, s.style, s.count, s.mean_stars) for s in stats] == [
        (today, "lstm-folk", "1", "irish", 2, 3.5),
        (today, "lstm-folk", "2", "any", 1, 3.0),
    ]

    lstm, transformer = _take(b"L", "lstm-folk", "1"), _take(b"T", "transformer-folk", "1")
    for rater, choice in (("ada", "a"), ("bo", "a"), ("cy", "b"), ("di", "tie"), ("ed", "skip")):
        store.add_pair_vote(_vote(choice, rater=rater, a=lstm, b=transformer))
    store.add_pair_vote(_vote("a", rater="fay", a=transformer, b=lstm))  # transformer shown first, and wins
    store.add_pair_vote(_vote("a", rater="ada", a=lstm, b=_take(b"L2")))  # same version on both sides: no win rate
    [win] = store.win_rates()
    assert (win.first, win.second) == (("lstm-folk", "1"), ("transformer-folk", "1"))
    assert (win.first_wins, win.second_wins, win.ties, win.votes) == (2, 2, 1, 5)
    assert win.first_rate == pytest.approx(0.5)
    counts = store.counts()
    assert (counts.pair_votes, counts.skipped, counts.raters) == (7, 1, 6)


def test_concurrent_writers_lose_nothing(open_store) -> None:
    store = open_store()
    errors: list[BaseException] = []

    def rate_many(offset: int) -> None:
        try:
            for i in range(25):
                store.add(_rating(seed=offset + i))
                store.add_pair_vote(_vote(rater=f"r{offset}", b=_take(f"take-{i}".encode())))  # shared pieces
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=rate_many, args=(k * 100,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert store.count() == 100
    assert len({r.seed for r in store.recent(limit=200)}) == 100
    assert store.counts().pair_votes == 100 and store.counts().pieces == 3 + 25


def test_unreachable_database_is_one_line_without_the_password() -> None:
    with pytest.raises(
        StoreError, match=r"Cannot open the feedback database at postgresql\+psycopg://u:\*\*\*@"
    ) as err:
        FeedbackStore("postgresql+psycopg://u:hunter2@127.0.0.1:9/none?connect_timeout=2")
    assert "hunter2" not in str(err.value)


def test_rating_for_a_take_carries_tags_and_rater(open_store) -> None:
    from types import SimpleNamespace

    from musegen_core.formats.midi import midi_to_piece
    from musegen_core.music import Note, Part, Piece, TimeSignature
    from musegen_core.studio import Take, rating_for

    def piece(pitches: list[int]) -> Piece:
        notes = tuple(Note(p, i * 0.5, 0.5) for i, p in enumerate(pitches))
        return Piece((Part("Melody", notes),), 100, TimeSignature(4, 4))

    continuation = SimpleNamespace(prime=piece([60, 62, 64]), generated=piece([65, 67]))
    model = SimpleNamespace(name="lstm-folk", version="2")
    take = Take(1, continuation, model, 5, {"bars": 2, "style": "irish"}, "tune.mid")  # type: ignore[arg-type]
    rating = rating_for(take, 4, "  ok  ", tags=["catchy"], rater="ada")
    assert (rating.comment, rating.tags, rating.rater, rating.model_version) == ("ok", ("catchy",), "ada", "2")
    assert rating_for(take, 3).rater is None
    store = open_store()
    store.add(rating)
    [stored] = store.recent()
    assert midi_to_piece(stored.generated_midi).note_count == 2 and stored.style == "irish"
