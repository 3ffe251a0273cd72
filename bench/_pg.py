"""A throwaway PostgreSQL server for benches: `initdb` + `pg_ctl` from Debian's `postgresql` package
(/usr/lib/postgresql/<version>/bin) in a fresh folder under /tmp, on a free loopback port, trust authentication.

The same approach as the `postgres_server` fixture in tests/conftest.py, with one difference: durability settings
are the server's defaults (`fsync`, `synchronous_commit`, `full_page_writes` on) unless `durable=False`, because a
bench of lost writes must not run on a server configured to lose them. Under root the server runs as the
`postgres` user (else `nobody`): PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SUPERUSER = "musegen"


class NoServer(RuntimeError):
    """The PostgreSQL server binaries, psycopg or an unprivileged user to run the server as are missing."""


@dataclass
class Server:
    host: str
    port: int
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def new_database(self, prefix: str = "musegen_bench") -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{next(self._numbers)}"
        with psycopg.connect(host=self.host, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{name}"


def bindir() -> Path | None:
    """The newest installed server's bin folder (Debian keeps initdb/pg_ctl off PATH)."""
    candidates = [Path(p) for p in glob.glob(PG_BIN_GLOB)]
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl")).parent)  # type: ignore[arg-type]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parent.name.split(".") if part.isdigit())

    for folder in sorted(candidates, key=version, reverse=True):
        if all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _as_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that drops root to an unprivileged user, and that user (nothing when not root)."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            owner = pwd.getpwnam(name)
            if shutil.which("setpriv"):
                return ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups"], owner
            if shutil.which("runuser"):
                return ["runuser", "-u", owner.pw_name, "--"], owner
            raise NoServer("running as root without setpriv or runuser to start PostgreSQL as an unprivileged user")
    raise NoServer("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server(durable: bool = True) -> Iterator[Server]:
    """Start a server for the `with` block, then stop it and delete its files. Raises `NoServer` when it cannot."""
    tools = bindir()
    if tools is None:
        raise NoServer(f"PostgreSQL server binaries (initdb, pg_ctl) not found in {PG_BIN_GLOB}")
    try:
        import psycopg  # noqa: F401
    except ImportError as error:
        raise NoServer("psycopg (requirements.txt) is not installed") from error
    as_user, owner = _as_user()
    base = Path(tempfile.mkdtemp(prefix="musegen-pg-bench-"))
    data = base / "data"
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *command], cwd=base, env=env, capture_output=True, text=True, timeout=120,
                              check=False)  # fmt: skip

    started = False
    try:
        init = run(str(tools / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                   "--no-locale", *([] if durable else ["--no-sync"]))  # fmt: skip
        if init.returncode != 0:
            raise NoServer(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        speed = "" if durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        for _attempt in range(3):  # another process may take the free port between probing and binding it
            port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} "
                       f"-c max_connections=300{speed}")  # fmt: skip
            start = run(str(tools / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-o", options,
                        "-w", "-t", "60", "start")  # fmt: skip
            if start.returncode == 0:
                started = True
                break
        if not started:
            log = (base / "server.log").read_text(errors="replace") if (base / "server.log").exists() else ""
            raise NoServer(f"PostgreSQL did not start:\n{start.stdout}\n{start.stderr}\n{log[-2000:]}")
        yield Server("127.0.0.1", port)
    finally:
        if started:
            run(str(tools / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
