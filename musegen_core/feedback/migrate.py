"""Engines for the feedback database, and bringing a database up to the newest schema (Alembic, programmatically).

`upgrade(engine)` is what `FeedbackStore` runs on open. It takes one transaction for the whole upgrade (on SQLite
`BEGIN IMMEDIATE`, on PostgreSQL a transaction-scoped advisory lock), so two processes opening the same old
database at once migrate it once. A database made before migrations existed (a `ratings` table, no
`alembic_version`) is first stamped as revision 0001, the schema it has; an empty database starts from nothing.

SQLite connections run with WAL, `synchronous=FULL` (a commit is on disk when it returns: WAL with NORMAL may lose
the latest commits on power loss), a busy timeout and foreign keys on; SQLAlchemy, not the sqlite3 module, begins
transactions (so DDL is transactional and a writer can take the write lock up front, see `WRITE`).

A new schema change is a new file in `migrations/versions/` whose `down_revision` is the current head; start one
from the template with
    python -c 'from alembic import command; from alembic.config import Config; c = Config();
               c.set_main_option("script_location", "musegen_core/feedback/migrations");
               command.revision(c, "what changes", rev_id="0003")'
and fill in `upgrade()`/`downgrade()` by hand (batch mode for ALTERs; data moves in Python, as in 0002), keep
`schema.py` in step (a test compares the two on SQLite and PostgreSQL), and test the upgrade from the previous
revision with rows in it.
"""

from __future__ import annotations

import sqlite3
import threading
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from musegen_core.errors import StoreError

SQLITE_BUSY_TIMEOUT_MS = 5000
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_REVISION = "0001"
PG_MIGRATION_LOCK = 7_203_114_917  # any fixed number: pg_advisory_xact_lock key for "migrating the feedback schema"

# Execution option for a connection that is about to write: on SQLite its transactions start with BEGIN IMMEDIATE,
# taking the write lock at once (waiting up to the busy timeout) instead of failing on a lock upgrade later.
WRITE = {"musegen_write": True}
_ALEMBIC = threading.Lock()  # alembic.op / alembic.context are process-wide proxies: one run at a time


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets its parent folder created and the pragmas above on every connection."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # the sqlite3 module must not BEGIN on its own: `_sqlite_begin` does
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # first: switching to WAL may wait for a lock
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # WAL + NORMAL may lose the last commits on power loss; FULL may not
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_busy(error: DBAPIError) -> bool:
    """Whether a driver error is SQLite's SQLITE_BUSY ("database is locked": the lock was not had within the busy
    timeout). A transaction that fails with it has written nothing, so it can be run again."""
    code = getattr(error.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_BUSY  # extended codes (BUSY_SNAPSHOT, ...) too


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("musegen_write") else "BEGIN")


@cache
def head_revision() -> str:
    """The newest revision in `migrations/versions`."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head() or ""


@cache
def known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions())


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at (None: not under migrations, e.g. empty or made by the old code)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the database to `revision` (default: the newest), stamping a pre-migrations database first; returns
    the revision it is at afterwards. Cheap when there is nothing to do (one read, no lock)."""
    with engine.connect() as conn:
        now = current_revision(conn)
        conn.rollback()
    if revision == "head" and now == head_revision():
        return now
    if now is not None and now not in known_revisions():
        raise StoreError(
            f"The feedback database is at schema revision {now}, which this MuseGen does not know (its newest is "
            f"{head_revision()}): it was written by a newer MuseGen. Update MuseGen to open it."
        )
    return _run("upgrade", engine, revision)


def downgrade(engine: Engine, revision: str) -> str:
    """Take the database back to `revision` (for tests and for undoing a bad upgrade by hand)."""
    return _run("downgrade", engine, revision)


def _run(direction: str, engine: Engine, revision: str) -> str:
    from alembic import command
    from alembic.config import Config

    with _ALEMBIC, engine.connect() as conn:
        conn.execution_options(**WRITE)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" not in tables and "ratings" in tables:
                command.stamp(config, FIRST_REVISION)  # made by the code before migrations: that is schema 0001
            getattr(command, direction)(config, revision)
            return current_revision(conn) or ""
