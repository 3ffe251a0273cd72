"""Coverage-guided fuzzing of the upload loaders with atheris (libFuzzer), one loader at a time.

    .venv/bin/python bench/atheris_fuzz.py [--loader abc,midi] [--runs 10000] [--max-seconds 240]
        [--out bench/results/atheris.json] [--crashes DIR] [--self-test]

Each loader (midi, musicxml, mxl, abc; all of them by default) is fuzzed in processes of its own: libFuzzer ends
its process when it is done or on the first finding, and atheris' instrumentation lives in the process that
imported the code. Every input goes through `upload_path` (tests/upload_harness.py: `open_music_file` + `.load` of
every tune) under a file name with the loader's extension, under `memory_limit`, and must load as pieces that pass
`test_fuzz.piece_problem` or be refused with a `MusegenError` whose message passes `message_problems`. Anything else
is a finding, saved by libFuzzer in --crashes DIR/<loader>/ as crash-<sha1>: any other exception (a crash), a
MemoryError (a refusal made of one included), a bad message or an invalid piece (raised as `Finding`), or an input
still running after 8 s (a hang: `Watchdog` raises `Hang` at 0.8 of libFuzzer's `-timeout=10`, so that the hang has
a site). libFuzzer itself saves timeout-<sha1> for a hang no Python exception interrupts (in C code), and oom-<sha1>
past `-rss_limit_mb=2560`.

After a finding, the loader's fuzzing goes on in a new process from the corpus grown so far, for the runs and
seconds left, told the sites found so far (an input failing at a known site then counts as refused), so that each
distinct bug is reported once (a known hang still costs its 8 s whenever an input reaches it again); a loader stops
after `MAX_FINDINGS` distinct findings or `MAX_PROCESSES` processes. The runs are libFuzzer's executed units, summed
over the processes (each new process first reruns the corpus); coverage is libFuzzer's last "cov:" (edges) and "ft:"
(features) of the loader's last process. Prints a Markdown table and writes bench/results/atheris.json.

Instrumented (`INSTRUMENTED`): musegen_core and, per loader, the third-party code its inputs spend their time in:
mido (midi), music21.musicxml (musicxml, mxl), music21.abcFormat (abc); the rest of music21 is left out (`left_out`).
Measured on abc (400 runs, same seed and corpus, 2-CPU machine): that choice imports in 1.2 s and runs 40 inputs/s;
all of music21 instrumented imports in 22 s and runs 8 inputs/s (more edges to steer by, five times fewer inputs).
zipfile and ElementTree are standard library, imported before the hook (and ElementTree parses in C).

Seeds (a temporary folder per loader): MuseGen's own MIDI and MusicXML seeds of tests/test_fuzz.py, a song written
as `.mxl` (deflated and stored), a few hand-written ABC tunes, tests/data/three_tunes.abc, and the files of
tests/data/fuzz/ and tests/data/corrupted/ with the loader's extensions. Each loader gets a libFuzzer dictionary of
its format's tokens (ABC fields and symbols, MusicXML tag names, MIDI chunk and event bytes).

--self-test fuzzes `planted_bugs` instead, a tiny function with a crash behind one byte prefix and a hang behind
another, to show that this machinery finds, tells apart and saves both (tests/test_atheris.py runs it).
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import datetime
import hashlib
import importlib.metadata
import importlib.util
import io
import itertools
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
RESULTS = Path(__file__).resolve().parent / "results" / "atheris.json"
EXTENSIONS = {  # loader: the upload's file name, and the extensions of the test files that seed it
    "midi": ("fuzz.mid", (".mid", ".midi", ".kar")),
    "musicxml": ("fuzz.musicxml", (".musicxml", ".xml")),
    "mxl": ("fuzz.mxl", (".mxl",)),
    "abc": ("fuzz.abc", (".abc",)),
}
SELF_TEST = "self-test"
INSTRUMENTED = {
    "midi": ("musegen_core", "mido"),
    "musicxml": ("musegen_core", "music21.musicxml"),
    "mxl": ("musegen_core", "music21.musicxml"),
    "abc": ("musegen_core", "music21.abcFormat"),
    SELF_TEST: (),
}
HANG_SECONDS = 10
HANG_REPEAT_SECONDS = 0.25
HANG_FRAMES = 5  # library frames below MuseGen's innermost that tell one hang from another
SOFT_TIMEOUT_SHARE = 0.8  # of `-timeout`: where `Watchdog` raises `Hang` (libFuzzer checks every timeout/2 + 1 s)
WATCHDOG_SIGNAL = signal.SIGWINCH  # one libFuzzer leaves alone, and no one sends to a process without a terminal
RSS_LIMIT_MB = 2560
MAX_FINDINGS = 8  # distinct ones per loader; each finding restarts libFuzzer, which reruns the whole corpus
MAX_PROCESSES = 12  # per loader: a hang cannot be passed over as known, so the same one may be found again
STARTUP_GRACE_SECONDS = 120  # imports and the corpus rerun, on top of -max_total_time, before a worker is killed
MARKER = "ATHERIS-FINDING "  # a worker's stderr line announcing a finding, JSON after it
sys.path.insert(0, str(TESTS))  # upload_harness and test_fuzz (imported once a worker has instrumented MuseGen)
ABC_TUNES = (
    "X:1\nT:Reel\nM:4/4\nL:1/8\nQ:1/4=120\nK:G\n|:GABc dedB|dBGB AcBA|(3GAB cA B2 AG|1 FGAF G4:|2 FGAF G2z2|]\n",
    "X:2\nT:Slip\nM:9/8\nL:1/8\nK:Ador\n~A3 BAG E2D|[CEA]2 ^c _B=B c- c2z|[M:6/8] e/f/g a>b|[K:Bb] B,, c'|]\n",
    'X:3\nT:Air\nM:3/4\nL:1/4\nK:Dm clef=bass\nV:1\n"Dm"D2 F|{g}A3-|A z2|\nV:2\nD,3|z3|]\nW:words\n',
)
MIDI_TOKENS = (b"MThd", b"MTrk", b"\x00\x00\x00\x06", b"\xff\x2f\x00", b"\xff\x51\x03", b"\xff\x58\x04",
               b"\xff\x59\x02", b"\xff\x03", b"\xf0", b"\xf7", b"\x90", b"\x80", b"\x99", b"\xc0", b"\xb0")  # fmt: skip
MXL_TOKENS = (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"mimetype", b"META-INF/container.xml",
              b"application/vnd.recordare.musicxml", b"full-path=", b"<rootfile ")  # fmt: skip


class Finding(Exception):
    """A problem that is no exception of its own (a bad refusal message, an invalid piece, a refusal made of a
    MemoryError), raised so that libFuzzer saves the input; `site` tells distinct problems apart."""

    def __init__(self, kind: str, site: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.site, self.detail = kind, site, detail


# --- the worker: one libFuzzer process ------------------------------------------------------------------------------


def planted_bugs(data: bytes) -> None:
    """The --self-test target: a crash behind one 4-byte prefix, a hang behind another."""
    if data[:4] == b"BUG!":
        raise LookupError("planted bug")
    if data[:4] == b"HANG":
        while True:
            time.sleep(0.01)


def upload_check(loader: str) -> Callable[[bytes], None]:
    """The check of one input for `loader`: raises on a finding, returns on a loaded or properly refused file.
    Imports MuseGen: call it only after the instrumented imports."""
    from test_fuzz import piece_problem
    from upload_harness import MEMORY_BUDGET_BYTES, _memory_error, memory_limit, message_problems, upload_path, where

    from musegen_core.errors import MusegenError

    name = EXTENSIONS[loader][0]

    def refusal_finding(error: MusegenError) -> Finding | None:
        exhausted = _memory_error(error)
        if exhausted:
            return Finding("memory", f"MemoryError at {where(exhausted)}", str(exhausted))
        problems = message_problems(str(error))
        if problems:
            detail = f"{'; '.join(problems)}: {str(error)[:300]!r}"
            return Finding("bad message", where(error), detail)  # one finding a raise site, whatever the text
        return None

    def check(data: bytes) -> None:
        with memory_limit(MEMORY_BUDGET_BYTES):
            try:
                tunes: list[Any] = upload_path(data, name)
            except MusegenError as error:
                tunes = [error]
            for tune in tunes:
                finding = refusal_finding(tune) if isinstance(tune, MusegenError) else None
                problem = None if isinstance(tune, MusegenError) else piece_problem(tune)
                if problem:
                    finding = Finding("invalid piece", f"invalid piece: {problem.split(':')[0]}", problem)
                if finding:
                    raise finding

    return check


class Watchdog:
    """A soft time limit per input, below libFuzzer's `-timeout`: past it, `Hang` is raised in the main thread
    (and again every `HANG_REPEAT_SECONDS`, as `upload_harness.time_limit` does), so that a hang has a site and a
    known one can be passed over like a known crash. A thread of its own watches the clock and interrupts the main
    thread with `_thread.interrupt_main(WATCHDOG_SIGNAL)`: SIGALRM is libFuzzer's. A hang in C code, which no
    Python exception interrupts, is left to libFuzzer's timeout."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = math.inf
        signal.signal(WATCHDOG_SIGNAL, self._expire)
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(0.1)
            if time.monotonic() > self.deadline:
                _thread.interrupt_main(WATCHDOG_SIGNAL)
                time.sleep(HANG_REPEAT_SECONDS)

    def _expire(self, signum: int, frame: object) -> None:
        from upload_harness import Hang

        if time.monotonic() > self.deadline:  # a real SIGWINCH, early, is ignored
            raise Hang(f"still running after {self.seconds:g} s")

    @contextlib.contextmanager
    def limit(self) -> Iterator[None]:
        self.deadline = time.monotonic() + self.seconds
        try:
            yield
        finally:
            self.deadline = math.inf


def guarded(
    check: Callable[[bytes], None], known: set[str], watchdog: Watchdog, artifacts: Path
) -> Callable[[bytes], None]:
    """libFuzzer's one-input function: `check` under the `watchdog`, with a failure at a `known` site passed over
    and a new one saved as `artifacts`/crash-<sha1> (libFuzzer's name for it: a hang included) and announced on
    stderr (`MARKER`) before it propagates, for atheris to print it and libFuzzer to end the process.

    Saved here, and SIGALRM ignored from then on, because libFuzzer's timeout timer keeps ticking while it handles
    the exception, and one tick there ends the process (SIGALRM's default action) before it saves anything."""
    from upload_harness import Hang

    def one_input(data: bytes) -> None:
        try:
            with watchdog.limit():
                check(data)
        except (Exception, Hang) as error:
            finding = as_finding(error)
            if finding.site in known:
                return
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
            name = f"crash-{hashlib.sha1(data).hexdigest()}"
            (artifacts / name).write_bytes(data)
            announcement = {"kind": finding.kind, "site": finding.site, "detail": finding.detail, "file": name}
            print(MARKER + json.dumps(announcement, ensure_ascii=False), file=sys.stderr, flush=True)
            raise

    return one_input


def as_finding(error: BaseException) -> Finding:
    """A failure of the check as a `Finding`, its site as `upload_harness.run_upload` gives it."""
    from upload_harness import Hang, describe_crash, where

    if isinstance(error, Finding):
        return error
    if isinstance(error, MemoryError):
        return Finding("memory", f"MemoryError at {where(error)}", describe_crash(error))
    if isinstance(error, Hang):
        stack = traceback.extract_tb(_cut_handler(error).__traceback__)
        return Finding("hang", hang_site([(frame.filename, frame.lineno, frame.name) for frame in stack]), str(error))
    return Finding("crash", f"{type(error).__name__} at {where(error)}", describe_crash(error))


def hang_site(frames: list[tuple[str, int | None, str]]) -> str:
    """Where a hang was, from its stack (outermost frame first): the innermost frame in MuseGen's code and the
    first `HANG_FRAMES` frames below it, or the innermost frame of all when none is MuseGen's. Not the innermost
    frame, as `upload_harness.where` gives: where the interruption lands in one long computation varies."""
    from upload_harness import _short

    ours = [index for index, (path, _, _) in enumerate(frames) if "musegen_core" in path]
    shown = frames[ours[-1] : ours[-1] + 1 + HANG_FRAMES] if ours else frames[-1:]
    return " → ".join(f"{_short(path)}:{line} {name}" for path, line, name in shown)


def _cut_handler(hang: BaseException) -> BaseException:
    """`hang` without the last frame of its traceback, `Watchdog._expire`'s, which raised it: where the main thread
    was is the frame before."""
    last = hang.__traceback__
    while last and last.tb_next and last.tb_next.tb_next:
        last = last.tb_next
    if last and last.tb_next and last.tb_next.tb_frame.f_code is Watchdog._expire.__code__:
        last.tb_next = None
    return hang


def left_out(wanted: tuple[str, ...]) -> list[str]:
    """The modules of the packages of `wanted` that are not in `wanted` (nor below it), found on disk.

    `atheris.instrument_imports(include=...)` takes whole top-level packages ("music21.abcFormat" instruments all of
    music21); its `exclude` takes exact module names: these."""
    names = []
    for package in sorted({name.split(".")[0] for name in wanted}):
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for path in Path(folder).rglob("*.py"):
                parts = path.relative_to(folder).with_suffix("").parts
                names.append(".".join((package, *parts[: -1 if parts[-1] == "__init__" else None])))
    return [name for name in names if not any(name == w or name.startswith(w + ".") for w in wanted)]


def run_worker(args: argparse.Namespace) -> None:
    """Fuzz one loader in this process until libFuzzer exits (it never returns)."""
    import warnings

    import atheris

    warnings.simplefilter("ignore")  # music21 and pretty_midi warn about most fuzzed files
    if args.instrument:
        with atheris.instrument_imports(include=args.instrument, exclude=left_out(args.instrument)):
            import musegen_core.formats  # noqa: F401 (imported here to be instrumented)
    check = atheris.instrument_func(planted_bugs) if args.worker == SELF_TEST else upload_check(args.worker)
    known = set(json.loads(args.known.read_text(encoding="utf-8"))) if args.known else set()
    flags = [
        f"-runs={args.runs}",
        f"-max_total_time={args.max_seconds}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-artifact_prefix={args.artifacts}/",
        f"-seed={args.seed}",
        "-print_final_stats=1",
        *([f"-dict={args.dict}"] if args.dict else []),
    ]
    watchdog = Watchdog(args.timeout * SOFT_TIMEOUT_SHARE)
    atheris.Setup([sys.argv[0], *flags, str(args.corpus)], guarded(check, known, watchdog, args.artifacts))
    atheris.Fuzz()


# --- seeds and dictionaries -----------------------------------------------------------------------------------------


def seed_files(loader: str) -> dict[str, bytes]:
    """A few valid files of the loader's format, and the test files with its extensions (see the docstring)."""
    if loader == SELF_TEST:
        return {"seed": b"MuseGen"}
    import test_fuzz

    from musegen_core.formats.musicxml import piece_to_mxl

    built: dict[str, bytes] = {}
    if loader == "midi":
        built = {f"seed{i}.mid": data for i, data in enumerate(test_fuzz._midi_seeds())}
    elif loader == "musicxml":
        built = {f"seed{i}.musicxml": data for i, data in enumerate(test_fuzz._musicxml_seeds())}
    elif loader == "mxl":
        built = {"song.mxl": piece_to_mxl(test_fuzz._song()), "waltz-stored.mxl": _stored_mxl(test_fuzz.DATA)}
    elif loader == "abc":
        built = {f"tune{i}.abc": tune.encode() for i, tune in enumerate(ABC_TUNES)}
    files = [path for folder in ("fuzz", "corrupted") for path in sorted((test_fuzz.DATA / folder).iterdir())]
    files += [test_fuzz.DATA / "three_tunes.abc"]
    built |= {f"{p.parent.name}-{p.name}": p.read_bytes() for p in files if p.suffix in EXTENSIONS[loader][1]}
    return {name: data for name, data in built.items() if data}


def _stored_mxl(data: Path) -> bytes:
    """The waltz as `.mxl` with every member stored, not deflated: mutations then reach the MusicXML inside."""
    container = b'<container><rootfiles><rootfile full-path="score.musicxml"/></rootfiles></container>'
    members = {"mimetype": b"application/vnd.recordare.musicxml", "META-INF/container.xml": container}
    members["score.musicxml"] = (data / "waltz.musicxml").read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def dictionary_tokens(loader: str, seeds: dict[str, bytes]) -> list[bytes]:
    """Tokens of the loader's format for libFuzzer's mutations (`-dict`)."""
    if loader == "midi":
        return list(MIDI_TOKENS)
    if loader == "abc":
        import test_fuzz

        fields = [f"{name}:{value}" for name, values in test_fuzz.ABC_FIELDS.items() for value in values]
        return sorted(token.encode() for token in {*fields, *test_fuzz.ABC_SYMBOLS} if token.strip())
    if loader in ("musicxml", "mxl"):
        tags = {tag for data in seeds.values() for tag in re.findall(rb"</?[A-Za-z][\w.-]*", data)}
        return sorted(tags) + (list(MXL_TOKENS) if loader == "mxl" else [])
    return []


def write_dictionary(path: Path, tokens: list[bytes]) -> None:
    """libFuzzer's dictionary format: one quoted token a line, other than printable ASCII escaped as \\xNN."""

    def quoted(token: bytes) -> str:
        return "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in token)

    path.write_text("".join(f'"{quoted(token)}"\n' for token in tokens), encoding="ascii")


# --- the parent: workers one after another --------------------------------------------------------------------------


@dataclass
class Attempt:
    """What one worker process did, read from libFuzzer's output."""

    runs: int = 0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    seconds: float = 0.0
    kind: str = ""  # a finding's kind: "crash", "hang", "memory", "bad message", "invalid piece"; "" when none
    site: str = ""
    detail: str = ""
    artifact: str = ""
    error: str = ""  # the worker failed without a finding (its output's tail)


@dataclass
class LoaderResult:
    runs: int = 0
    seconds: float = 0.0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    processes: int = 0
    seed_files: int = 0
    instrumented: tuple[str, ...] = ()
    findings: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        report = asdict(self)
        report["seconds"] = round(self.seconds, 1)
        report["exec_per_s"] = round(self.runs / self.seconds, 1) if self.seconds else 0.0
        report["crashes"] = sum(1 for finding in self.findings if finding["kind"] != "hang")
        report["hangs"] = sum(1 for finding in self.findings if finding["kind"] == "hang")
        report["crash_files"] = [name for finding in self.findings for name in finding["files"]]
        return report


def parse_output(text: str) -> Attempt:
    """An `Attempt` from a worker's stdout and stderr (libFuzzer's status lines, final stats and artifact line)."""
    attempt = Attempt()
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text) or re.findall(r"^#(\d+)\s", text, re.M)
    attempt.runs = int(runs[-1]) if runs else 0  # the last status line's count, where the process ended early
    for cov, ft in re.findall(r"\bcov: (\d+) ft: (\d+)", text)[-1:]:
        attempt.cov, attempt.ft = int(cov), int(ft)
    for corpus in re.findall(r"\bcorp: (\d+)/", text)[-1:]:
        attempt.corpus = int(corpus)
    announced = [line for line in text.splitlines() if line.startswith(MARKER)]
    artifact = re.search(r"Test unit written to (\S+)", text)
    if announced:
        finding = json.loads(announced[-1].removeprefix(MARKER))
        attempt.kind, attempt.site, attempt.detail = finding["kind"], finding["site"], finding["detail"]
        attempt.artifact = finding["file"]
        return attempt
    if not artifact:
        return attempt
    attempt.artifact = artifact.group(1)
    prefix = Path(attempt.artifact).name.split("-")[0]
    if prefix == "timeout":
        attempt.kind, attempt.site = "hang", timeout_site(text)
        attempt.detail = next(iter(re.findall(r"ERROR: libFuzzer: (timeout[^\n]*)", text)), "timeout")
    elif prefix == "oom":
        attempt.kind, attempt.site = "memory", "libFuzzer out-of-memory (RSS)"
        attempt.detail = next(iter(re.findall(r"ERROR: libFuzzer: (out-of-memory[^\n]*)", text)), "")
    else:
        attempt.kind, attempt.site = "crash", "unannounced"
        attempt.detail = next(iter(re.findall(r"SUMMARY: libFuzzer: ([^\n]*)", text)), "")
    return attempt


def timeout_site(text: str) -> str:
    """`hang_site` from the Python stack atheris prints when libFuzzer's own timeout fires (a hang that `Watchdog`
    could not interrupt): the current thread's frames, most recent call first."""
    block = text.rsplit("=== Timeout:", 1)[-1].split("Current thread", 1)[-1]
    lines = itertools.takewhile(lambda line: line.startswith("  File"), block.splitlines()[1:])
    frames = [re.match(r'  File "([^"]+)", line (\d+) in (\S+)', line) for line in lines]
    stack = [(match[1], int(match[2]), match[3]) for match in frames if match]
    return hang_site(stack[::-1]) if stack else "no Python stack"


def start_worker(loader: str, args: argparse.Namespace, work: Path, runs: int, seconds: int, index: int) -> Attempt:
    """Run the `index`th worker process for `loader` and read what it did; its output goes to a log in `work`.
    Each process gets a seed of its own: with the same seed and corpus, libFuzzer would find the same input again."""
    log = work / f"{loader}-{index}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", loader, "--runs", str(runs)]
    command += ["--max-seconds", str(seconds), "--timeout", str(args.timeout), "--seed", str(args.seed + index)]
    command += ["--corpus", str(work / loader / "corpus"), "--artifacts", str(args.crashes / loader)]
    command += ["--known", str(work / loader / "known.json"), "--instrument", ",".join(INSTRUMENTED[loader])]
    dictionary = work / loader / "tokens.dict"
    command += ["--dict", str(dictionary)] if dictionary.exists() else []
    started = time.monotonic()
    with log.open("w", encoding="utf-8", errors="replace") as out:
        try:
            subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=seconds + STARTUP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            out.write(f"\nkilled: still running {seconds + STARTUP_GRACE_SECONDS} s after it started\n")
    text = log.read_text(encoding="utf-8", errors="replace")
    attempt = parse_output(text)
    attempt.seconds = time.monotonic() - started
    if not attempt.kind and "Done " not in text:
        attempt.error = f"no result (log {log}): " + " | ".join(text.strip().splitlines()[-6:])
    return attempt


def prepare(loader: str, work: Path, crashes: Path) -> int:
    """The loader's seed corpus, dictionary and empty list of known sites in `work`; returns the seed count."""
    corpus = work / loader / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    (crashes / loader).mkdir(parents=True, exist_ok=True)
    seeds = seed_files(loader)
    for name, data in seeds.items():
        (corpus / name).write_bytes(data)
    tokens = dictionary_tokens(loader, seeds)
    if tokens:
        write_dictionary(work / loader / "tokens.dict", tokens)
    (work / loader / "known.json").write_text("[]", encoding="utf-8")
    return len(seeds)


def fuzz_loader(loader: str, args: argparse.Namespace, work: Path) -> LoaderResult:
    """Fuzz `loader` for `args.runs` runs or `args.max_seconds`, restarting libFuzzer after each finding."""
    result = LoaderResult(instrumented=INSTRUMENTED[loader], seed_files=prepare(loader, work, args.crashes))
    sites: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    while len(sites) < MAX_FINDINGS and result.processes < MAX_PROCESSES and not result.errors:
        runs_left = args.runs - result.runs
        seconds_left = int(args.max_seconds - (time.monotonic() - started))
        if runs_left <= 0 or seconds_left < 1:
            break
        attempt = start_worker(loader, args, work, runs_left, seconds_left, result.processes)
        result.processes += 1
        result.runs += attempt.runs
        result.cov, result.ft, result.corpus = attempt.cov, attempt.ft, attempt.corpus
        print(f"  {loader}: {attempt.runs} runs, cov {attempt.cov}, ft {attempt.ft}", end="", flush=True)
        print(f"; {attempt.kind}: {attempt.site}" if attempt.kind else "", attempt.error, flush=True)
        if attempt.error:
            result.errors.append(attempt.error)
        if not attempt.kind:
            break
        entry = sites.setdefault(attempt.site, {"kind": attempt.kind, "site": attempt.site, "count": 0, "files": []})
        entry["count"] += 1
        entry.setdefault("detail", attempt.detail)
        entry["files"] = sorted({*entry["files"], Path(attempt.artifact).name})
        (work / loader / "known.json").write_text(json.dumps(sorted(sites)), encoding="utf-8")
    result.seconds = time.monotonic() - started
    result.findings = list(sites.values())
    return result


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| loader | runs | s | coverage | crashes | hangs |", "|---|---:|---:|---|---:|---:|"]
    for loader, result in results.items():
        coverage = f"cov {result['cov']}, ft {result['ft']}, corpus {result['corpus']}"
        lines.append(
            f"| {loader} | {result['runs']} | {result['seconds']} | {coverage} | {result['crashes']} "
            f"| {result['hangs']} |"
        )
    findings = [(loader, finding) for loader, result in results.items() for finding in result["findings"]]
    if findings:
        lines.append("\nFindings:")
    for loader, finding in findings:
        lines.append(f"- {loader}: {finding['kind']}: {finding['site']}")
        lines.append(f"  {finding['detail'][:240]}; files: {', '.join(finding['files'])}")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loader", default=",".join(EXTENSIONS), help="comma-separated: midi, musicxml, mxl, abc")
    parser.add_argument("--all", action="store_true", help="every loader (the default)")
    parser.add_argument("--self-test", action="store_true", help="fuzz a planted crash and hang instead")
    parser.add_argument("--runs", type=int, default=10_000, help="libFuzzer runs per loader")
    parser.add_argument("--max-seconds", type=int, default=240, help="wall-clock seconds per loader")
    parser.add_argument("--timeout", type=int, default=HANG_SECONDS, help="seconds after which an input hangs")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--crashes", type=Path, default=None, help="where libFuzzer saves findings (a temp folder)")
    hidden = argparse.SUPPRESS  # the worker's own options, set by `start_worker`
    parser.add_argument("--worker", default=None, help=hidden)
    for name, kind in (("--corpus", Path), ("--artifacts", Path), ("--known", Path), ("--dict", Path)):
        parser.add_argument(name, type=kind, default=None, help=hidden)
    parser.add_argument("--instrument", type=lambda text: tuple(filter(None, text.split(","))), default=(), help=hidden)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return 1  # not reached: libFuzzer exits the process
    loaders = [SELF_TEST] if args.self_test else list(EXTENSIONS) if args.all else args.loader.split(",")
    unknown = set(loaders) - set(INSTRUMENTED)
    if unknown:
        sys.exit(f"unknown loader(s): {', '.join(sorted(unknown))}; choose from {', '.join(EXTENSIONS)}")
    args.crashes = (args.crashes or Path(tempfile.mkdtemp(prefix="atheris-crashes-"))).resolve()
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="atheris-work-") as work:
        for loader in loaders:
            print(f"{loader}: fuzzing {args.runs} runs or {args.max_seconds} s", flush=True)
            results[loader] = fuzz_loader(loader, args, Path(work)).report()
    print(markdown(results))
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "atheris": importlib.metadata.version("atheris"),
        "runs_asked": args.runs,
        "max_seconds": args.max_seconds,
        "libfuzzer": {"timeout": args.timeout, "rss_limit_mb": RSS_LIMIT_MB, "seed": args.seed},
        "crashes_dir": str(args.crashes),
        "wall_seconds": round(time.monotonic() - started, 1),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}; findings in {args.crashes}")
    return 0 if not any(result["errors"] for result in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
