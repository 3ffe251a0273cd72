"""Who may do what: the admin secret, the per-session admin unlock, and the admin actions behind it.

A class shares one server, so everything that changes what others get or that hands out everyone's data —
fine-tune, promote, rollback, export, delete — is an **admin action**. Everyone else can only generate and rate.

**The secret lives on the server, hashed.** `MUSEGEN_ADMIN_SECRET_HASH` holds a salted scrypt hash of it, in the
form `scrypt:N:r:p:SALT:KEY` (SALT and KEY base64url without padding; no `$` or quotes, so it pastes into a shell
or a systemd unit as is). Make one with

    musegen admin hash-secret             # or: python -m musegen_core.admin hash-secret
    # asks for the secret twice (not echoed) and prints  MUSEGEN_ADMIN_SECRET_HASH=scrypt:16384:8:1:...

and start the app with that variable set. Without it (or with a value that is not such a hash) admin actions are
off entirely, and the app says so. The secret itself is never stored, logged or shown: a candidate is hashed with
the configured salt and parameters and the result compared with `hmac.compare_digest` (constant time).

**Sessions.** An `AdminSession` belongs to one browser session (the app keeps one in `st.session_state`). It is
unlocked only by `AdminSession.unlock(secret)` with the right secret; it locks again by `lock()`, after
`SESSION_HOURS`, and whenever the configured hash changes. After `MAX_FAILURES` wrong secrets in a row a session
refuses further tries for `LOCKOUT_S` seconds (each try also costs one scrypt hash, ~16 MiB and tens of ms).

**Every admin action takes the session as its first argument and refuses (`AdminError`) unless it is unlocked**
(`require_admin`, or the `admin_action` decorator for new ones): the check is here, not in the pages, so a page
that shows an admin button by mistake still cannot run the action. The command line (`musegen models promote`,
`musegen feedback export`, ...) is not gated: whoever has a shell on the server is its admin.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import getpass
import hashlib
import hmac
import io
import logging
import os
import secrets
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from musegen_core.errors import MusegenError

if TYPE_CHECKING:
    from musegen_core.feedback import FeedbackStore

log = logging.getLogger("musegen.admin")

SECRET_HASH_ENV = "MUSEGEN_ADMIN_SECRET_HASH"
SCHEME = "scrypt"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB of memory per hash
KEY_BYTES = 32
SALT_BYTES = 16
MIN_SECRET_CHARS = 8
SESSION_HOURS = 8.0  # an unlocked session locks itself after this long (a school day)
MAX_FAILURES = 5  # wrong secrets in a row before a session must wait …
LOCKOUT_S = 60.0  # … this long

Status = Literal["off", "invalid", "on"]


class AdminError(MusegenError):
    """An admin action was refused: the session is not unlocked, or admin actions are off on this server."""


# ---------------------------------------------------------------------------------------------------------------
# The hash.


@dataclass(frozen=True)
class SecretHash:
    """A parsed `scrypt:N:r:p:SALT:KEY` value."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def __str__(self) -> str:
        return f"{SCHEME}:{self.n}:{self.r}:{self.p}:{_b64(self.salt)}:{_b64(self.key)}"

    def __repr__(self) -> str:  # never print the key, even in a traceback
        return f"SecretHash(n={self.n}, r={self.r}, p={self.p})"

    def matches(self, secret: str) -> bool:
        """Whether `secret` hashes to this key (constant-time comparison)."""
        candidate = _scrypt(secret, self.salt, self.n, self.r, self.p, len(self.key))
        return hmac.compare_digest(candidate, self.key)

    @property
    def fingerprint(self) -> str:
        """A short digest identifying this configured hash (what a session remembers, instead of the hash)."""
        return hashlib.sha256(str(self).encode()).hexdigest()[:16]


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """The value to put in `MUSEGEN_ADMIN_SECRET_HASH` for `secret`: `scrypt:N:r:p:SALT:KEY`, fresh random salt.

    Raises:
        AdminError: the secret is shorter than `MIN_SECRET_CHARS` characters or is only white space.
    """
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS or not secret.strip():
        raise AdminError(f"The admin secret must be at least {MIN_SECRET_CHARS} characters long.")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    key = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES)
    return str(SecretHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, key))


def parse_secret_hash(value: str) -> SecretHash:
    """Read a `scrypt:N:r:p:SALT:KEY` value. Raises `AdminError` (without echoing the value) when it is not one."""
    parts = value.strip().split(":")
    try:
        if len(parts) != 6 or parts[0] != SCHEME:
            raise ValueError
        n, r, p = (int(part) for part in parts[1:4])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
        if not (2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
            raise ValueError
        if n * r * 128 * 2 > _SCRYPT_MAXMEM or len(salt) < 8 or len(key) < 16:
            raise ValueError
    except (ValueError, binascii.Error):
        raise AdminError(
            f"{SECRET_HASH_ENV} is not a valid admin secret hash (expected scrypt:N:r:p:SALT:KEY); make one with "
            "`musegen admin hash-secret`."
        ) from None
    return SecretHash(n, r, p, salt, key)


_SCRYPT_MAXMEM = 256 * 2**20


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_SCRYPT_MAXMEM)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or any(ch not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for ch in text):
        raise ValueError
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def configured_hash() -> SecretHash | None:
    """The server's admin secret hash (read from the environment on every call); None when none is set.

    Raises:
        AdminError: the variable is set but does not hold a valid hash.
    """
    value = os.environ.get(SECRET_HASH_ENV, "").strip()
    return parse_secret_hash(value) if value else None


def status() -> Status:
    """Whether admin actions are possible: "on"; "off" (no admin secret configured); or "invalid" (one is set
    but is not a usable hash: admin stays off)."""
    try:
        return "on" if configured_hash() is not None else "off"
    except AdminError:
        return "invalid"


# ---------------------------------------------------------------------------------------------------------------
# Sessions.


class AdminSession:
    """One browser session's admin state: locked until `unlock` is given the server's secret.

    Holds neither the secret nor the hash: only the fingerprint of the hash it was unlocked against (so a changed
    or removed secret locks every session) and when.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._unlocked_with: str | None = None  # fingerprint of the configured hash at unlock time
        self._unlocked_at = 0.0
        self._failures = 0
        self._wait_until = 0.0

    def __repr__(self) -> str:
        return f"AdminSession(unlocked={self.unlocked})"

    @property
    def unlocked(self) -> bool:
        """True while unlocked with the secret now configured, and for at most `SESSION_HOURS`."""
        if self._unlocked_with is None:
            return False
        try:
            current = configured_hash()
        except AdminError:
            current = None
        fresh = self._clock() - self._unlocked_at < SESSION_HOURS * 3600
        if current is None or not hmac.compare_digest(current.fingerprint, self._unlocked_with) or not fresh:
            self._unlocked_with = None
            return False
        return True

    @property
    def wait_s(self) -> float:
        """Seconds before this session may try a secret again (0: it may now)."""
        return max(0.0, self._wait_until - self._clock())

    def unlock(self, secret: str) -> bool:
        """Unlock with the server's admin secret; True if it was right.

        Raises:
            AdminError: admin actions are off on this server (no valid hash configured), or too many wrong secrets
                in a row (wait `wait_s` seconds).
        """
        configured = configured_hash_or_refuse()
        if self.wait_s > 0:
            raise AdminError(f"Too many wrong secrets: try again in {self.wait_s:.0f} s.")
        if isinstance(secret, str) and secret and configured.matches(secret):
            self._unlocked_with, self._unlocked_at, self._failures = configured.fingerprint, self._clock(), 0
            log.info("admin session unlocked")
            return True
        self._failures += 1
        if self._failures >= MAX_FAILURES:
            self._failures, self._wait_until = 0, self._clock() + LOCKOUT_S
        log.warning("admin unlock refused: wrong secret")
        return False

    def lock(self) -> None:
        self._unlocked_with = None


def configured_hash_or_refuse() -> SecretHash:
    """The configured hash; `AdminError` saying admin actions are off when there is none (or it is invalid)."""
    configured = configured_hash()
    if configured is None:
        raise AdminError(f"Admin actions are off on this server: no admin secret is configured ({SECRET_HASH_ENV}).")
    return configured


def require_admin(session: object) -> None:
    """Refuse (`AdminError`) unless `session` is an unlocked `AdminSession`. Call first in every admin action."""
    configured_hash_or_refuse()
    if not isinstance(session, AdminSession) or not session.unlocked:
        raise AdminError("This is an admin action: unlock Admin in the sidebar with the admin secret first.")


P = ParamSpec("P")
T = TypeVar("T")


def admin_action(function: Callable[P, T]) -> Callable[..., T]:
    """Turn `function(*args)` into `action(session, *args)` that runs only for an unlocked `AdminSession`."""

    @functools.wraps(function)
    def action(session: AdminSession, /, *args: P.args, **kwargs: P.kwargs) -> T:
        require_admin(session)
        return function(*args, **kwargs)

    return action


# ---------------------------------------------------------------------------------------------------------------
# The admin actions the app offers.


def delete_rating(session: AdminSession, store: FeedbackStore, rating_id: int) -> bool:
    """Delete one star rating; False when there was none with that id."""
    require_admin(session)
    deleted = store.delete_rating(int(rating_id))
    log.info("admin deleted rating %s: %s", int(rating_id), deleted)
    return deleted


def delete_pair_vote(session: AdminSession, store: FeedbackStore, vote_id: int) -> bool:
    """Delete one pair vote; False when there was none with that id."""
    require_admin(session)
    deleted = store.delete_pair_vote(int(vote_id))
    log.info("admin deleted pair vote %s: %s", int(vote_id), deleted)
    return deleted


@dataclass(frozen=True)
class Export:
    """The feedback dataset (`musegen feedback export`) as one zip: the folder's files under `folder/`."""

    data: bytes
    manifest: dict[str, Any]
    folder: str  # the folder name inside the zip, e.g. "musegen-feedback-1a2b3c4d5e6f"

    @property
    def file_name(self) -> str:
        return f"{self.folder}.zip"


def export_zip(session: AdminSession, store: FeedbackStore, *, rater_cap: int | None = None) -> Export:
    """Export the feedback dataset exactly as `musegen feedback export` writes it and zip it (deterministically:
    sorted entries, fixed timestamps; the manifest's `created` time is the only part that changes between runs)."""
    require_admin(session)
    from musegen_core.feedback.export import DEFAULT_RATER_CAP, export_dataset

    with tempfile.TemporaryDirectory(prefix="musegen-export-") as temporary:
        out = Path(temporary) / "dataset"
        manifest = export_dataset(store, out, rater_cap=DEFAULT_RATER_CAP if rater_cap is None else rater_cap)
        folder = f"musegen-feedback-{manifest['content_sha256'][:12]}"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    entry = zipfile.ZipInfo(f"{folder}/{path.relative_to(out).as_posix()}", (1980, 1, 1, 0, 0, 0))
                    entry.compress_type = zipfile.ZIP_DEFLATED
                    entry.external_attr = 0o644 << 16
                    archive.writestr(entry, path.read_bytes())
    log.info("admin exported the feedback dataset (%s)", folder)
    return Export(buffer.getvalue(), manifest, folder)


def promote(session: AdminSession, name: str, **options: Any) -> dict[str, Any]:
    """`models.registry.promote` for an unlocked session (recorded as by "admin")."""
    require_admin(session)
    from musegen_core.models import registry

    return registry.promote(name, by="admin", **options)


def rollback(session: AdminSession, family: str) -> dict[str, Any]:
    """`models.registry.rollback` for an unlocked session."""
    require_admin(session)
    from musegen_core.models import registry

    return registry.rollback(family, by="admin")


def delete_version(session: AdminSession, name: str) -> None:
    """`models.registry.delete_version` for an unlocked session."""
    require_admin(session)
    from musegen_core.models import registry

    registry.delete_version(name)


# ---------------------------------------------------------------------------------------------------------------
# `musegen admin hash-secret` / `python -m musegen_core.admin hash-secret`.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="admin_command", required=True)
    make = commands.add_parser(
        "hash-secret", help=f"hash an admin secret for {SECRET_HASH_ENV} (asks for it; never takes it as an argument)"
    )
    make.add_argument("--stdin", action="store_true", help="read the secret from the first line of standard input")
    make.set_defaults(run=_hash_secret_command)
    check = commands.add_parser("status", help=f"say whether {SECRET_HASH_ENV} is set and valid (never prints it)")
    check.set_defaults(run=_status_command)


def _hash_secret_command(args: argparse.Namespace) -> int:
    if args.stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        secret = getpass.getpass("Admin secret: ")
        if getpass.getpass("Again: ") != secret:
            raise AdminError("The two entries differ; nothing was made.")
    print(f"{SECRET_HASH_ENV}={hash_secret(secret)}")
    return 0


def _status_command(args: argparse.Namespace) -> int:
    state = status()
    print(
        {
            "on": "admin actions are on (a valid admin secret hash is configured)",
            "off": f"admin actions are off: {SECRET_HASH_ENV} is not set",
            "invalid": f"admin actions are off: {SECRET_HASH_ENV} is set but is not a valid hash",
        }[state]
    )
    return 0 if state == "on" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musegen_core.admin", description="The admin secret.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except MusegenError as exc:
        print(f"musegen: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
