"""Ratings go into a real SQLite file and are still there for a new engine and a new process."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from musegen_core.errors import StoreError
from musegen_core.feedback import FeedbackStore, Rating


def _rating(stars: int = 4, **overrides: object) -> Rating:
    fields: dict = {
        "stars": stars,
        "model_name": "lstm-folk",
        "model_version": "1",
        "seed": 7,
        "controls": {"bars": 8, "temperature": 0.9, "top_p": 1.0, "part_index": 0},
        "prime_midi": b"MThd-prime",
        "generated_midi": b"MThd-take",
        "prime_name": "tune.mid",
        "comment": "nice turn in bar 3",
    }
    fields.update(overrides)
    return Rating(**fields)


def test_rating_round_trip_keeps_every_field(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.sqlite3'}")
    rating_id = store.add(_rating())
    [stored] = store.recent()
    assert stored.id == rating_id
    assert stored.created_at is not None
    assert stored == _rating(id=rating_id)


def test_ratings_survive_a_new_engine_and_a_new_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fb.sqlite3'}"
    first = FeedbackStore(url)
    first.add(_rating(stars=2))
    first.add(_rating(stars=5, comment="best"))
    first.dispose()

    assert [r.stars for r in FeedbackStore(url).recent()] == [5, 2]
    script = (
        "from musegen_core.feedback import FeedbackStore; import sys;"
        "s = FeedbackStore(sys.argv[1]); print(s.count(), s.recent()[0].comment)"
    )
    out = subprocess.run([sys.executable, "-c", script, url], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "best"]


def test_default_location_is_a_sqlite_file_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUSEGEN_DB_URL", raising=False)
    monkeypatch.setenv("MUSEGEN_DATA_DIR", str(tmp_path / "data"))
    FeedbackStore().add(_rating())
    db = tmp_path / "data" / "musegen.sqlite3"
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT stars, model_name FROM ratings").fetchall() == [(4, "lstm-folk")]
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize("stars", [0, 6, -1])
def test_out_of_range_stars_are_refused(stars: int) -> None:
    with pytest.raises(StoreError, match="1 to 5"):
        _rating(stars=stars)


def test_database_enforces_the_star_range_too(tmp_path: Path) -> None:
    db = tmp_path / "fb.sqlite3"
    FeedbackStore(f"sqlite:///{db}")
    with sqlite3.connect(db) as raw, pytest.raises(sqlite3.IntegrityError):
        raw.execute(
            "INSERT INTO ratings (created_at, stars, comment, model_name, model_version, seed, controls_json,"
            " prime_name, prime_midi, generated_midi) VALUES ('2026-01-01', 9, '', 'm', '1', 0, '{}', '', x'', x'')"
        )


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.sqlite3'}")

    def rate_many(offset: int) -> None:
        for i in range(25):
            store.add(_rating(seed=offset + i))

    threads = [threading.Thread(target=rate_many, args=(k * 100,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count() == 100
    assert len({r.seed for r in store.recent(limit=200)}) == 100
