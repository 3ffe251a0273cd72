"""The upload path run in this process, for fuzzing and for the no-code-from-data checks: `run_upload` opens a
file and loads every tune exactly as the app's reading worker does (`formats.open_music_file` + `.load`), under a
wall-clock limit (SIGALRM) and an address-space limit, and classifies what happened instead of raising.

In-process on purpose: the app's workers (`musegen_core.workers`) turn a hang, a blow-up or an unexpected exception
into one polite message, which would hide the very bugs fuzzing looks for. tests/test_conformance.py checks the real
path, through the workers. `message_problems` is the shared test of a refusal message.
"""

from __future__ import annotations

import contextlib
import re
import resource
import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from musegen_core.errors import MusegenError
from musegen_core.formats import open_music_file
from musegen_core.music import Piece

HANG_SECONDS = 10.0
HANG_REPEAT_SECONDS = 0.25
MEMORY_BUDGET_BYTES = 2 * 2**30  # address space one upload may add (MuseGen's reading workers get 1.5 GB in all)
FAILURES = ("crash", "hang", "memory")  # verdicts that are bugs whatever the file
PYTHON_INTERNALS = re.compile(
    r"Traceback \(most recent|File \"[^\"]*\", line \d|\w(Error|Exception|Warning)\(|\b[A-Z]\w*(Error|Exception)\b"
    r"|<[A-Za-z_]\w*(\.\w+)+[ >]|object at 0x|\bNoneType\b|object has no attribute|not enough values to unpack"
    r"|too many values to unpack|could not convert|invalid literal for|index out of range|unsupported operand"
    r"|is not subscriptable|is not iterable|unhashable type|division by zero|positional argument"
    r"|unexpected keyword|maximum recursion depth|'\w+' object"
)
SENTENCE = re.compile(r"\b[A-Z][\w'-]*(\s+\S+){2,}")  # a capitalised word and two more


def upload_path(data: bytes, name: str) -> list[Piece | MusegenError]:
    """What the upload page does with a file: open it, then load each of its tunes.

    Returns one entry per tune: the `Piece`, or the `MusegenError` that tune was refused with.

    Raises:
        MusegenError: the file as a whole is refused.
    """
    music_file = open_music_file(data, name)
    tunes: list[Piece | MusegenError] = []
    for index in range(len(music_file.tune_titles)):
        try:
            tunes.append(music_file.load(index))
        except MusegenError as error:
            tunes.append(error)
    return tunes


class Hang(BaseException):
    """Raised by `time_limit`; a BaseException, so that no `except Exception` boundary turns it into a refusal."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `Hang` in the main thread after `seconds` of wall-clock time (SIGALRM), and again every
    `HANG_REPEAT_SECONDS` until the block ends: a handler's exception raised inside a garbage-collector callback or
    a `__del__` is printed and dropped, so one alarm is not enough. A timer already running (pytest-timeout's) is
    restored afterwards with the time it had left."""

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds:g} s")

    started = time.monotonic()
    outer_handler = signal.signal(signal.SIGALRM, expire)
    outer_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds, HANG_REPEAT_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_delay:
            signal.setitimer(signal.ITIMER_REAL, max(outer_delay - (time.monotonic() - started), 0.001))


@dataclass(frozen=True)
class Outcome:
    """What the upload path did with one file."""

    verdict: str  # "loaded" (every tune), "partly refused", "refused", or one of FAILURES
    seconds: float
    tunes: tuple[int | str, ...] = ()  # per tune: its note count, or the message it was refused with
    refusal: str = ""  # the message the whole file was refused with
    crash: str = ""  # a failure: the exception, its message and where it was raised
    site: str = ""  # a failure: the exception type and where it was raised (what tells two bugs apart)
    pieces: tuple[Piece, ...] = field(default=(), repr=False, compare=False)

    @property
    def messages(self) -> list[str]:
        """Every refusal message: the file's, or its refused tunes'."""
        return [self.refusal] if self.refusal else [tune for tune in self.tunes if isinstance(tune, str)]


def run_upload(data: bytes, name: str) -> Outcome:
    """`upload_path` under `time_limit(HANG_SECONDS)` and `memory_limit(MEMORY_BUDGET_BYTES)`, with any exception
    classified instead of raised."""
    started = time.perf_counter()
    try:
        with memory_limit(MEMORY_BUDGET_BYTES), time_limit(HANG_SECONDS):
            tunes = upload_path(data, name)
    except Hang as hang:
        return _failure("hang", started, hang)
    except MusegenError as error:
        exhausted = _memory_error(error)
        if exhausted:
            return _failure("memory", started, exhausted)
        return Outcome("refused", time.perf_counter() - started, refusal=str(error))
    except Exception as error:  # the finding itself: every other exception is a crash
        return _failure("crash", started, error)
    for tune in tunes:
        exhausted = _memory_error(tune) if isinstance(tune, MusegenError) else None
        if exhausted:
            return _failure("memory", started, exhausted)
    pieces = tuple(tune for tune in tunes if isinstance(tune, Piece))
    summary = tuple(tune.note_count if isinstance(tune, Piece) else str(tune) for tune in tunes)
    verdict = "loaded" if len(pieces) == len(tunes) else "refused" if not pieces else "partly refused"
    return Outcome(verdict, time.perf_counter() - started, tunes=summary, pieces=pieces)


def _failure(verdict: str, started: float, error: BaseException) -> Outcome:
    site = where(error) if verdict == "hang" else f"{type(error).__name__} at {where(error)}"
    return Outcome(verdict, time.perf_counter() - started, crash=describe_crash(error), site=site)


def _memory_error(error: BaseException) -> MemoryError | None:
    """The MemoryError a refusal was made from (an `except Exception` boundary turns one into a `FormatError`)."""
    cause = error.__cause__ or error.__context__
    for _ in range(20):  # a chain of causes is short; the bound only guards against a cycle
        if cause is None or isinstance(cause, MemoryError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


@contextlib.contextmanager
def memory_limit(extra_bytes: int) -> Iterator[None]:
    """Cap this process's address space at its current size plus `extra_bytes` for the block (RLIMIT_AS), so that
    a runaway allocation raises MemoryError instead of calling in the machine's OOM killer. Linux only (/proc);
    elsewhere the block runs unlimited."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = int(statm.read_text().split()[0]) * resource.getpagesize() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def describe_crash(error: BaseException) -> str:
    """The crash as "Type: message (where)", e.g. "KeyError: 'x' (musegen_core/formats/abc.py:88 split_tunes)"."""
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]} ({where(error)})"


def where(error: BaseException) -> str:
    """The innermost frame in MuseGen's own code and, when deeper, the innermost frame of all (this file's left out)."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename != __file__]
    if not frames:
        return "no traceback"
    ours = [frame for frame in frames if "musegen_core" in frame.filename]
    shown = dict.fromkeys(f"{_short(frame.filename)}:{frame.lineno} {frame.name}" for frame in (*ours[-1:], frames[-1]))
    return " → ".join(shown)


def _short(filename: str) -> str:
    """A path from the package it belongs to: "musegen_core/formats/abc.py", "music21/converter/__init__.py"."""
    for anchor in ("musegen_core/", "site-packages/", "python3.11/"):
        if anchor in filename:
            return filename[filename.index(anchor) :].removeprefix("site-packages/").removeprefix("python3.11/")
    return filename


def message_problems(message: str) -> list[str]:
    """What keeps a refusal message from being one human line that says what to do (empty list: nothing)."""
    problems = []
    if not message.strip():
        problems.append("empty message")
    if "\n" in message or "\r" in message:
        problems.append("more than one line")
    if not (SENTENCE.search(message) and message.rstrip().endswith((".", "!", "?"))):
        problems.append("not a sentence (capitalised words ending in . ! or ?)")
    leak = PYTHON_INTERNALS.search(message)
    if leak:
        problems.append(f"Python internals in the message ({leak.group(0)!r})")
    return problems
