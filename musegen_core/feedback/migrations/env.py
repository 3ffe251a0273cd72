"""Alembic environment of the feedback database.

`musegen_core.feedback.migrate.upgrade` hands over an open connection (in `config.attributes["connection"]`) that is
already inside the one transaction the whole upgrade runs in. Without one (a developer running the `alembic`
command with `-c` pointing at a config whose script_location is this folder), it connects to `sqlalchemy.url`,
else to the store's default URL (`MUSEGEN_DB_URL`, else the SQLite file in the data directory).
"""

from __future__ import annotations

from alembic import context

from musegen_core.feedback.schema import metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    # render_as_batch: ALTERs that SQLite cannot do in place become "copy to a new table and rename".
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("The feedback migrations run online only (they migrate data, not just the schema).")

given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    from musegen_core.feedback.migrate import make_engine
    from musegen_core.feedback.store import default_db_url

    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or default_db_url())
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()
