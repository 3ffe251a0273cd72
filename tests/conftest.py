"""Shared fixtures: every test's own user-models folder, and the feedback database on SQLite and on a real,
throwaway PostgreSQL server.

A developer's fine-tuned versions and promotions (`~/.local/share/musegen/models`) must never leak into a test, so
`MUSEGEN_USER_MODELS_DIR` points at an empty folder per test (tests that need versions make them there).

`db_url` is parametrized over both backends, so every test that takes it runs twice. The PostgreSQL server is
started once per test session, only when a test asks for it: `initdb` + `pg_ctl` from Debian's `postgresql`
package (/usr/lib/postgresql/<version>/bin; `scripts/setup test` installs it) in a fresh folder under /tmp, on a free
loopback port, trust authentication, durability off (fsync, synchronous_commit) for speed. The server refuses to
run as root, so under root it runs as the `postgres` user the package creates (else `nobody`). Each test gets a
database of its own. Where the binaries are missing those tests are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_SUPERUSER = "musegen"


@contextlib.contextmanager
def bench_module(name: str) -> Iterator[ModuleType]:
    """The script bench/NAME.py imported as a module (bench/ is not a package), registered in `sys.modules` while in
    use: its dataclasses look their module up there."""
    spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCH_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(autouse=True)
def _private_user_models(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSEGEN_USER_MODELS_DIR", str(tmp_path_factory.mktemp("user-models")))


def _pg_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (Debian keeps initdb/pg_ctl off PATH)."""
    candidates = [Path(p) for p in glob.glob(PG_BIN_GLOB)]
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl")).parent)  # type: ignore[arg-type]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parent.name.split(".") if part.isdigit())

    for bindir in sorted(candidates, key=version, reverse=True):
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    host: str
    port: int
    _numbers: Iterator[int]

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"musegen_test_{next(self._numbers)}"
        with psycopg.connect(
            host=self.host, port=self.port, user=PG_SUPERUSER, dbname="postgres", autocommit=True
        ) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{PG_SUPERUSER}@{self.host}:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found in {PG_BIN_GLOB}: install Debian's postgresql "
            "(scripts/setup test does) to run the store tests against PostgreSQL"
        )
    pytest.importorskip("psycopg", reason="psycopg (requirements.txt) is not installed")

    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # postgres will not run as root
        for name in ("postgres", "nobody"):
            try:
                owner = pwd.getpwnam(name)
                break
            except KeyError:
                continue
        if owner is None:
            pytest.skip("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as")
        if shutil.which("setpriv"):
            as_user = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups"]
        elif shutil.which("runuser"):
            as_user = ["runuser", "-u", owner.pw_name, "--"]
        else:
            pytest.skip("running as root without setpriv or runuser to start PostgreSQL as an unprivileged user")

    base = Path(tempfile.mkdtemp(prefix="musegen-pg-"))  # /tmp: pytest's own tmp folders are root-only (0700)
    data = base / "data"
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*as_user, *command], cwd=base, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    started = False
    try:
        init = run(str(bindir / "initdb"), "-D", str(data), "-U", PG_SUPERUSER, "--auth=trust", "-E", "UTF8",
                   "--no-locale", "--no-sync")  # fmt: skip
        if init.returncode != 0:
            pytest.fail(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        for _attempt in range(3):  # another process may take the free port between probing and binding it
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            start = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-o", options,
                        "-w", "-t", "60", "start")  # fmt: skip
            if start.returncode == 0:
                started = True
                break
        if not started:
            log = (base / "server.log").read_text(errors="replace") if (base / "server.log").exists() else ""
            pytest.fail(f"PostgreSQL did not start:\n{start.stdout}\n{start.stderr}\n{log[-2000:]}")
        yield PostgresServer("127.0.0.1", port, itertools.count(1))
    finally:
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty feedback database: a SQLite file, or a database on the throwaway PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def open_store(db_url: str) -> Iterator[Callable[..., object]]:
    """Opens `FeedbackStore`s (on `db_url` unless given another URL) and disposes of them after the test."""
    from musegen_core.feedback import FeedbackStore

    stores: list[FeedbackStore] = []

    def make(url: str | None = None) -> FeedbackStore:
        store = FeedbackStore(url or db_url)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.dispose()
