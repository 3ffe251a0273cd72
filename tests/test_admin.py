"""Who may do what (musegen_core.admin): the hashed admin secret, per-session unlock, and admin actions that refuse a
session that is not unlocked — called directly, without any page."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import pytest

from musegen_core import admin, cli
from musegen_core.admin import AdminError, AdminSession
from musegen_core.feedback import FeedbackStore, Rating

SECRET = "treble clef 42"
HASH = admin.hash_secret(SECRET)  # one scrypt per test run


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(admin.SECRET_HASH_ENV, HASH)
    return HASH


@pytest.fixture
def store(tmp_path: Path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.sqlite3'}")
    yield store
    store.dispose()


def _rating(stars: int = 4) -> Rating:
    return Rating(stars=stars, model_name="lstm-folk", model_version="2", seed=1, controls={"bars": 4},
                  prime_midi=b"MThd-prime", generated_midi=b"MThd-take", rater="Ada")  # fmt: skip


def test_the_hash_is_salted_scrypt_in_a_shell_safe_form() -> None:
    scheme, n, r, p, salt, key = HASH.split(":")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1") and len(salt) == 22 and len(key) == 43
    assert all(ch.isalnum() or ch in "-_:" for ch in HASH)  # nothing a shell would expand or split
    assert admin.hash_secret(SECRET) != HASH  # a fresh salt every time
    parsed = admin.parse_secret_hash(HASH)
    assert str(parsed) == HASH and parsed.matches(SECRET) and not parsed.matches(SECRET + " ")
    assert key not in repr(parsed) and salt not in repr(parsed)
    with pytest.raises(AdminError, match="at least 8"):
        admin.hash_secret("short")


@pytest.mark.parametrize(
    "value",
    ["plain-text-secret", "scrypt:16384:8:1:c2FsdHNhbHQ", "pbkdf2:16384:8:1:c2FsdHNhbHQ:a2V5a2V5a2V5a2V5a2V5",
     "scrypt:1000:8:1:c2FsdHNhbHQ:a2V5a2V5a2V5a2V5a2V5", "scrypt:16384:8:1:c2Fs!:a2V5a2V5a2V5a2V5a2V5"],
)  # fmt: skip
def test_a_value_that_is_not_a_hash_is_refused_without_being_echoed(value: str, monkeypatch) -> None:
    with pytest.raises(AdminError) as refused:
        admin.parse_secret_hash(value)
    assert value not in str(refused.value) and "hash-secret" in str(refused.value)
    monkeypatch.setenv(admin.SECRET_HASH_ENV, value)
    assert admin.status() == "invalid"
    session = AdminSession()
    with pytest.raises(AdminError):
        session.unlock(value)
    assert not session.unlocked


def test_without_a_configured_secret_admin_is_off(monkeypatch: pytest.MonkeyPatch, store) -> None:
    monkeypatch.delenv(admin.SECRET_HASH_ENV, raising=False)
    assert admin.status() == "off"
    session = AdminSession()
    with pytest.raises(AdminError, match="off on this server"):
        session.unlock(SECRET)
    with pytest.raises(AdminError, match="off on this server"):
        admin.export_zip(session, store)


def test_unlock_needs_the_right_secret_and_locks_again(configured: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    session = AdminSession(clock=lambda: now[0])
    assert admin.status() == "on" and not session.unlocked
    assert not session.unlock("treble clef 41") and not session.unlock("") and not session.unlocked
    assert session.unlock(SECRET) and session.unlocked
    session.lock()
    assert not session.unlocked
    assert session.unlock(SECRET)
    now[0] += admin.SESSION_HOURS * 3600 + 1
    assert not session.unlocked  # expired
    assert session.unlock(SECRET)
    monkeypatch.setenv(admin.SECRET_HASH_ENV, admin.hash_secret("another secret"))
    assert not session.unlocked  # the server's secret changed: every session locks
    monkeypatch.setenv(admin.SECRET_HASH_ENV, HASH)
    assert not session.unlocked  # and stays locked when it changes back
    monkeypatch.delenv(admin.SECRET_HASH_ENV)
    assert not session.unlocked


def test_too_many_wrong_secrets_make_a_session_wait(configured: str) -> None:
    now = [0.0]
    session = AdminSession(clock=lambda: now[0])
    for _ in range(admin.MAX_FAILURES):
        assert not session.unlock("guess guess")
    assert session.wait_s == admin.LOCKOUT_S
    with pytest.raises(AdminError, match="try again"):
        session.unlock(SECRET)  # even the right one, until the wait is over
    now[0] += admin.LOCKOUT_S
    assert session.unlock(SECRET)


def test_a_session_that_is_not_unlocked_cannot_reach_any_admin_action(
    configured: str, store: FeedbackStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from musegen_core.models import registry

    rating_id = store.add(_rating())
    called = []
    for name in ("promote", "rollback", "delete_version"):
        monkeypatch.setattr(registry, name, lambda *a, _name=name, **k: called.append(_name))
    wrong = AdminSession()
    wrong.unlock("not the secret")
    for session in (None, object(), "admin", True, AdminSession(), wrong):
        for action in (
            lambda s: admin.delete_rating(s, store, rating_id),
            lambda s: admin.delete_pair_vote(s, store, 1),
            lambda s: admin.export_zip(s, store),
            lambda s: admin.promote(s, "lstm-folk"),
            lambda s: admin.rollback(s, "lstm"),
            lambda s: admin.delete_version(s, "lstm-folk-v3"),
        ):
            with pytest.raises(AdminError, match="admin action"):
                action(session)
    assert called == [] and store.count() == 1

    unlocked = AdminSession()
    assert unlocked.unlock(SECRET)
    admin.promote(unlocked, "lstm-folk")
    admin.rollback(unlocked, "lstm")
    admin.delete_version(unlocked, "lstm-folk-v3")
    assert called == ["promote", "rollback", "delete_version"]
    assert admin.delete_rating(unlocked, store, rating_id) and store.count() == 0
    assert not admin.delete_rating(unlocked, store, rating_id)


def test_admin_action_wraps_new_actions(configured: str) -> None:
    @admin.admin_action
    def start_finetune(model: str, *, steps: int = 1) -> str:
        return f"{model} {steps}"

    with pytest.raises(AdminError):
        start_finetune(AdminSession(), "lstm-folk")
    session = AdminSession()
    session.unlock(SECRET)
    assert start_finetune(session, "lstm-folk", steps=3) == "lstm-folk 3"


def test_the_export_zip_holds_the_dataset_folder(configured: str, store: FeedbackStore, tmp_path: Path) -> None:
    from musegen_core.feedback.export import export_dataset

    store.add(_rating(5))
    session = AdminSession()
    session.unlock(SECRET)
    export = admin.export_zip(session, store)
    expected = export_dataset(store, tmp_path / "cli-export")
    assert export.manifest["content_sha256"] == expected["content_sha256"]
    with zipfile.ZipFile(io.BytesIO(export.data)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names == sorted(names) and all(name.startswith(f"{export.folder}/") for name in names)
        manifest = json.loads(archive.read(f"{export.folder}/manifest.json"))
        assert manifest["counts"]["ratings"] == 1 and manifest["content_sha256"] == expected["content_sha256"]
        for path in (tmp_path / "cli-export").rglob("*"):
            if path.is_file() and path.name != "manifest.json":
                assert archive.read(f"{export.folder}/{path.relative_to(tmp_path / 'cli-export')}") == path.read_bytes()
    assert export.file_name == f"{export.folder}.zip"


def test_the_secret_is_never_logged(configured: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    session = AdminSession()
    session.unlock("wrong wrong wrong")
    session.unlock(SECRET)
    assert "refused" in caplog.text and "unlocked" in caplog.text
    assert SECRET not in caplog.text and "wrong wrong wrong" not in caplog.text and HASH not in caplog.text
    assert SECRET not in repr(session) and HASH not in repr(vars(session))


def test_hash_secret_command_prints_the_variable_to_set(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    assert cli.main(["admin", "hash-secret", "--stdin"]) == 0
    line = capsys.readouterr().out.strip()
    name, value = line.split("=", 1)
    assert name == admin.SECRET_HASH_ENV and admin.parse_secret_hash(value).matches(SECRET) and SECRET not in line

    prompts = iter([SECRET, SECRET])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(prompts))
    assert admin.main(["hash-secret"]) == 0
    assert admin.parse_secret_hash(capsys.readouterr().out.strip().split("=", 1)[1]).matches(SECRET)
    differ = iter([SECRET, SECRET + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(differ))
    assert admin.main(["hash-secret"]) == 1 and "differ" in capsys.readouterr().err

    monkeypatch.setenv(admin.SECRET_HASH_ENV, value)
    assert admin.main(["status"]) == 0 and value not in capsys.readouterr().out
