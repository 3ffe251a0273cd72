"""Nothing breaks it and nothing is lost: the feedback store's SQLite settings and its retry on a held write lock,
concurrent raters (threads and processes) on SQLite and PostgreSQL audited exactly, writers killed with SIGKILL
(at a random moment and inside a transaction), and a fine-tune killed with SIGKILL that must leave the models
folders alone and resume to the weights of an uninterrupted run. The checks are bench/durability.py's own (loaded
here); the full-size runs (30 raters × 100 ratings, many kills) are marked slow."""

from __future__ import annotations

import importlib.util
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from musegen_core.errors import StoreError
from musegen_core.feedback import FeedbackStore, migrate
from musegen_core.feedback import store as store_module

BENCH = Path(__file__).resolve().parents[1] / "bench" / "durability.py"
CLEAN = {"ratings_lost": 0, "ratings_duplicated": 0, "ratings_damaged": 0, "ratings_unexpected": 0}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("durability_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    path = list(sys.path)
    spec.loader.exec_module(module)
    sys.path[:] = path  # the bench puts bench/ first on the path to import its _pg helper
    yield module
    sys.modules.pop(spec.name, None)


def _backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


# --- SQLite settings and the retry on "database is locked" --------------------------------------------------------


def test_every_sqlite_connection_runs_wal_with_synchronous_full(tmp_path: Path, bench) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.sqlite3'}")
    connections = [store._engine.connect() for _ in range(3)]  # three pooled connections, each set up on connect
    try:
        for conn in connections:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL (NORMAL is 1)
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == migrate.SQLITE_BUSY_TIMEOUT_MS
    finally:
        for conn in connections:
            conn.close()
        store.dispose()
    settings = bench.database_settings(f"sqlite:///{tmp_path / 'fb.sqlite3'}")
    assert settings == {"journal_mode": "wal", "synchronous": "FULL", "busy_timeout": "5000"}


def _locked_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FeedbackStore, sqlite3.Connection]:
    """A store with a 100 ms busy timeout, and a raw connection holding the database's write lock."""
    monkeypatch.setattr(migrate, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "fb.sqlite3"
    store = FeedbackStore(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return store, holder


def test_a_write_that_meets_a_held_lock_is_run_again_until_the_lock_is_free(tmp_path, monkeypatch, bench) -> None:
    store, holder = _locked_store(tmp_path, monkeypatch)
    release = threading.Timer(0.25, holder.execute, args=("COMMIT",))  # longer than one busy timeout
    release.start()
    start = time.perf_counter()
    try:
        store.add(bench.rating_for("retry/00/00000"))
    finally:
        release.join()
        holder.close()
    assert time.perf_counter() - start >= 0.2
    assert [r.comment for r in store.recent()] == ["retry/00/00000"]
    store.dispose()


def test_a_write_still_locked_after_every_retry_fails_saying_so(tmp_path, monkeypatch, bench) -> None:
    store, holder = _locked_store(tmp_path, monkeypatch)
    attempts = []
    connect = store._engine.connect
    monkeypatch.setattr(store._engine, "connect", lambda: attempts.append(1) or connect())
    start = time.perf_counter()
    try:
        with pytest.raises(StoreError, match="could not be saved: OperationalError") as failure:
            store.add(bench.rating_for("retry/00/00000"))
    finally:
        holder.close()
    assert len(attempts) == 1 + store_module.BUSY_RETRIES and time.perf_counter() - start < 3
    assert bench.is_locked(failure.value) and migrate.is_busy(failure.value.__cause__)
    assert store.count() == 0
    store.dispose()


def test_only_sqlite_busy_counts_as_busy(tmp_path: Path) -> None:
    engine = migrate.make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with pytest.raises(OperationalError) as missing, engine.connect() as conn:
        conn.exec_driver_sql("SELECT * FROM nowhere")
    assert not migrate.is_busy(missing.value)
    engine.dispose()


# --- concurrent raters, audited exactly ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_concurrent_raters_lose_double_and_damage_nothing(db_url: str, mode: str, bench) -> None:
    result = bench.concurrent_run(db_url, _backend(db_url), mode, 8, 25)
    assert {k: result[k] for k in ("ratings_written", "ratings_present", "database_locked", "other_errors")} == {
        "ratings_written": 200, "ratings_present": 200, "database_locked": 0, "other_errors": 0,
    }, result["error_samples"]  # fmt: skip
    assert {k: result[k] for k in CLEAN} == CLEAN
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["max_ms"]


def test_the_audit_counts_lost_doubled_damaged_and_unexpected_ratings(db_url: str, open_store, bench) -> None:
    store = open_store()
    ids = [bench.client_id("audit", 0, i) for i in range(5)]
    stored = {cid: store.add(bench.rating_for(cid)) for cid in ids}
    store.delete_rating(stored[ids[0]])  # lost
    columns = ("created_at, stars, comment, model_name, model_version, seed, controls_json, style, prime_name, "
               "prime_sha256, take_sha256")  # fmt: skip
    engine = create_engine(db_url)
    with engine.begin() as conn:  # a second row for ids[1] (no rater, no tag: damaged too); ids[2] loses a star
        conn.execute(text(f"INSERT INTO ratings ({columns}) SELECT {columns} FROM ratings WHERE comment = :c"),
                     {"c": ids[1]})  # fmt: skip
        conn.execute(text("UPDATE ratings SET stars = stars + 1 WHERE comment = :c"), {"c": ids[2]})
    engine.dispose()
    counts = bench.audit(bench.rows_of(db_url, "audit"), set(ids[:4]))  # ids[4] was never acknowledged
    assert counts == {"ratings_present": 4, "ratings_lost": 1, "ratings_duplicated": 1, "ratings_damaged": 2,
                      "ratings_unexpected": 1}  # fmt: skip


# --- writers killed with SIGKILL ----------------------------------------------------------------------------------


def test_a_writer_killed_at_a_random_moment_keeps_every_committed_rating(db_url, tmp_path, bench) -> None:
    result = bench.kill_writer(db_url, tmp_path, seed=1, in_transaction=False)
    assert result["killed"] and result["committed_reported"] > 0
    assert {k: result[k] for k in CLEAN} == CLEAN
    assert result["consistency"] == "ok"
    assert result["write_after_kill_ms"] < migrate.SQLITE_BUSY_TIMEOUT_MS  # no lock left behind


def test_a_writer_killed_inside_its_transaction_leaves_nothing_of_it(db_url, tmp_path, bench) -> None:
    result = bench.kill_writer(db_url, tmp_path, seed=2, in_transaction=True)
    assert result["killed"] and result["committed_reported"] == random.Random(2).randint(5, 40)
    assert not result["unreported_commit_present"]  # the inserts of the transaction it died in are gone
    assert {k: result[k] for k in CLEAN} == CLEAN
    assert result["consistency"] == "ok"
    assert result["write_after_kill_ms"] < migrate.SQLITE_BUSY_TIMEOUT_MS


# --- a fine-tune killed with SIGKILL ------------------------------------------------------------------------------


def _clean_finetune(result: dict) -> None:
    assert result["files_changed"] == 0 and result["partial_versions_seen"] == 0
    assert result["active_model_always_loaded"] and result["failed_starts"] == []
    assert result["final_version"] == "complete" and result["same_weights_as_uninterrupted"]


def test_a_finetune_killed_after_a_resume_point_resumes_to_the_same_weights(tmp_path, bench) -> None:
    result = bench.finetune_kills(tmp_path, kills=1, steps=600, save_every=100, seed=0, after_resume_point=True)
    assert result["kills"] == 1 and result["attempts"][1]["resumed_from"] >= 100
    _clean_finetune(result)


def _killed_at_hook(bench, root: Path, hook: str, steps: int = 40) -> subprocess.CompletedProcess:
    """Run the fine-tune in a process that SIGKILLs itself where `hook` (Python, run before it starts) says."""
    bench.finetune_setup(root)
    script = f"import os, signal, sys\nfrom musegen_core.training import finetune\n{hook}\nsys.exit(finetune.main())"
    args = bench.finetune_command(root, steps, 10, False)[3:]  # after "python -m musegen_core.training.finetune"
    return subprocess.run([sys.executable, "-c", script, *args], env=bench._env(root), cwd=root, capture_output=True,
                          timeout=300, check=False)  # fmt: skip


def _resume(bench, root: Path, steps: int = 40) -> subprocess.CompletedProcess:
    command = bench.finetune_command(root, steps, 10, bench.resume_step(root) is not None)
    return subprocess.run(command, env=bench._env(root), cwd=root, capture_output=True, text=True, timeout=300)


KILL_AFTER_SECOND_TENSORS = """
real, seen = os.replace, []
def replace(source, target):
    real(source, target)
    if ".resume" in str(target) and str(target).endswith(".safetensors"):
        seen.append(target)
        if len(seen) == 2:  # the second resume point's tensors are in place, its resume.json not yet
            os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
"""


def test_a_finetune_killed_between_its_resume_files_still_resumes(tmp_path, bench) -> None:
    root = tmp_path / "finetune"
    assert _killed_at_hook(bench, root, KILL_AFTER_SECOND_TENSORS).returncode == -9
    resumed = _resume(bench, root)
    assert resumed.returncode == 0, resumed.stderr[-300:]
    assert bench.version_state(root) == "complete"


KILL_AS_THE_VERSION_APPEARS = """
from musegen_core.models import checkpoint
real = checkpoint._swap_into_place
def swap(new, folder):
    real(new, folder)
    if folder.name == "tiny-v3":
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint._swap_into_place = swap
"""


def test_a_finetune_killed_as_its_version_appears_leaves_no_partial_version(tmp_path, bench) -> None:
    root = tmp_path / "finetune"
    assert _killed_at_hook(bench, root, KILL_AS_THE_VERSION_APPEARS).returncode == -9
    assert bench.version_state(root) in ("absent", "complete")
    resumed = _resume(bench, root)
    assert resumed.returncode == 0, resumed.stderr[-300:]
    assert bench.version_state(root) == "complete"


# --- full size (slow) ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_thirty_raters_of_a_hundred_ratings_each(db_url: str, mode: str, bench) -> None:
    result = bench.concurrent_run(db_url, _backend(db_url), mode, 30, 100)
    assert (result["ratings_written"], result["ratings_present"]) == (3000, 3000), result["error_samples"]
    assert (result["database_locked"], result["other_errors"]) == (0, 0)
    assert {k: result[k] for k in CLEAN} == CLEAN


@pytest.mark.slow
def test_a_finetune_killed_at_many_random_moments_resumes_to_the_same_weights(tmp_path, bench) -> None:
    result = bench.finetune_kills(tmp_path, kills=6, steps=1500, save_every=50, seed=3)
    assert result["kills"] >= 3
    _clean_finetune(result)
