"""Every file of the shared conformance corpus (music files written by others, listed with their category in
`../shared/conformance/SOURCES.tsv`) through both ways a file enters MuseGen:

- the app's upload path: `workers.open_untrusted` and `workers.load_untrusted` for every tune, exactly what
  `ui.music_file` / `ui.load_tune` call (a reading worker process with time and memory limits);
- `musegen check FILE... --json`, one real `musegen` process for all files, each report timed as it arrives.

Each file must load or be refused with a human message (one line, a sentence, no Python internals), never crash,
hang or blow up a worker, and be answered within `HANG_SECONDS`. A file SOURCES.tsv marks `valid` must load with
the note count the file itself states (`expected_notes`, counted without MuseGen's readers), or be refused when it
states none. `pytest -s` prints the table; bench/conformance.py writes it to bench/results/conformance.json.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mido
import pytest
from upload_harness import FAILURES, HANG_SECONDS, Outcome, describe_crash, message_problems

from musegen_core.errors import MusegenError, WorkerError
from musegen_core.music import Piece
from musegen_core.workers import load_untrusted, open_untrusted

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"
NOT_MUSIC = ("README.md", "SOURCES.tsv")
WORKER_FAILURES = {"timeout": "hang", "cpu": "hang", "memory": "memory"}  # any other worker failure: "crash"


def conformance_files() -> list[Path]:
    if not CONFORMANCE.is_dir():
        return []
    return sorted(p for p in CONFORMANCE.rglob("*") if p.is_file() and p.name not in NOT_MUSIC)


@functools.cache
def categories() -> dict[str, str]:
    """SOURCES.tsv's category per file (path relative to the corpus): "valid", "edge" or "malformed"."""
    with (CONFORMANCE / "SOURCES.tsv").open(encoding="utf-8") as table:
        return {row["local_path"]: row["category"] for row in csv.DictReader(table, delimiter="\t")}


# --- the app's upload path ------------------------------------------------------------------------------------------


def app_upload(data: bytes, name: str) -> Outcome:
    """What the upload page does with a file (open it, load each tune, in reading workers), classified."""
    started = time.perf_counter()
    try:
        music_file = open_untrusted(data, name)
        tunes: list[Piece | MusegenError] = []
        for index in range(len(music_file.tune_titles)):
            try:
                tunes.append(load_untrusted(data, name, index))
            except WorkerError:
                raise
            except MusegenError as error:
                tunes.append(error)
    except WorkerError as error:
        verdict = WORKER_FAILURES.get(error.reason, "crash")
        return Outcome(verdict, time.perf_counter() - started, crash=f"{error.reason}: {error}", site=error.reason)
    except MusegenError as error:
        return Outcome("refused", time.perf_counter() - started, refusal=str(error))
    except Exception as error:  # the finding itself: anything else escaped the upload path
        return Outcome("crash", time.perf_counter() - started, crash=describe_crash(error))
    pieces = tuple(tune for tune in tunes if isinstance(tune, Piece))
    summary = tuple(tune.note_count if isinstance(tune, Piece) else str(tune) for tune in tunes)
    verdict = "loaded" if len(pieces) == len(tunes) else "refused" if not pieces else "partly refused"
    return Outcome(verdict, time.perf_counter() - started, tunes=summary, pieces=pieces)


# --- what the files themselves say ----------------------------------------------------------------------------------


def expected_notes(data: bytes, name: str) -> int | None:
    """The note count a file states, counted without MuseGen's readers; None where it cannot be told simply.

    MIDI: note-ons with velocity > 0 (drums included, as in `Piece.note_count`). MusicXML: pitched <note>s that are
    neither grace notes nor the stop of a tie (chord members count). ABC (one-tune files): note letters outside
    header fields, annotations and decorations.
    """
    suffix = Path(name).suffix.lower()
    try:
        if suffix in (".mid", ".midi", ".kar"):
            midi = mido.MidiFile(file=io.BytesIO(data))
            return sum(1 for track in midi.tracks for m in track if m.type == "note_on" and m.velocity > 0)
        if suffix in (".xml", ".musicxml", ".mxl"):
            return _musicxml_notes(ET.fromstring(_mxl_score(data) if suffix == ".mxl" else data))
    except Exception:  # the oracle cannot read it: no count to compare with
        return None
    if suffix == ".abc" and data.count(b"\nX:") + data.startswith(b"X:") == 1:
        return _abc_letters(data.decode("utf-8", errors="replace"))
    return None


def _mxl_score(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        scores = [n for n in archive.namelist() if n.endswith((".xml", ".musicxml")) and not n.startswith("META-INF")]
        return archive.read(scores[0])


def _musicxml_notes(root: ET.Element) -> int:
    return sum(
        1
        for note in root.iter("note")
        if note.find("pitch") is not None
        and note.find("grace") is None
        and not any(tie.get("type") == "stop" for tie in note.iter("tie"))
    )


def _abc_letters(text: str) -> int:
    music = (line for line in text.splitlines() if not re.match(r"[A-Za-z]:|%", line))
    return sum(len(re.findall(r"[A-Ga-g]", re.sub(r'"[^"]*"|![^!]*!', "", line))) for line in music)


# --- the checks -----------------------------------------------------------------------------------------------------


def upload_problems(outcome: Outcome, category: str | None, expected: int | None) -> list[str]:
    """Why the upload path's handling of one file is wrong (empty list: it is right)."""
    if outcome.verdict in FAILURES:
        return [f"{outcome.verdict}: {outcome.crash}"]
    problems = [f"{problem}: {message!r}" for message in outcome.messages for problem in message_problems(message)]
    if outcome.seconds > HANG_SECONDS:
        problems.append(f"answered after {outcome.seconds:.1f} s")
    if category == "valid":
        problems += _valid_file_problems(outcome, expected)
    return problems


def _valid_file_problems(outcome: Outcome, expected: int | None) -> list[str]:
    """A valid file must load with the notes it states, or be refused when it states none."""
    if expected == 0:
        return [] if outcome.verdict == "refused" else [f"a valid file without notes loaded: {outcome.tunes}"]
    if outcome.verdict != "loaded":
        return [f"a valid file was refused: {outcome.messages}"]
    if expected is not None and outcome.tunes != (expected,):
        return [f"a valid file loaded with {outcome.tunes} notes; the file states {expected}"]
    return []


@dataclass(frozen=True)
class CliReport:
    """`musegen check`'s JSON report on one file, and the seconds from the previous report (or the start)."""

    report: dict[str, Any]
    seconds: float


def run_cli_check(paths: list[Path]) -> tuple[dict[str, CliReport], subprocess.CompletedProcess[str]]:
    """`musegen check --json PATH...` in one fresh process; each line's report keyed by its "path", timed from the
    line before it (the first includes the process's start-up: its imports and the first reading worker)."""
    command = [sys.executable, "-m", "musegen_core.cli", "check", "--json", *map(str, paths)]
    reports: dict[str, CliReport] = {}
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        last = time.perf_counter()
        for line in process.stdout:
            now = time.perf_counter()
            report = json.loads(line)
            reports[report["path"]] = CliReport(report, now - last)
            last = now
        stderr = process.stderr.read() if process.stderr else ""
        process.wait(timeout=60)
    return reports, subprocess.CompletedProcess(command, process.returncode, "", stderr)


def cli_problems(result: CliReport | None, outcome: Outcome) -> list[str]:
    """Why `musegen check --json` mishandled a file (empty list: it did right): a report with `"ok": true` and the
    upload path's note count for tune 0, or `"ok": false` and the upload path's message, in time."""
    if result is None:
        return ["no report: musegen check stopped before this file"]
    report, problems = result.report, []
    if result.seconds > HANG_SECONDS:
        problems.append(f"answered after {result.seconds:.1f} s")
    first = outcome.refusal or (outcome.tunes[0] if outcome.tunes else "")
    if report["ok"]:
        if report.get("notes") != first:
            problems.append(f"check says {report.get('notes')} notes, upload {first!r}")
        return problems
    problems += [f"{problem}: {report.get('error')!r}" for problem in message_problems(str(report.get("error", "")))]
    if report.get("error") != " ".join(str(first).split()):
        problems.append(f"check refused with {report.get('error')!r}, upload gave {first!r}")
    return problems


def table_row(path: Path, outcome: Outcome, cli: CliReport | None) -> dict[str, Any]:
    """One line of the conformance table (what bench/results/conformance.json holds per file)."""
    relative = str(path.relative_to(CONFORMANCE))
    category = categories().get(relative)
    expected = expected_notes(path.read_bytes(), path.name)
    problems = upload_problems(outcome, category, expected)
    problems += [f"musegen check: {problem}" for problem in cli_problems(cli, outcome)]
    return {
        "file": relative,
        "category": category,
        "verdict": outcome.verdict,
        "seconds": round(outcome.seconds, 3),
        "cli_seconds": None if cli is None else round(cli.seconds, 3),
        "notes": [tune for tune in outcome.tunes if isinstance(tune, int)],
        "expected_notes": expected,
        "message": (outcome.crash or (outcome.messages or [""])[0])[:160],
        "problems": problems,
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| file | category | verdict | s | check s | notes | message |", "|---|---|---|---:|---:|---|---|"]
    for row in rows:
        notes = ",".join(map(str, row["notes"]))[:40]
        flag = " ⚠ " + "; ".join(row["problems"]) if row["problems"] else ""
        message = (str(row["message"]) + flag).replace("|", "\\|")
        lines.append(
            f"| {row['file']} | {row['category']} | {row['verdict']} | {row['seconds']} | {row['cli_seconds']} "
            f"| {notes} | {message} |"
        )
    return "\n".join(lines)


def conformance_table(paths: list[Path]) -> list[dict[str, Any]]:
    """Every file through the app's upload path and `musegen check`, one row each."""
    cli, _ = run_cli_check(paths)
    return [table_row(path, app_upload(path.read_bytes(), path.name), cli.get(str(path))) for path in paths]


# --- tests ----------------------------------------------------------------------------------------------------------

needs_corpus = pytest.mark.skipif(not CONFORMANCE.is_dir(), reason=f"conformance corpus not found at {CONFORMANCE}")


@pytest.fixture(scope="module")
def rows() -> Iterator[dict[str, dict[str, Any]]]:
    """The whole table (computed once), keyed by file; printed as Markdown after the module (`pytest -s`)."""
    table = conformance_table(conformance_files())
    yield {row["file"]: row for row in table}
    print("\n" + markdown_table(table))


@needs_corpus
@pytest.mark.parametrize("name", [str(p.relative_to(CONFORMANCE)) for p in conformance_files()])
def test_file_loads_or_is_refused_politely_in_time(name: str, rows: dict[str, dict[str, Any]]) -> None:
    assert rows[name]["problems"] == []


@needs_corpus
def test_corpus_matches_its_sources_table() -> None:
    listed = set(categories())
    present = {str(p.relative_to(CONFORMANCE)) for p in conformance_files()}
    assert present == listed, f"not in SOURCES.tsv: {present - listed}; missing: {listed - present}"


@needs_corpus
def test_one_file_check_is_the_same_report_without_a_path() -> None:
    path = CONFORMANCE / "webern_mx" / "testHello.xml"
    single = subprocess.run(
        [sys.executable, "-m", "musegen_core.cli", "check", str(path), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    several, done = run_cli_check([path, path])
    assert single.returncode == done.returncode == 0
    assert {"path": str(path), **json.loads(single.stdout)} == several[str(path)].report


def test_a_refused_file_does_not_stop_the_others(tmp_path: Path) -> None:
    empty, abc = tmp_path / "empty.mid", tmp_path / "tune.abc"
    empty.write_bytes(b"")
    abc.write_text("X:1\nT:Scale\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|\n")
    reports, done = run_cli_check([empty, abc])
    assert done.returncode == 1
    assert reports[str(empty)].report == {
        "ok": False,
        "path": str(empty),
        "error": "empty.mid is empty (0 bytes). Upload a .mid, .musicxml/.mxl or .abc file.",
    }
    assert reports[str(abc)].report["notes"] == 8


@pytest.mark.parametrize(
    "message",
    [
        "This MIDI file is damaged and cannot be read (EOFError).",
        "music21 could not read it (tPrev: <music21.abcFormat.ABCUpbow 'u'>). Upload another file.",
        "MuseGen could not read x.abc (not enough values to unpack (expected 2, got 1)). Upload another file.",
        "Bad file.\nTraceback (most recent call last):",
        "",
        "no sentence here",
    ],
)
def test_message_check_catches_python_text_and_non_sentences(message: str) -> None:
    assert message_problems(message)


def test_message_check_accepts_plain_messages() -> None:
    assert message_problems("x.mid holds no notes. Upload a file that contains a melody.") == []
    assert message_problems("This XML file is not MusicXML (its root element is <root-node>). Export it again.") == []
