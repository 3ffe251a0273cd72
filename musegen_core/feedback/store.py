"""The feedback store: star ratings of takes and A/B pair votes, kept in a real database through SQLAlchemy.

SQLite file by default (WAL journal, `synchronous=FULL`, busy timeout, foreign keys on; a write that meets "database
is locked" is run again, see `FeedbackStore._write`); PostgreSQL or any SQLAlchemy URL via `MUSEGEN_DB_URL` (e.g.
`postgresql+psycopg://user:secret@host/musegen`). Opening a store upgrades the database to the newest schema with
Alembic (`musegen_core.feedback.migrate`), so a database from an older version keeps all its rows. Tables:
`musegen_core.feedback.schema`.

What goes in and comes out are the frozen dataclasses below, never ORM rows:

- `Rating`: 1–5 stars on one take, an optional comment and tags, everything needed to study or reproduce the take
  (prime and take as MIDI bytes, model name and version, every control value, the seed) and, optionally, the rater.
- `PairVote`: one rater's judgement of two takes of the same prime (`a`, `b`, `tie` or `skip`) plus tags.

MIDI is stored once per distinct content (`pieces`, keyed by sha256), however many ratings and votes use it.

**Raters.** A rater is a string: a name the person chose (1–100 characters), or an anonymous per-browser id from
`new_anonymous_rater_id()` (`anon-` + 32 hex digits; names of that shape are taken as anonymous ids). The store
creates the rater on first use. Ratings may have no rater (those stored before raters existed); pair votes need one.

**Tags** come from the fixed vocabulary `TAGS` (name → what it means); anything else is refused with a
`StoreError` naming the tags allowed. Tags are kept once each, in the vocabulary's order.

**Duplicates: the latest judgement replaces the earlier one.**
- A pair vote by the same rater on the same pair — same prime, same two takes (by MIDI content), in either order —
  replaces that rater's earlier vote on it: choice, tags, order of the takes, their model details and the time are
  the new vote's; the vote keeps its id (`add_pair_vote` returns it).
- Likewise a rating by the same rater of the same take (same prime and take MIDI) replaces that rater's earlier
  rating of it. Ratings without a rater are never merged.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import random
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from musegen_core.errors import StoreError
from musegen_core.feedback import migrate
from musegen_core.feedback.schema import pair_vote_tags, pair_votes, pieces, raters, rating_tags, ratings

DB_URL_ENV = "MUSEGEN_DB_URL"
DATA_DIR_ENV = "MUSEGEN_DATA_DIR"
SQLITE_BUSY_TIMEOUT_MS = migrate.SQLITE_BUSY_TIMEOUT_MS
BUSY_RETRIES = 5  # SQLite writes run again after "database is locked" (≤ 6 × 5 s busy timeout; see `_write`)
BUSY_PAUSE_S = 0.05  # at most this long, at random, before each of them

# The tag vocabulary, in display order. Adding a tag is a code change (no migration: tags are stored as text).
TAGS: dict[str, str] = {
    "catchy": "memorable; you would hum it",
    "boring": "nothing happens, or it wanders without aim",
    "off-style": "does not sound like the style asked for",
    "wrong notes": "notes that clash with the key or the prime",
    "too busy": "too many notes",
    "too sparse": "too few notes or long silences",
    "repetitive": "loops the same figure too often",
    "odd rhythm": "the rhythm fights the meter",
    "good continuation": "follows on naturally from the prime",
    "ignores the prime": "sounds unrelated to the melody it continues",
}
CHOICES = ("a", "b", "tie", "skip")
Choice = Literal["a", "b", "tie", "skip"]
ANONYMOUS_PREFIX = "anon-"
_ANONYMOUS_ID = re.compile(r"anon-[0-9a-f]{32}")
MAX_RATER_NAME = 100
UNKNOWN_STYLE = "any"  # the style statistics give ratings whose controls name no style


def default_data_dir() -> Path:
    """`$MUSEGEN_DATA_DIR`, else `$XDG_DATA_HOME/musegen`, else `~/.local/share/musegen`."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "musegen"


def default_db_url() -> str:
    """`$MUSEGEN_DB_URL`, else a SQLite file in the data directory."""
    return os.environ.get(DB_URL_ENV) or f"sqlite:///{default_data_dir() / 'musegen.sqlite3'}"


def new_anonymous_rater_id() -> str:
    """A fresh anonymous rater id for one browser (keep it in the browser and send it with every judgement)."""
    return ANONYMOUS_PREFIX + secrets.token_hex(16)


def is_anonymous_rater(rater: str) -> bool:
    return _ANONYMOUS_ID.fullmatch(rater) is not None


def check_rater(rater: str) -> str:
    """The rater name as stored (surrounding space removed); a `StoreError` for an empty, overlong or odd one."""
    name = " ".join(rater.split()) if isinstance(rater, str) else ""
    if not name:
        raise StoreError("A rater name must not be empty.")
    if len(name) > MAX_RATER_NAME:
        raise StoreError(f"A rater name must be at most {MAX_RATER_NAME} characters (received {len(name)}).")
    if any(not ch.isprintable() for ch in name):
        raise StoreError("A rater name must be printable text.")
    return name


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags in vocabulary order, each once; a `StoreError` naming any tag outside `TAGS`."""
    if isinstance(tags, str):
        tags = (tags,)
    given = {" ".join(str(tag).lower().split()) for tag in tags}
    unknown = sorted(given - TAGS.keys())
    if unknown:
        raise StoreError(f"Unknown tag(s): {', '.join(unknown)}. Tags allowed: {', '.join(TAGS)}.")
    return tuple(tag for tag in TAGS if tag in given)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Rating:
    """A star rating as the app gives it and gets it back (`id`/`created_at` are set by the store)."""

    stars: int  # 1–5
    model_name: str
    model_version: str
    seed: int
    controls: dict[str, Any]
    prime_midi: bytes
    generated_midi: bytes  # the take
    prime_name: str = ""
    comment: str = ""
    tags: tuple[str, ...] = ()  # from TAGS, normalised to vocabulary order
    rater: str | None = None  # a chosen name or an anonymous id; None: unattributed
    id: int | None = None
    created_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        try:
            stars = operator.index(self.stars) if not isinstance(self.stars, bool) else 0
        except TypeError:
            stars = 0
        if not 1 <= stars <= 5:
            raise StoreError(f"A rating must be 1 to 5 stars (received {self.stars}).")
        object.__setattr__(self, "stars", stars)
        object.__setattr__(self, "tags", check_tags(self.tags))
        if self.rater is not None:
            object.__setattr__(self, "rater", check_rater(self.rater))

    @property
    def style(self) -> str | None:
        """The style the take was asked for (None: any style)."""
        return _style_of(self.controls)

    @property
    def prime_sha256(self) -> str:
        return sha256_hex(self.prime_midi)

    @property
    def take_sha256(self) -> str:
        return sha256_hex(self.generated_midi)


@dataclass(frozen=True)
class PairTake:
    """One side of a pair: the take's MIDI and what made it."""

    midi: bytes
    model_name: str
    model_version: str
    seed: int
    controls: dict[str, Any]

    @property
    def sha256(self) -> str:
        return sha256_hex(self.midi)

    @property
    def model(self) -> tuple[str, str]:
        return (self.model_name, self.model_version)


@dataclass(frozen=True)
class PairVote:
    """A rater's A/B judgement of two takes of the same prime."""

    prime_midi: bytes
    a: PairTake
    b: PairTake
    choice: Choice  # "a" better, "b" better, "tie", or "skip" (could not or would not judge)
    rater: str
    prime_name: str = ""
    tags: tuple[str, ...] = ()
    id: int | None = None
    created_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.choice not in CHOICES:
            raise StoreError(f"A pair vote must be one of {', '.join(CHOICES)} (received {self.choice!r}).")
        object.__setattr__(self, "tags", check_tags(self.tags))
        object.__setattr__(self, "rater", check_rater(self.rater))

    @property
    def pair_key(self) -> str:
        """Same prime and the same two takes in either order give the same key."""
        return pair_key(sha256_hex(self.prime_midi), self.a.sha256, self.b.sha256)


def pair_key(prime_sha256: str, a_sha256: str, b_sha256: str) -> str:
    first, second = sorted((a_sha256, b_sha256))
    return sha256_hex(f"{prime_sha256}\n{first}\n{second}".encode())


@dataclass(frozen=True)
class Rater:
    name: str
    anonymous: bool
    created_at: datetime
    ratings: int
    pair_votes: int


@dataclass(frozen=True)
class Counts:
    ratings: int
    pair_votes: int  # skips included
    skipped: int  # pair votes with choice "skip"
    pieces: int
    raters: int


@dataclass(frozen=True)
class RatingStat:
    """Ratings of one model version for one style on one day (UTC)."""

    day: date
    model_name: str
    model_version: str
    style: str  # UNKNOWN_STYLE ("any") when the controls named none
    count: int
    mean_stars: float


@dataclass(frozen=True)
class WinRate:
    """Pair votes between two different model versions (`first` < `second` by name, then version); skips left out."""

    first: tuple[str, str]  # (model name, version)
    second: tuple[str, str]
    first_wins: int
    second_wins: int
    ties: int

    @property
    def votes(self) -> int:
        return self.first_wins + self.second_wins + self.ties

    @property
    def first_rate(self) -> float:
        """Share of votes `first` won, a tie counting half."""
        return (self.first_wins + 0.5 * self.ties) / self.votes if self.votes else 0.5


T = TypeVar("T")


class FeedbackStore:
    """Ratings and pair votes in a database. Thread-safe: one engine per store, one short transaction per call."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_db_url()
        try:
            self._engine = migrate.make_engine(self.url)
            self.revision = migrate.upgrade(self._engine)
        except SQLAlchemyError as exc:
            raise StoreError(
                f"Cannot open the feedback database at {_safe_url(self.url)}: {exc.__class__.__name__}."
            ) from exc

    # -- writing --------------------------------------------------------------------------------------------------

    def add(self, rating: Rating) -> int:
        """Store a rating; returns its id. The write is committed before this returns. Same as `add_rating`."""
        return self.add_rating(rating)

    def add_rating(self, rating: Rating) -> int:
        """Store a rating (replacing the same rater's earlier rating of the same take); returns its id."""

        def write(conn: Connection) -> int:
            prime = _put_piece(conn, rating.prime_midi)
            take = _put_piece(conn, rating.generated_midi)
            rater_id = _rater_id(conn, rating.rater) if rating.rater is not None else None
            values = {
                "created_at": datetime.now(UTC),
                "stars": rating.stars,
                "comment": rating.comment,
                "model_name": rating.model_name,
                "model_version": rating.model_version,
                "seed": rating.seed,
                "controls_json": _dump(rating.controls),
                "style": rating.style,
                "prime_name": rating.prime_name,
                "prime_sha256": prime,
                "take_sha256": take,
                "rater_id": rater_id,
            }
            earlier = None
            if rater_id is not None:
                earlier = conn.scalar(
                    select(ratings.c.id).where(
                        ratings.c.rater_id == rater_id, ratings.c.prime_sha256 == prime, ratings.c.take_sha256 == take
                    )
                )
            return _insert_or_replace(conn, ratings, rating_tags, "rating_id", earlier, values, rating.tags)

        return self._write("The rating could not be saved", write)

    def add_pair_vote(self, vote: PairVote) -> int:
        """Store a pair vote (replacing the rater's earlier vote on the same pair); returns the vote's id."""

        def write(conn: Connection) -> int:
            prime = _put_piece(conn, vote.prime_midi)
            a, b = _put_piece(conn, vote.a.midi), _put_piece(conn, vote.b.midi)
            rater_id = _rater_id(conn, vote.rater)
            values: dict[str, Any] = {
                "created_at": datetime.now(UTC),
                "rater_id": rater_id,
                "pair_key": pair_key(prime, a, b),
                "prime_name": vote.prime_name,
                "prime_sha256": prime,
                "choice": vote.choice,
            }
            for side, take, digest in (("a", vote.a, a), ("b", vote.b, b)):
                values.update({
                    f"{side}_sha256": digest,
                    f"{side}_model_name": take.model_name,
                    f"{side}_model_version": take.model_version,
                    f"{side}_seed": take.seed,
                    f"{side}_controls_json": _dump(take.controls),
                })  # fmt: skip
            earlier = conn.scalar(
                select(pair_votes.c.id).where(
                    pair_votes.c.rater_id == rater_id, pair_votes.c.pair_key == values["pair_key"]
                )
            )
            return _insert_or_replace(conn, pair_votes, pair_vote_tags, "vote_id", earlier, values, vote.tags)

        return self._write("The vote could not be saved", write)

    def add_rater(self, rater: str) -> Rater:
        """Register a rater now (the store also does on a rater's first judgement); returns it."""
        name = check_rater(rater)
        self._write("The rater could not be saved", lambda conn: _rater_id(conn, name))
        return next(r for r in self.raters() if r.name == name)

    def delete_rating(self, rating_id: int) -> bool:
        """Remove one rating (and its tags); False if there was none. Pieces stay (others may use them)."""
        return self._write(
            "The rating could not be deleted",
            lambda conn: conn.execute(delete(ratings).where(ratings.c.id == rating_id)).rowcount > 0,
        )

    def delete_pair_vote(self, vote_id: int) -> bool:
        """Remove one pair vote (and its tags); False if there was none."""
        return self._write(
            "The vote could not be deleted",
            lambda conn: conn.execute(delete(pair_votes).where(pair_votes.c.id == vote_id)).rowcount > 0,
        )

    # -- reading --------------------------------------------------------------------------------------------------

    def recent(self, limit: int = 50) -> list[Rating]:
        """The newest ratings first (a replaced rating counts as new when it was replaced)."""
        return self.ratings(limit=limit, newest_first=True)

    def ratings(self, limit: int | None = None, newest_first: bool = False) -> list[Rating]:
        """Ratings by id, oldest first, at most `limit`; or, with `newest_first`, by time given, newest first."""
        order = (ratings.c.created_at.desc(), ratings.c.id.desc()) if newest_first else (ratings.c.id,)
        query = _ratings_query().order_by(*order)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
            tags = _tags_of(conn, rating_tags, rating_tags.c.rating_id, [row.id for row in rows])
            midi = _pieces_of(conn, {d for row in rows for d in (row.prime_sha256, row.take_sha256)})
        return [_to_rating(row, tags.get(row.id, ()), midi) for row in rows]

    def recent_pair_votes(self, limit: int = 50) -> list[PairVote]:
        """The newest pair votes first (a replaced vote counts as new when it was replaced)."""
        return self.pair_votes(limit=limit, newest_first=True)

    def pair_votes(self, limit: int | None = None, newest_first: bool = False) -> list[PairVote]:
        """Pair votes (skips included) by id, oldest first, at most `limit`; or, with `newest_first`, by time given,
        newest first."""
        order = (pair_votes.c.created_at.desc(), pair_votes.c.id.desc()) if newest_first else (pair_votes.c.id,)
        query = _votes_query().order_by(*order)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
            tags = _tags_of(conn, pair_vote_tags, pair_vote_tags.c.vote_id, [row.id for row in rows])
            midi = _pieces_of(conn, {d for row in rows for d in (row.prime_sha256, row.a_sha256, row.b_sha256)})
        return [_to_vote(row, tags.get(row.id, ()), midi) for row in rows]

    def piece(self, sha256: str) -> bytes | None:
        """The MIDI bytes stored under a digest."""
        with self._read() as conn:
            data = conn.scalar(select(pieces.c.midi).where(pieces.c.sha256 == sha256))
        return bytes(data) if data is not None else None

    def count(self) -> int:
        """How many ratings are stored."""
        with self._read() as conn:
            return conn.scalar(select(func.count()).select_from(ratings)) or 0

    def counts(self) -> Counts:
        with self._read() as conn:

            def n(table: Any, *where: Any) -> int:
                return conn.scalar(select(func.count()).select_from(table).where(*where)) or 0

            return Counts(
                ratings=n(ratings),
                pair_votes=n(pair_votes),
                skipped=n(pair_votes, pair_votes.c.choice == "skip"),
                pieces=n(pieces),
                raters=n(raters),
            )

    def raters(self) -> list[Rater]:
        """Every rater, oldest first, with how many ratings and pair votes each has."""
        with self._read() as conn:
            rows = conn.execute(select(raters).order_by(raters.c.id)).all()
            per = {}
            for table in (ratings, pair_votes):
                query = select(table.c.rater_id, func.count()).where(table.c.rater_id.is_not(None))
                per[table.name] = {rater: n for rater, n in conn.execute(query.group_by(table.c.rater_id))}
        return [
            Rater(
                row.name, row.anonymous, _utc(row.created_at), per["ratings"].get(row.id, 0),
                per["pair_votes"].get(row.id, 0),
            )
            for row in rows
        ]  # fmt: skip

    def rating_stats(self) -> list[RatingStat]:
        """Count and mean stars per (UTC day, model name, version, style), sorted by those keys."""
        query = select(ratings.c.created_at, ratings.c.model_name, ratings.c.model_version, ratings.c.style,
                       ratings.c.stars)  # fmt: skip
        groups: dict[tuple[date, str, str, str], list[int]] = defaultdict(list)
        with self._read() as conn:
            for row in conn.execute(query):
                day = _utc(row.created_at).date()
                groups[(day, row.model_name, row.model_version, row.style or UNKNOWN_STYLE)].append(row.stars)
        return [RatingStat(*key, len(stars), sum(stars) / len(stars)) for key, stars in sorted(groups.items())]

    def win_rates(self) -> list[WinRate]:
        """Decisive and tied votes between two different model versions, per unordered pair of versions."""
        v = pair_votes.c
        query = select(v.a_model_name, v.a_model_version, v.b_model_name, v.b_model_version, v.choice).where(
            v.choice != "skip"
        )
        tally: dict[tuple[tuple[str, str], tuple[str, str]], list[int]] = defaultdict(lambda: [0, 0, 0])
        with self._read() as conn:
            for a_name, a_version, b_name, b_version, choice in conn.execute(query):
                a, b = (a_name, a_version), (b_name, b_version)
                if a == b:
                    continue
                first, second = sorted((a, b))
                counts = tally[(first, second)]
                if choice == "tie":
                    counts[2] += 1
                else:
                    counts[0 if (a if choice == "a" else b) == first else 1] += 1
        return [WinRate(first, second, *counts) for (first, second), counts in sorted(tally.items())]

    def schema_revision(self) -> str:
        with self._read() as conn:
            return migrate.current_revision(conn) or ""

    def dispose(self) -> None:
        self._engine.dispose()

    # -- plumbing -------------------------------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"The feedback database could not be read: {exc.__class__.__name__}.") from exc

    def _write(self, failure: str, work: Callable[[Connection], T], attempts: int = 3) -> T:
        """Run `work` in one write transaction. A failed transaction was rolled back, so running it again never
        writes twice; that is done when a concurrent writer won a unique-key race (up to `attempts` runs in all),
        and on SQLite up to `BUSY_RETRIES` times, after a random pause of up to `BUSY_PAUSE_S`, when the write lock
        was not had within the busy timeout. SQLite's busy handler polls at growing intervals, 100 ms apart after the
        first 0.2 s, so under many writing processes a long waiter keeps losing the lock to newcomers, which poll
        every few ms: with 30 processes writing at once, 14 of 3000 ratings waited out the whole 5 s timeout and
        failed with "database is locked" (bench/durability.py). A fresh attempt polls quickly again; the pause keeps
        the retriers from arriving together."""
        races = busy = 0
        while True:
            try:
                with self._engine.connect() as conn:
                    conn.execution_options(**migrate.WRITE)
                    with conn.begin():
                        return work(conn)
            except IntegrityError as exc:
                races += 1
                if races < attempts:
                    continue
                error: SQLAlchemyError = exc
            except OperationalError as exc:
                if migrate.is_busy(exc) and busy < BUSY_RETRIES:
                    busy += 1
                    time.sleep(random.uniform(0, BUSY_PAUSE_S))
                    continue
                error = exc
            except SQLAlchemyError as exc:
                error = exc
            raise StoreError(f"{failure}: {error.__class__.__name__}. Please try again.") from error

    # For the dataset export (same package): plain rows, pieces fetched on demand.
    def _export_rows(self) -> tuple[list[Any], dict[int, tuple[str, ...]], list[Any], dict[int, tuple[str, ...]]]:
        with self._read() as conn:
            rating_rows = conn.execute(_ratings_query().order_by(ratings.c.id)).all()
            vote_rows = conn.execute(_votes_query().order_by(pair_votes.c.id)).all()
            r_tags = _tags_of(conn, rating_tags, rating_tags.c.rating_id, None)
            v_tags = _tags_of(conn, pair_vote_tags, pair_vote_tags.c.vote_id, None)
        return rating_rows, r_tags, vote_rows, v_tags


def _safe_url(url: str) -> str:
    """The URL without its password (error messages are shown to users and may be logged)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _dump(controls: Mapping[str, Any]) -> str:
    return json.dumps(controls, sort_keys=True)


def _style_of(controls: Mapping[str, Any]) -> str | None:
    style = controls.get("style") if isinstance(controls, Mapping) else None
    return style[:100] if isinstance(style, str) and style else None


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC), PostgreSQL aware ones: both become aware UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _insert_or_replace(
    conn: Connection, table: Any, tag_table: Any, owner: str, earlier: int | None, values: dict, tags: Sequence[str]
) -> int:
    """Insert a judgement, or overwrite the same rater's `earlier` one in place (it keeps its id) with its tags: the
    latest judgement replaces the earlier. Returns the row's id."""
    if earlier is None:
        row_id = conn.execute(insert(table).values(values).returning(table.c.id)).scalar_one()
    else:
        row_id = earlier
        conn.execute(update(table).where(table.c.id == row_id).values(values))
        conn.execute(delete(tag_table).where(tag_table.c[owner] == row_id))
    if tags:
        conn.execute(insert(tag_table), [{owner: row_id, "tag": tag} for tag in tags])
    return row_id


def _put_piece(conn: Connection, midi: bytes) -> str:
    """Store MIDI bytes once by content; returns the sha256. Same-piece races end in a retry (see `_write`)."""
    if not isinstance(midi, bytes | bytearray | memoryview):
        raise StoreError("A piece must be MIDI bytes.")
    data = bytes(midi)
    digest = sha256_hex(data)
    if conn.scalar(select(pieces.c.sha256).where(pieces.c.sha256 == digest)) is None:
        conn.execute(insert(pieces).values(sha256=digest, midi=data, size=len(data), created_at=datetime.now(UTC)))
    return digest


def _rater_id(conn: Connection, rater: str) -> int:
    name = check_rater(rater)
    found = conn.scalar(select(raters.c.id).where(raters.c.name == name))
    if found is not None:
        return found
    values = {"name": name, "anonymous": is_anonymous_rater(name), "created_at": datetime.now(UTC)}
    return conn.execute(insert(raters).values(values).returning(raters.c.id)).scalar_one()


def _ratings_query() -> Any:
    return select(ratings, raters.c.name.label("rater_name")).outerjoin(raters, ratings.c.rater_id == raters.c.id)


def _votes_query() -> Any:
    return select(pair_votes, raters.c.name.label("rater_name")).join(raters, pair_votes.c.rater_id == raters.c.id)


def _tags_of(conn: Connection, table: Any, key: Any, ids: list[int] | None) -> dict[int, tuple[str, ...]]:
    """Tags per record id in vocabulary order (`ids` None: all records); a tag since dropped from `TAGS` is left out."""
    if ids == []:
        return {}
    query = select(key, table.c.tag)
    if ids is not None:
        query = query.where(key.in_(ids))
    found: dict[int, set[str]] = defaultdict(set)
    for record_id, tag in conn.execute(query):
        found[record_id].add(tag)
    return {record_id: tuple(tag for tag in TAGS if tag in tags) for record_id, tags in found.items()}


def _pieces_of(conn: Connection, digests: set[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    ordered = sorted(digests)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        for digest, data in conn.execute(select(pieces.c.sha256, pieces.c.midi).where(pieces.c.sha256.in_(chunk))):
            found[digest] = bytes(data)
    return found


def _to_rating(row: Any, tags: tuple[str, ...], midi: Mapping[str, bytes]) -> Rating:
    return Rating(
        stars=row.stars,
        model_name=row.model_name,
        model_version=row.model_version,
        seed=row.seed,
        controls=json.loads(row.controls_json),
        prime_midi=midi[row.prime_sha256],
        generated_midi=midi[row.take_sha256],
        prime_name=row.prime_name,
        comment=row.comment,
        tags=tags,
        rater=row.rater_name,
        id=row.id,
        created_at=_utc(row.created_at),
    )


def _to_vote(row: Any, tags: tuple[str, ...], midi: Mapping[str, bytes]) -> PairVote:
    def take(side: str) -> PairTake:
        return PairTake(
            midi=midi[getattr(row, f"{side}_sha256")],
            model_name=getattr(row, f"{side}_model_name"),
            model_version=getattr(row, f"{side}_model_version"),
            seed=getattr(row, f"{side}_seed"),
            controls=json.loads(getattr(row, f"{side}_controls_json")),
        )

    return PairVote(
        prime_midi=midi[row.prime_sha256],
        a=take("a"),
        b=take("b"),
        choice=row.choice,
        rater=row.rater_name,
        prime_name=row.prime_name,
        tags=tags,
        id=row.id,
        created_at=_utc(row.created_at),
    )
