"""Nothing lost, nothing doubled: concurrent raters, writers killed in mid-transaction and fine-tunes killed at random
moments, against the feedback store on SQLite and PostgreSQL and against the model registry.

1. **Concurrent raters.** `--raters` raters (30) each write `--ratings` ratings (100) through `FeedbackStore.add`,
   all at once (a barrier releases them together): as threads sharing one store, and as processes (spawned, each
   opening the store itself). Every rating carries a unique client id `<run>/<rater>/<i>` as its comment, and
   everything else in it follows from that id (stars, a take whose MIDI bytes embed the id, the tag, the rater), so
   the database is audited exactly afterwards: **written** (adds that returned), **lost** (returned, but not in the
   database), **duplicated** (extra rows for one id), **damaged** (a row whose stars, take, tags or rater differ
   from what was sent), **unexpected** (a row for an add that failed, or for no id sent), "database is locked"
   errors, other errors, and the latency of each add (p50/p95/max, ms; threads include the wait for one of the
   engine's pooled connections) with the number of adds that took at least SQLite's busy timeout (5 s; on SQLite
   those needed the store's retry after "database is locked"). SQLite runs with the store's own pragmas, read back
   and reported (WAL, `synchronous=FULL`, busy timeout); PostgreSQL on a throwaway server started here (`_pg.py`)
   with its durable defaults (fsync, synchronous_commit on).
2. **Writers killed with SIGKILL.** (a) A process writing ratings in a loop, appending each client id to a report
   file (unbuffered) after its commit returned, is killed at a random moment (seeded); (b) a process whose write
   transaction hangs after its inserts, before COMMIT (a bench-only hook wrapping the store's `_write`, see
   `_hang_before_commit`), is killed there. Then: SQLite `PRAGMA integrity_check` = ok and `foreign_key_check`
   empty, PostgreSQL amcheck clean (`verify_heapam` on every table, `bt_index_check` with `heapallindexed` on every
   index); every reported rating present once and undamaged; nothing else present but, in (a), possibly the one
   rating committed just before the kill and not yet reported; in (b) not the uncommitted one; and a new store
   writes at once (its latency is reported: no lock is left behind).
3. **Fine-tunes killed with SIGKILL.** A tiny LSTM is shipped, a fine-tuned version of it (`tiny-v2`, in the user
   models directory) is promoted, and `musegen finetune --model lstm` (parent: the promoted `tiny-v2`; `--no-gate`,
   so it writes a new version and promotes nothing) is killed at `--kills` random moments (seeded, uniform over the
   time the run still needs, start-up and saving included, as estimated from an uninterrupted run), each time
   started again with `--resume` once a resume point exists (from scratch before the first). After every kill:
   every file of the shipped and user models folders that existed before is byte-identical (sha256), the promoted
   model still loads, and the registry lists no new version unless it is complete (loads, has its lineage). The
   last run completes; its weights must equal those of an uninterrupted run of the same command in a copy of the
   folders (sha256). Power loss is not simulated (a killed process loses nothing the kernel holds):
   `synchronous=FULL` (SQLite) and fsync on (PostgreSQL) are what cover it.

    .venv/bin/python bench/durability.py [--raters 30] [--ratings 100] [--backends sqlite,postgresql]
        [--kills 8] [--finetune-steps 1500] [--save-every 50] [--seed 0] [--json bench/results/durability.json]

Prints Markdown tables and writes the JSON (`results`: one entry per backend and mode).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import itertools
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _pg
from sqlalchemy import create_engine, text

from musegen_core.feedback import FeedbackStore, Rating
from musegen_core.feedback.store import SQLITE_BUSY_TIMEOUT_MS

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results" / "durability.json"
PRIMES = tuple(f"MThd-durability-prime-{k}".encode() for k in range(5))  # shared by all raters, as in the app
TAG = "catchy"
LOCKED = "database is locked"
CHILD_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


# ---------------------------------------------------------------------------------------------------------------
# Simulated ratings


def client_id(run: str, rater: int, index: int) -> str:
    return f"{run}/{rater:02d}/{index:05d}"


def take_of(cid: str) -> bytes:
    return f"MThd-durability-take {cid}".encode()


def rater_of(cid: str) -> str:
    return f"durability-{cid.split('/')[1]}"


def stars_of(cid: str) -> int:
    return 1 + int(cid.rsplit("/", 1)[1]) % 5


def rating_for(cid: str) -> Rating:
    """The rating a simulated rater sends under client id `cid`: everything in it follows from the id."""
    index = int(cid.rsplit("/", 1)[1])
    return Rating(stars=stars_of(cid), model_name="durability", model_version="1", seed=index,
                  controls={"bars": 4, "style": "irish"}, prime_midi=PRIMES[index % len(PRIMES)],
                  generated_midi=take_of(cid), prime_name=f"prime-{index % len(PRIMES)}", comment=cid, tags=(TAG,),
                  rater=rater_of(cid))  # fmt: skip


@dataclass
class RaterLog:
    """What one rater saw: ids whose add returned or raised, the latency of every add, and errors by kind."""

    written: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    locked: int = 0
    other_errors: int = 0
    messages: list[str] = field(default_factory=list)  # the first few error messages, with their causes
    started: float = 0.0  # wall clock (time.time), comparable across processes
    finished: float = 0.0


def is_locked(error: BaseException) -> bool:
    """Whether "database is locked" is the error or any of its causes (the store wraps driver errors)."""
    seen: BaseException | None = error
    while seen is not None:
        if LOCKED in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    return f"{error}" + (f" <- {type(cause).__name__}: {str(cause).splitlines()[0][:200]}" if cause else "")


def rate(store: FeedbackStore, run: str, rater: int, count: int) -> RaterLog:
    """Send `count` ratings one after the other, as one rater; every error is caught and counted."""
    log = RaterLog(started=time.time())
    for index in range(count):
        cid = client_id(run, rater, index)
        rating = rating_for(cid)
        start = time.perf_counter()
        try:
            store.add(rating)
        except Exception as error:  # counted, never raised: the audit decides
            log.failed.append(cid)
            log.locked += is_locked(error)
            log.other_errors += not is_locked(error)
            if len(log.messages) < 3:
                log.messages.append(_describe(error))
        else:
            log.written.append(cid)
        log.latencies_ms.append((time.perf_counter() - start) * 1000)
    log.finished = time.time()
    return log


# ---------------------------------------------------------------------------------------------------------------
# Raters as threads and as processes


def in_threads(url: str, run: str, raters: int, count: int) -> list[RaterLog]:
    """`raters` threads sharing one store, released together."""
    store = FeedbackStore(url)
    barrier = threading.Barrier(raters)
    logs = [RaterLog() for _ in range(raters)]

    def one(rater: int) -> None:
        barrier.wait()
        logs[rater] = rate(store, run, rater, count)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(raters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.dispose()
    return logs


def _worker_command(*args: str) -> list[str]:
    return [sys.executable, str(HERE), "worker", *args]


def in_processes(url: str, run: str, raters: int, count: int) -> list[RaterLog]:
    """`raters` spawned processes, each opening the store; released together once all have opened it."""
    children = [
        subprocess.Popen(_worker_command("rate", url, run, str(k), str(count)), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=os.environ | CHILD_ENV)
        for k in range(raters)
    ]  # fmt: skip
    try:
        for child in children:
            if child.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise RuntimeError(f"a rater process did not start (exit code {child.wait()})")
        for child in children:
            child.stdin.write("go\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
        return [RaterLog(**json.loads(child.communicate(timeout=900)[0])) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def _worker_rate(url: str, run: str, rater: str, count: str) -> None:
    store = FeedbackStore(url)
    print("ready", flush=True)
    sys.stdin.readline()
    log = rate(store, run, int(rater), int(count))
    store.dispose()
    print(json.dumps(asdict(log)), flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Auditing the database


@dataclass(frozen=True)
class Row:
    stars: int
    take: bytes | None
    tags: int  # tag rows of the rating
    tagged: int  # of them, the expected tag
    rater: str | None


def rows_of(url: str, run: str) -> dict[str, list[Row]]:
    """Every stored rating of this run, by client id (read with a plain engine: the auditor trusts no store code)."""
    query = text(
        "SELECT r.comment, r.stars, p.midi, w.name,"
        " (SELECT COUNT(*) FROM rating_tags t WHERE t.rating_id = r.id),"
        " (SELECT COUNT(*) FROM rating_tags t WHERE t.rating_id = r.id AND t.tag = :tag)"
        " FROM ratings r LEFT JOIN pieces p ON p.sha256 = r.take_sha256 LEFT JOIN raters w ON w.id = r.rater_id"
        " WHERE r.comment LIKE :prefix"
    )
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            found: dict[str, list[Row]] = {}
            for cid, stars, midi, rater, tags, tagged in conn.execute(query, {"tag": TAG, "prefix": f"{run}/%"}):
                found.setdefault(cid, []).append(Row(stars, None if midi is None else bytes(midi), tags, tagged, rater))
            return found
    finally:
        engine.dispose()


def damaged(cid: str, row: Row) -> bool:
    return (row.stars, row.take, row.tags, row.tagged, row.rater) != (stars_of(cid), take_of(cid), 1, 1, rater_of(cid))


def audit(rows: dict[str, list[Row]], acknowledged: set[str], unknown: str | None = None) -> dict[str, int]:
    """Exact counts: acknowledged adds missing, extra rows per id, rows unlike what was sent, and rows of adds not
    acknowledged (but `unknown`: an add whose outcome its writer did not live to report, which may be either)."""
    return {
        "ratings_present": len(rows),
        "ratings_lost": len(acknowledged - rows.keys()),
        "ratings_duplicated": sum(len(found) - 1 for found in rows.values()),
        "ratings_damaged": sum(damaged(cid, row) for cid, found in rows.items() for row in found),
        "ratings_unexpected": len(rows.keys() - acknowledged - {unknown}),
    }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def database_settings(url: str) -> dict[str, str]:
    """What the store's connections run with: SQLite pragmas, PostgreSQL durability settings."""
    store = FeedbackStore(url)
    try:
        with store._engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                names = ("journal_mode", "synchronous", "busy_timeout")
                values = {n: str(conn.exec_driver_sql(f"PRAGMA {n}").scalar()) for n in names}
                return values | {"synchronous": {"0": "OFF", "1": "NORMAL", "2": "FULL", "3": "EXTRA"}.get(
                    values["synchronous"], values["synchronous"])}  # fmt: skip
            names = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "transaction_isolation")
            return {n: str(conn.exec_driver_sql(f"SHOW {n}").scalar()) for n in names}
    finally:
        store.dispose()


def concurrent_run(url: str, backend: str, mode: str, raters: int, count: int) -> dict[str, Any]:
    """One backend × mode: a fresh database, the raters, the audit; one result entry."""
    FeedbackStore(url).dispose()  # create the schema first: raters arrive at an existing database
    run = f"{mode}-{os.urandom(4).hex()}"
    logs = (in_threads if mode == "threads" else in_processes)(url, run, raters, count)
    acknowledged = {cid for log in logs for cid in log.written}
    latencies = [ms for log in logs for ms in log.latencies_ms]
    return {
        "backend": backend, "mode": mode, "raters": raters, "ratings_per_rater": count,
        "ratings_sent": raters * count, "ratings_written": len(acknowledged),
        **audit(rows_of(url, run), acknowledged),
        "database_locked": sum(log.locked for log in logs), "other_errors": sum(log.other_errors for log in logs),
        "error_samples": [m for log in logs for m in log.messages][:5],
        "p50_ms": round(percentile(latencies, 0.5), 2), "p95_ms": round(percentile(latencies, 0.95), 2),
        "max_ms": round(max(latencies), 2),
        "adds_over_busy_timeout": sum(ms >= SQLITE_BUSY_TIMEOUT_MS for ms in latencies),
        "seconds": round(max(log.finished for log in logs) - min(log.started for log in logs), 2),
        "settings": database_settings(url),
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Writers killed with SIGKILL


def _hang_before_commit(store: FeedbackStore, report: int, at: int) -> None:
    """Bench-only hook: the `at`-th write (from 0) runs its inserts in the store's own write transaction, reports
    "in-transaction" and then sleeps until killed, so COMMIT never runs."""
    original = store._write
    calls = itertools.count()

    def write(failure: str, work: Callable, *args: Any, **kwargs: Any) -> Any:
        if next(calls) != at:
            return original(failure, work, *args, **kwargs)

        def stuck(conn: Any) -> Any:
            work(conn)
            os.write(report, b"in-transaction\n")
            time.sleep(3600)

        return original(failure, stuck, *args, **kwargs)

    store._write = write  # type: ignore[method-assign]


def _worker_loop(url: str, run: str, report_path: str, hang_at: str) -> None:
    """Write ratings until killed, appending each client id to the report after its commit returned."""
    store = FeedbackStore(url)
    report = os.open(report_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if int(hang_at) >= 0:
        _hang_before_commit(store, report, int(hang_at))
    os.write(report, b"ready\n")
    for index in itertools.count():
        cid = client_id(run, 0, index)
        store.add(rating_for(cid))
        os.write(report, f"{cid}\n".encode())


def _report_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait_for(path: Path, line: str, child: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while line not in _report_lines(path):
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the writer never reported {line!r} (exit code {child.poll()})")
        time.sleep(0.01)


def kill_writer(url: str, workdir: Path, seed: int, in_transaction: bool) -> dict[str, Any]:
    """Start a writer, SIGKILL it (at a random moment, or inside a transaction), then audit and check the database."""
    rng = random.Random(seed)
    run = f"kill-{os.urandom(4).hex()}"
    report = workdir / f"{run}.txt"
    hang_at = rng.randint(5, 40) if in_transaction else -1
    child = subprocess.Popen(_worker_command("loop", url, run, str(report), str(hang_at)), env=os.environ | CHILD_ENV)
    _wait_for(report, "ready", child)
    if in_transaction:
        _wait_for(report, "in-transaction", child)
    else:
        time.sleep(rng.uniform(0.3, 1.5))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    committed = [line for line in _report_lines(report) if line.startswith(run)]
    rows = rows_of(url, run)
    following = client_id(run, 0, len(committed))  # the write under way when the kill came
    counts = audit(rows, set(committed), None if in_transaction else following)
    return {
        "case": "inside a transaction" if in_transaction else "at a random moment",
        "killed": child.returncode == -signal.SIGKILL, "committed_reported": len(committed),
        **counts, "unreported_commit_present": following in rows, "consistency": consistency(url),
        "write_after_kill_ms": write_after(url, run),
    }  # fmt: skip


def write_after(url: str, run: str) -> float:
    """ms for a new store to write one rating (after the killed writer: no lock left behind)."""
    store = FeedbackStore(url)
    try:
        start = time.perf_counter()
        store.add(rating_for(client_id(f"{run}-after", 0, 0)))
        return round((time.perf_counter() - start) * 1000, 2)
    finally:
        store.dispose()


def consistency(url: str) -> str:
    """`ok`, or what the database's own checker found."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            foreign = conn.execute("PRAGMA foreign_key_check").fetchall()
        problems = ([] if integrity == ["ok"] else integrity) + [f"foreign key: {row}" for row in foreign]
        return "ok" if not problems else "; ".join(map(str, problems))[:500]
    return _amcheck(url)


def _amcheck(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS amcheck")
            tables = conn.exec_driver_sql(
                "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind = 'r'"
            ).scalars()
            problems = [f"{t}: {row}" for t in list(tables) for row in
                        conn.execute(text("SELECT * FROM verify_heapam(CAST(:t AS regclass))"), {"t": t})]  # fmt: skip
            conn.exec_driver_sql(
                "SELECT bt_index_check(i.indexrelid, true) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam"
                " WHERE n.nspname = 'public' AND a.amname = 'btree'"
            ).all()  # raises on a damaged index
        return "ok" if not problems else "; ".join(problems)[:500]
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------------------------
# Fine-tunes killed with SIGKILL


VERSION = "tiny-v3"  # what the fine-tune of the promoted tiny-v2 writes
TINY_INFO = {"version": "1", "description": "tiny", "trained_on": ["O'Neill's: public domain"],
             "commercial_use_cleared": True}  # fmt: skip


@contextlib.contextmanager
def models_env(root: Path) -> Iterator[None]:
    """The registry of this process looks at `root`'s shipped and user models folders inside the block."""
    names = {"MUSEGEN_MODELS_DIR": str(root / "shipped"), "MUSEGEN_USER_MODELS_DIR": str(root / "user")}
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _synthetic_feedback(folder: Path, records: int = 40, seed: int = 0) -> None:
    """Raters who like high continuations (as tests/test_finetune.py's `synthetic`), written as a dataset."""
    from musegen_core.formats.midi import piece_to_midi
    from musegen_core.music import Note, Part, Piece
    from musegen_core.training import preferences

    rng = random.Random(seed)

    def midi(low: int, start: float) -> bytes:
        notes = tuple(Note(rng.randint(low, low + 12), start + i, 1.0) for i in range(8))
        return piece_to_midi(Piece((Part("Flute", notes, program=73),)))

    pairs, ratings = [], []
    for i in range(records):
        prime, high, low = midi(60, 0.0), midi(74, 8.0), midi(50, 8.0)
        a, b, choice = (high, low, "a") if i % 2 else (low, high, "b")
        pairs.append(preferences.TakePair(prime, a, b, choice, controls_a={"bars": 2}, controls_b={"bars": 2}))
        liked = i % 3 != 0
        ratings.append(preferences.RatedTake(prime, high if liked else low, 5 if liked else 1, controls={"bars": 2}))
    data = preferences.FeedbackData(tuple(ratings), tuple(pairs), preferences.records_sha256(ratings, pairs), "bench")
    preferences.write_feedback(data, folder)


def finetune_setup(root: Path) -> None:
    """`root/shipped/tiny` (a tiny LSTM), `root/user/tiny-v2` (fine-tuned from it, promoted), `root/feedback`."""
    import torch

    from musegen_core.models import checkpoint, lstm, registry
    from musegen_core.training import finetune

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = lstm.MelodyLSTM(lstm.PRESETS["lstm-tiny"]).eval()
    checkpoint.save_checkpoint(model, model.config, root / "shipped" / "tiny", "# tiny\n", {}, info=TINY_INFO)
    (root / "shipped" / "promoted.json").write_text(json.dumps({"default": "tiny", "families": {"lstm": "tiny"}}))
    _synthetic_feedback(root / "feedback")
    with models_env(root), contextlib.redirect_stdout(sys.stderr):
        finetune.finetune("tiny", root / "feedback", steps=2, gate=False, device="cpu", batch_size=8, threads=1,
                          corpus_weight=0.0)  # fmt: skip
        registry.promote("tiny-v2", force=True, by="durability bench")


def finetune_command(root: Path, steps: int, save_every: int, resume: bool, progress: Path | None = None) -> list[str]:
    return [sys.executable, "-m", "musegen_core.training.finetune", "--model", "lstm", "--dataset",
            str(root / "feedback"), "--steps", str(steps), "--save-every", str(save_every), "--batch-size", "8",
            "--lr", "3e-3", "--no-gate", "--corpus-weight", "0", "--device", "cpu", "--threads", "1",
            *(["--resume"] if resume else []), *(["--progress-file", str(progress)] if progress else [])]  # fmt: skip


def _env(root: Path) -> dict[str, str]:
    return os.environ | CHILD_ENV | {"MUSEGEN_MODELS_DIR": str(root / "shipped"),
                                     "MUSEGEN_USER_MODELS_DIR": str(root / "user")}  # fmt: skip


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file of the models folders but the user folder's hidden entries (lock, resume points,
    folders being written) and the new version."""
    found = {}
    for path in sorted((root / "shipped").rglob("*")) + sorted((root / "user").rglob("*")):
        top = path.relative_to(root).parts[1]
        if path.is_file() and not (path.is_relative_to(root / "user") and (top.startswith(".") or top == VERSION)):
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def resume_step(root: Path) -> int | None:
    """The step of the run's resume point (None: there is none)."""
    for state in (root / "user").glob(".finetune-*.resume/resume.json"):
        return int(json.loads(state.read_text())["step"])
    return None


def version_state(root: Path) -> str:
    """The new version as the registry sees it: "absent", "complete" (loads, lineage recorded) or "partial"."""
    from musegen_core.errors import CheckpointError
    from musegen_core.models import checkpoint, registry

    with models_env(root):
        if VERSION not in {info.name for info in registry.list_models()}:
            return "absent"
        try:
            loaded = checkpoint.load_checkpoint(root / "user" / VERSION)
        except CheckpointError:
            return "partial"
    return "complete" if loaded.meta.get("lineage", {}).get("parent") else "partial"


def active_model_loads(root: Path) -> bool:
    from musegen_core.models import registry

    with models_env(root):
        if registry.resolve_model_name("lstm") != "tiny-v2":
            return False
        registry.load_model("lstm")
    return True


@dataclass
class Attempt:
    """One start of the fine-tune: killed after `delay_s`, or ended on its own with `exit_code`."""

    resumed_from: int | None
    delay_s: float
    killed: bool
    exit_code: int
    error: str = ""  # the end of its stderr when it failed on its own
    files_changed: int = 0  # files of the models folders that differ from before
    version: str = "absent"
    active_model_loads: bool = True
    resume_point_after: int | None = None


def start_run(root: Path, steps: int, save_every: int, delay: float | None, after_step: int | None = None) -> Attempt:
    """Start the fine-tune (with --resume when there is a resume point) and SIGKILL it `delay` seconds later (None:
    let it end), counted from its start or, with `after_step`, from when its resume point reached that step."""
    resumed = resume_step(root)
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(finetune_command(root, steps, save_every, resumed is not None), env=_env(root),
                                 cwd=root, stdout=subprocess.DEVNULL, stderr=errors)  # fmt: skip
        killed = _kill_later(root, child, delay, after_step)
        errors.seek(0)
        tail = errors.read().decode(errors="replace").replace("\r", "\n").strip().splitlines()[-1:]
    failed = not killed and child.returncode != 0
    return Attempt(resumed, round(delay or 0.0, 3), killed, child.returncode, tail[0] if failed and tail else "")


def _kill_later(root: Path, child: subprocess.Popen, delay: float | None, after_step: int | None) -> bool:
    """Whether `child` was killed (False: it ended first)."""
    while after_step is not None and (resume_step(root) or 0) < after_step:
        if child.poll() is not None:
            return False
        time.sleep(0.01)
    try:
        child.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        return True


def reference_run(root: Path, steps: int, save_every: int) -> tuple[str, float, float]:
    """An uninterrupted run in a copy of the folders: (weights sha256, seconds to its first progress report, total
    seconds)."""
    from musegen_core.models import checkpoint

    progress = root / "progress.json"
    child = subprocess.Popen(finetune_command(root, steps, save_every, False, progress), env=_env(root), cwd=root,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    start = time.perf_counter()
    first = None
    while child.poll() is None:
        if first is None and progress.exists():
            first = time.perf_counter() - start
        time.sleep(0.01)
    total = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"the uninterrupted fine-tune failed (exit code {child.returncode})")
    return checkpoint.read_meta(root / "user" / VERSION)["sha256"], first or total, total


def finetune_kills(
    workdir: Path, kills: int, steps: int, save_every: int, seed: int, after_resume_point: bool = False
) -> dict[str, Any]:
    """Kill the fine-tune `kills` times, resume it each time, finish it, compare the weights.

    Kill moments: `kills` sorted moments drawn uniformly over an uninterrupted run's time line (start-up, training,
    saving), each placed in the start that reaches it: a start resumed from step r skips the stretch of the time
    line up to step r, so the kills spread over the whole run instead of piling up in start-ups. With
    `after_resume_point`, each kill comes instead within one resume interval after the start's first new resume
    point (so that every kill has progress to resume from)."""
    from musegen_core.models import checkpoint

    started = time.perf_counter()
    root, reference = workdir / "finetune", workdir / "finetune-reference"
    finetune_setup(root)
    shutil.copytree(root, reference)
    expected, startup, total = reference_run(reference, steps, save_every)
    rng = random.Random(seed)
    moments = sorted(rng.uniform(0, total) for _ in range(kills))
    before, attempts = snapshot(root), []
    while len(attempts) < kills and version_state(root) == "absent" and not _failed(attempts):
        done = resume_step(root) or 0
        if after_resume_point:
            delay, after = rng.uniform(0, (total - startup) * save_every / steps), done + save_every
        else:
            skipped = (total - startup) * done / steps  # the reference's time spent on the steps already done
            moment = moments[len(attempts)]
            delay, after = (moment if moment < startup else max(startup, moment - skipped)), None
        attempts.append(start_run(root, steps, save_every, delay, after))
        _after_attempt(root, before, attempts[-1])
    if version_state(root) == "absent" and not _failed(attempts):
        attempts.append(start_run(root, steps, save_every, None))
        _after_attempt(root, before, attempts[-1])
    final = version_state(root)
    weights = checkpoint.read_meta(root / "user" / VERSION)["sha256"] if final == "complete" else None
    return {
        "steps": steps, "save_every": save_every, "uninterrupted_seconds": round(total, 2),
        "kills": sum(a.killed for a in attempts), "attempts": [asdict(a) for a in attempts],
        "files_changed": sum(a.files_changed for a in attempts),
        "partial_versions_seen": sum(a.version == "partial" for a in attempts),
        "active_model_always_loaded": all(a.active_model_loads for a in attempts),
        "failed_starts": [a.error for a in attempts if _failed([a])],
        "final_version": final, "same_weights_as_uninterrupted": weights == expected,
        "seconds": round(time.perf_counter() - started, 2),
    }  # fmt: skip


def _failed(attempts: list[Attempt]) -> bool:
    """Whether the last start ended on its own with an error (a refused --resume, say)."""
    return bool(attempts) and not attempts[-1].killed and attempts[-1].exit_code != 0


def _after_attempt(root: Path, before: dict[str, str], attempt: Attempt) -> None:
    after = snapshot(root)
    attempt.files_changed = sum(after.get(path) != digest for path, digest in before.items())
    attempt.files_changed += len(after.keys() - before.keys())
    attempt.version = version_state(root)
    attempt.active_model_loads = active_model_loads(root)
    attempt.resume_point_after = resume_step(root)


# ---------------------------------------------------------------------------------------------------------------
# Tables and the command line


def _ms(value: float) -> str:
    return f"{value:.1f}"


def concurrency_table(results: list[dict]) -> str:
    head = ("| backend | mode | raters × ratings | written | lost | duplicated | damaged | unexpected | "
            "'database is locked' | other errors | p50 ms | p95 ms | max ms | adds ≥ 5 s | seconds |")  # fmt: skip
    lines = [head, "|" + " --- |" * 2 + " ---: |" * 13]
    for r in results:
        lines.append(f"| {r['backend']} | {r['mode']} | {r['raters']} × {r['ratings_per_rater']} | "
                     f"{r['ratings_written']} | {r['ratings_lost']} | {r['ratings_duplicated']} | "
                     f"{r['ratings_damaged']} | {r['ratings_unexpected']} | {r['database_locked']} | "
                     f"{r['other_errors']} | {_ms(r['p50_ms'])} | {_ms(r['p95_ms'])} | {_ms(r['max_ms'])} | "
                     f"{r['adds_over_busy_timeout']} | {r['seconds']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def kill_table(results: list[dict]) -> str:
    head = ("| backend | writer killed | committed (reported) | lost | duplicated | damaged | unexpected | "
            "unreported commit kept | consistency | next write ms |")  # fmt: skip
    lines = [head, "|" + " --- |" * 2 + " ---: |" * 5 + " --- | --- | ---: |"]
    for r in results:
        lines.append(f"| {r['backend']} | {r['case']} | {r['committed_reported']} | {r['ratings_lost']} | "
                     f"{r['ratings_duplicated']} | {r['ratings_damaged']} | {r['ratings_unexpected']} | "
                     f"{'yes' if r['unreported_commit_present'] else 'no'} | {r['consistency']} | "
                     f"{_ms(r['write_after_kill_ms'])} |")  # fmt: skip
    return "\n".join(lines)


def finetune_table(result: dict) -> str:
    lines = [
        "| start | resumed from step | killed after s | exit | models files changed | new version | "
        "active model loads | resume point after |",
        "| ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for k, a in enumerate(result["attempts"], 1):
        lines.append(f"| {k} | {a['resumed_from'] if a['resumed_from'] is not None else '—'} | "
                     f"{a['delay_s'] if a['killed'] else '—'} | {a['exit_code']} | {a['files_changed']} | "
                     f"{a['version']} | {'yes' if a['active_model_loads'] else 'NO'} | "
                     f"{a['resume_point_after'] if a['resume_point_after'] is not None else '—'} |")  # fmt: skip
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raters", type=int, default=30, help="concurrent raters")
    parser.add_argument("--ratings", type=int, default=100, help="ratings per rater")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma list: sqlite, postgresql")
    parser.add_argument("--modes", default="threads,processes", help="comma list: threads, processes")
    parser.add_argument("--kills", type=int, default=8, help="SIGKILLs of the fine-tune (0: skip that part)")
    parser.add_argument("--finetune-steps", type=int, default=1500, help="steps of the killed fine-tune")
    parser.add_argument("--save-every", type=int, default=50, help="steps between its resume points (CLI default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--json", default=str(RESULTS), help="where to write the results")
    return parser.parse_args(argv)


@contextlib.contextmanager
def databases(backends: list[str], workdir: Path) -> Iterator[Callable[[str], str]]:
    """A function giving a fresh database URL per backend (a throwaway PostgreSQL server for the block)."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(_pg.server()) if "postgresql" in backends else None
        numbers = itertools.count(1)

        def fresh(backend: str) -> str:
            if backend == "sqlite":
                return f"sqlite:///{workdir / f'feedback-{next(numbers)}.sqlite3'}"
            return server.new_database()  # type: ignore[union-attr]

        yield fresh


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "pg_bin": str(_pg.bindir())}  # fmt: skip


def bench(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    options = {k: v for k, v in vars(args).items() if k != "json"}
    result: dict[str, Any] = {"created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "options": options}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="musegen-durability-") as tmp, databases(backends, Path(tmp)) as fresh:
        result["results"] = [concurrent_run(fresh(b), b, m, args.raters, args.ratings) for b in backends for m in modes]
        print(concurrency_table(result["results"]), "\n", flush=True)
        result["sigkill"] = [{"backend": b} | kill_writer(fresh(b), Path(tmp), args.seed + k, in_transaction)
                             for b in backends for k, in_transaction in enumerate((False, True))]  # fmt: skip
        print(kill_table(result["sigkill"]), "\n", flush=True)
        if args.kills:
            result["finetune_kill"] = finetune_kills(Path(tmp), args.kills, args.finetune_steps, args.save_every,
                                                     args.seed)  # fmt: skip
            print(finetune_table(result["finetune_kill"]), "\n", flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def worker(argv: list[str]) -> int:
    """The child processes' entry: `worker rate URL RUN RATER COUNT` or `worker loop URL RUN REPORT HANG_AT`."""
    {"rate": _worker_rate, "loop": _worker_loop}[argv[0]](*argv[1:])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        return worker(argv[1:])
    args = parse(argv)
    result = bench(args)
    ft = result.get("finetune_kill")
    if ft:
        print(f"fine-tune: {ft['kills']} kills, final version {ft['final_version']}, same weights as uninterrupted: "
              f"{ft['same_weights_as_uninterrupted']}, {ft['seconds']} s")  # fmt: skip
    print(f"total {result['seconds']} s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
