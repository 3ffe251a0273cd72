"""The feedback store: ratings of generated takes, kept in a real database through SQLAlchemy.

SQLite file by default (WAL journal, busy timeout, foreign keys on); any SQLAlchemy URL via `MUSEGEN_DB_URL`.
Each rating keeps everything needed to study or reproduce the take: the prime and the generated piece as MIDI
bytes, the model name and version, every control value and the seed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Integer, LargeBinary, String, Text, create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from musegen_core.errors import StoreError

DB_URL_ENV = "MUSEGEN_DB_URL"
DATA_DIR_ENV = "MUSEGEN_DATA_DIR"
SQLITE_BUSY_TIMEOUT_MS = 5000


def default_data_dir() -> Path:
    """`$MUSEGEN_DATA_DIR`, else `$XDG_DATA_HOME/musegen`, else `~/.local/share/musegen`."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "musegen"


def default_db_url() -> str:
    """`$MUSEGEN_DB_URL`, else a SQLite file in the data directory."""
    return os.environ.get(DB_URL_ENV) or f"sqlite:///{default_data_dir() / 'musegen.sqlite3'}"


class Base(DeclarativeBase):
    pass


class RatingRow(Base):
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


@dataclass(frozen=True)
class Rating:
    """A rating as the app gives it and gets it back (`id`/`created_at` are set by the store)."""

    stars: int  # 1–5
    model_name: str
    model_version: str
    seed: int
    controls: dict[str, Any]
    prime_midi: bytes
    generated_midi: bytes
    prime_name: str = ""
    comment: str = ""
    id: int | None = None
    created_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.stars <= 5:
            raise StoreError(f"A rating must be 1 to 5 stars (received {self.stars}).")


class FeedbackStore:
    """Ratings in a database. Thread-safe: one engine per store, one short session per call."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_db_url()
        self._engine = _make_engine(self.url)
        try:
            Base.metadata.create_all(self._engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"Cannot open the feedback database at {self.url}: {exc.__class__.__name__}.") from exc

    def add(self, rating: Rating) -> int:
        """Store a rating; returns its id. The write is committed before this returns."""
        row = RatingRow(
            created_at=datetime.now(UTC),
            stars=rating.stars,
            comment=rating.comment,
            model_name=rating.model_name,
            model_version=rating.model_version,
            seed=rating.seed,
            controls_json=json.dumps(rating.controls, sort_keys=True),
            prime_name=rating.prime_name,
            prime_midi=rating.prime_midi,
            generated_midi=rating.generated_midi,
        )
        try:
            with Session(self._engine) as session, session.begin():
                session.add(row)
                session.flush()
                return row.id
        except SQLAlchemyError as exc:
            raise StoreError(f"The rating could not be saved: {exc.__class__.__name__}. Please try again.") from exc

    def recent(self, limit: int = 50) -> list[Rating]:
        """The newest ratings first."""
        query = select(RatingRow).order_by(RatingRow.id.desc()).limit(limit)
        with Session(self._engine) as session:
            return [_to_rating(row) for row in session.scalars(query)]

    def count(self) -> int:
        with Session(self._engine) as session:
            return session.scalar(select(func.count()).select_from(RatingRow)) or 0

    def dispose(self) -> None:
        self._engine.dispose()


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _to_rating(row: RatingRow) -> Rating:
    return Rating(
        id=row.id,
        created_at=row.created_at,
        stars=row.stars,
        comment=row.comment,
        model_name=row.model_name,
        model_version=row.model_version,
        seed=row.seed,
        controls=json.loads(row.controls_json),
        prime_name=row.prime_name,
        prime_midi=row.prime_midi,
        generated_midi=row.generated_midi,
    )
