"""Worker processes (`musegen_core.workers`): hangs, crashes, memory blow-ups and kills cost one message and the next
job works; nothing is unpickled in either direction (jobs go as JSON naming a module-level function, answers come
back as JSON and raw bytes, checked before use); uploads and renders come out exactly as in-process.

The `_…` functions below are test-only jobs: a worker imports this module by name to run them.
"""

from __future__ import annotations

import json
import math
import os
import pickle  # only to build hostile payloads and show they are real; nothing received is unpickled
import pyexpat
import re
import resource
import shutil
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from musegen_core import formats, workers
from musegen_core.cli import main as cli_main
from musegen_core.errors import (
    CheckpointError,
    ControlError,
    FormatError,
    GenerateWorkerError,
    MusegenError,
    ParseWorkerError,
    RenderError,
    RenderWorkerError,
    SoundFontError,
    WorkerError,
)
from musegen_core.formats import open_music_file, piece_to_midi
from musegen_core.music import Key, Note, Part, Piece, TimeSignature, piece_from_dict, piece_to_dict
from musegen_core.render.audio import RenderSettings, render, render_in_process, render_uncached
from musegen_core.render.soundfonts import SoundFont, resolve_soundfont

DATA = Path(__file__).parent / "data"
CONFORMANCE = Path(__file__).resolve().parents[1].parent / "shared" / "conformance"
WALTZ = DATA / "waltz.musicxml"


@pytest.fixture(autouse=True)
def _short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(workers.PARSE_TIMEOUT_ENV, "5")
    monkeypatch.setenv(workers.RENDER_TIMEOUT_ENV, "30")


# ---------------------------------------------------------------------------------------------------------------
# Test-only jobs, run inside a worker.


def _hang() -> workers.Answer:
    time.sleep(3600)
    raise AssertionError("not reached")


def _segfault() -> workers.Answer:
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(3600)
    raise AssertionError("not reached")


def _allocate(size: int) -> workers.Answer:
    block = bytearray(size)
    return len(block), b""


def _spin_past_a_low_cpu_limit() -> workers.Answer:
    used = resource.getrusage(resource.RUSAGE_SELF)
    resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(used.ru_utime + used.ru_stime) + 1, resource.RLIM_INFINITY))
    while True:
        pass


def _pid_to_file_then_wait(path: str) -> workers.Answer:
    Path(path).write_text(str(os.getpid()))
    time.sleep(3600)
    raise AssertionError("not reached")


def _pid() -> workers.Answer:
    return os.getpid(), b""


def _limits_in_force() -> workers.Answer:
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu_left = resource.getrlimit(resource.RLIMIT_CPU)[0] - (used.ru_utime + used.ru_stime)
    settings = sorted(name for name in os.environ if name.startswith("MUSEGEN_"))
    return [resource.getrlimit(resource.RLIMIT_AS)[0], cpu_left, os.environ.get("OPENBLAS_NUM_THREADS"), settings], b""


def _raise_soundfont_error() -> workers.Answer:
    raise SoundFontError("no such font")


def _answer(value: object, *, data: bytes = b"") -> workers.Answer:
    return value, data


def _raw_answer(*, data: bytes) -> workers.Answer:
    """Write `data` as the header (and an empty blob) straight onto the worker's channel, as a compromised worker
    could."""
    channel = socket.socket(fileno=os.dup(int(sys.argv[2])))
    channel.sendall(struct.pack("!Q", len(data)) + data + struct.pack("!Q", 0))
    time.sleep(3600)
    raise AssertionError("not reached")


def _announce_a_huge_answer() -> workers.Answer:
    channel = socket.socket(fileno=os.dup(int(sys.argv[2])))
    channel.sendall(struct.pack("!Q", 2**62))
    time.sleep(3600)
    raise AssertionError("not reached")


def _touch(path: str) -> workers.Answer:
    Path(path).touch()
    return "touched", b""


class _Touch:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.path,)

    @staticmethod
    def touch(path: str) -> workers.Answer:
        """A plain function, but not a module-level one."""
        return _touch(path)


# ---------------------------------------------------------------------------------------------------------------
# Helpers.


def _read(target: object, *args: object, data: bytes = b"") -> object:
    return workers.run_in_worker(
        "read", workers.reading("song.mid"), workers.parse_limits(), target, *args, data=data, decode=lambda v, b: v
    )


def _next_read_works() -> None:
    assert (
        workers.load_untrusted(WALTZ.read_bytes(), WALTZ.name) == open_music_file(WALTZ.read_bytes(), WALTZ.name).load()
    )


def _timed(call: Callable[..., object], *args: object, **kwargs: object) -> tuple[WorkerError, float]:
    """The WorkerError `call(*args, **kwargs)` raises, and how long it took to come."""
    start = time.monotonic()
    with pytest.raises(WorkerError) as caught:
        call(*args, **kwargs)
    return caught.value, time.monotonic() - start


def _melody() -> Piece:
    notes = tuple(Note(60 + (i * 5) % 12, i * 0.5, 0.5, velocity=60 + i) for i in range(16))
    return Piece((Part("Flute", notes, program=73),), tempo_bpm=132.0)


def _odd_piece() -> Piece:
    """Floats JSON must keep exactly, a key, a pickup, a drum part, an empty part and a non-ASCII title."""
    lead = tuple(Note(60 + i, i / 3, 1 / 3 + 1e-12, velocity=1 + i) for i in range(7))
    drums = (Note(36, 0.1, 0.2, velocity=127), Note(38, 0.1, 0.2))
    parts = (Part("Flöte", lead, program=73), Part("Kit", drums, is_drum=True), Part("empty"))
    return Piece(parts, 97.3, TimeSignature(6, 8), Key(6, "minor"), title="Ünïcødé «tune»", pickup_beats=1 / 3)


# ---------------------------------------------------------------------------------------------------------------
# The Piece ↔ JSON converter.


@pytest.mark.parametrize("piece", [_odd_piece(), _melody(), Piece(())], ids=["odd", "melody", "empty"])
def test_a_piece_survives_json_exactly(piece: Piece) -> None:
    again = piece_from_dict(json.loads(json.dumps(piece_to_dict(piece), allow_nan=False)))
    assert again == piece
    assert [n.start_beats for p in again.parts for n in p.notes] == [
        n.start_beats for p in piece.parts for n in p.notes
    ]


def test_every_uploaded_test_file_survives_json_exactly() -> None:
    for path, tune in [(WALTZ, 0), (DATA / "three_tunes.abc", 0), (DATA / "three_tunes.abc", 2)]:
        piece = open_music_file(path.read_bytes(), path.name).load(tune)
        assert piece_from_dict(json.loads(json.dumps(piece_to_dict(piece)))) == piece


def _mutated(change: str) -> object:
    data = json.loads(json.dumps(piece_to_dict(_odd_piece())))
    note = data["parts"][0]["notes"][0]
    if change == "pitch as text":
        note[0] = "60"
    elif change == "pitch as float":
        note[0] = 60.0
    elif change == "velocity as bool":
        note[3] = True
    elif change == "pitch out of range":
        note[0] = 300
    elif change == "note of 3 items":
        note.pop()
    elif change == "negative start":
        note[1] = -1.0
    elif change == "extra key":
        data["evil"] = 1
    elif change == "missing key":
        del data["key"]
    elif change == "drum flag as int":
        data["parts"][1]["is_drum"] = 1
    elif change == "tempo as text":
        data["tempo_bpm"] = "120"
    elif change == "not an object":
        data = [data]
    return data


@pytest.mark.parametrize(
    "change",
    [
        "pitch as text",
        "pitch as float",
        "velocity as bool",
        "pitch out of range",
        "note of 3 items",
        "negative start",
        "extra key",
        "missing key",
        "drum flag as int",
        "tempo as text",
        "not an object",
    ],
)
def test_piece_from_dict_refuses_anything_but_what_piece_to_dict_writes(change: str) -> None:
    with pytest.raises(ValueError):
        piece_from_dict(_mutated(change))


# ---------------------------------------------------------------------------------------------------------------
# Normal files: the same through a worker as in-process.


def _upload_cases() -> list[tuple[Path, int]]:
    cases = [(WALTZ, 0), (DATA / "three_tunes.abc", 0), (DATA / "three_tunes.abc", 1), (DATA / "three_tunes.abc", 2)]
    foreign = [
        "w3c_musicxml/tutorial-hello-world.musicxml",
        "cuthbertLab_music21/lilypondTestSuite/90a-Compressed-MusicXML.mxl",
        "cuthbertLab_music21/lilypondTestSuite/23a-Tuplets.xml",
        "jazz-soft_test-midi-files/test-c-major-scale.mid",
        "Yikai-Liao_symusic/the_wheels_of_the_world.abc",
    ]
    return cases + [(CONFORMANCE / name, 0) for name in foreign if (CONFORMANCE / name).exists()]


@pytest.mark.parametrize("path, tune", _upload_cases(), ids=lambda case: getattr(case, "name", str(case)))
def test_normal_files_open_and_load_as_in_process(path: Path, tune: int) -> None:
    data = path.read_bytes()
    in_process = open_music_file(data, path.name)
    opened = workers.open_untrusted(data, path.name)
    assert opened == in_process and opened.data == data
    assert workers.load_untrusted(data, path.name, tune) == in_process.load(tune)


def test_a_midi_file_loads_as_in_process() -> None:
    data = piece_to_midi(_odd_piece())
    assert workers.load_untrusted(data, "odd.mid") == open_music_file(data, "odd.mid").load()


@pytest.mark.parametrize("name", sorted(p.name for p in (DATA / "corrupted").iterdir()))
def test_unreadable_files_give_the_in_process_message_and_keep_the_worker(name: str) -> None:
    data = (DATA / "corrupted" / name).read_bytes()
    with pytest.raises(FormatError) as expected:
        open_music_file(data, name).load()
    before = _read(_pid)
    with pytest.raises(FormatError) as caught:
        workers.load_untrusted(data, name)
    assert type(caught.value) is type(expected.value) and str(caught.value) == str(expected.value)
    assert not isinstance(caught.value, WorkerError)
    assert _read(_pid) == before  # a file that is not music does not cost the worker


def test_a_tune_index_out_of_range_is_the_files_error() -> None:
    with pytest.raises(FormatError, match="tune index 7 does not exist"):
        workers.load_untrusted((DATA / "three_tunes.abc").read_bytes(), "three_tunes.abc", 7)


def test_size_is_checked_before_anything_is_sent() -> None:
    with pytest.raises(FormatError, match="MuseGen accepts files up to"):
        workers.open_untrusted(b"X" * (formats.MAX_UPLOAD_BYTES + 1), "huge.abc")


# ---------------------------------------------------------------------------------------------------------------
# XML safety.


@pytest.mark.parametrize("name", ["xmlbomb.xml", "quadratic.xml", "cyclic.xml", "external.xml"])
def test_entity_bombs_and_external_entities_are_refused(name: str) -> None:
    path = CONFORMANCE / "tiran_defusedxml" / name
    if not path.exists():
        pytest.skip(f"conformance corpus not found at {CONFORMANCE}")
    with pytest.raises(FormatError, match="declares entities"):
        workers.load_untrusted(path.read_bytes(), name)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "iso-8859-1"])
def test_entity_declarations_are_refused_in_every_encoding_expat_reads(encoding: str) -> None:
    bomb = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n<!DOCTYPE score-partwise [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n<score-partwise><work><work-title>&b;</work-title></work>'
        "</score-partwise>"
    )
    data = (b"\xff\xfe" if encoding == "utf-16-le" else b"") + bomb.encode(encoding)
    with pytest.raises(FormatError, match="entities"):
        workers.load_untrusted(data, "bomb.musicxml")


def test_this_python_has_an_expat_that_limits_entity_amplification() -> None:
    assert pyexpat.version_info >= (2, 4, 1), pyexpat.EXPAT_VERSION
    assert formats.EXPAT_SAFE


@pytest.mark.parametrize(
    "version, safe", [((2, 2, 10), False), ((2, 4, 0), False), ((2, 4, 1), True), ((2, 5, 0), True), ((3, 0, 0), True)]
)
def test_expat_versions_are_judged(version: tuple[int, int, int], safe: bool) -> None:
    assert formats.expat_is_safe(version) is safe


def test_with_an_old_expat_musicxml_is_refused_and_midi_still_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "EXPAT_SAFE", False)
    with pytest.raises(FormatError, match=r"older than 2\.4\.1"):
        open_music_file(WALTZ.read_bytes(), WALTZ.name)
    with pytest.raises(FormatError, match=r"older than 2\.4\.1"):
        formats.MusicFile("musicxml", WALTZ.name, ("Waltz",), WALTZ.read_bytes()).load()
    assert open_music_file(piece_to_midi(_melody()), "m.mid").load().note_count == 16


# ---------------------------------------------------------------------------------------------------------------
# Workers that hang, crash, blow up or get killed.


def test_a_hanging_read_is_killed_at_the_timeout_and_the_next_read_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(workers.PARSE_TIMEOUT_ENV, "1")
    pid = _read(_pid)
    error, seconds = _timed(_read, _hang)
    assert 1.0 <= seconds < 4.0
    assert isinstance(error, ParseWorkerError) and isinstance(error, FormatError) and error.reason == "timeout"
    assert str(error) == (
        "MuseGen stopped reading song.mid: it took longer than 1 s. The file may be malformed or too large: export "
        "it again, or upload a shorter excerpt."
    )
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    monkeypatch.setenv(workers.PARSE_TIMEOUT_ENV, "5")  # room for a busy test machine
    _next_read_works()


def test_a_real_file_too_slow_to_parse_is_stopped_and_refused_at_once_when_given_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """music21's ABC import is quadratic: 1,448 notes take ~1 s, ten times the 0.1 s allowed here."""
    monkeypatch.setenv(workers.PARSE_TIMEOUT_ENV, "0.1")
    bars = " ".join("cdef gabc'|" for _ in range(181))
    data = f"X:1\nT:Long {time.time()}\nM:4/4\nL:1/8\nK:C\n{bars}]\n".encode()
    error, _ = _timed(workers.load_untrusted, data, "long.abc")
    assert error.reason == "timeout" and "reading long.abc: it took longer than 0.1 s" in str(error)
    again, seconds = _timed(workers.load_untrusted, data, "long.abc")
    assert seconds < 0.1 and str(again) == str(error) and isinstance(again, ParseWorkerError)
    monkeypatch.setenv(workers.PARSE_TIMEOUT_ENV, "5")
    _next_read_works()


def test_a_segfault_costs_a_message_and_the_next_read_works() -> None:
    error, seconds = _timed(_read, _segfault)
    assert error.reason == "crash" and seconds < 3.0
    assert str(error).startswith("The worker process crashed while reading song.mid (segmentation fault).")
    _next_read_works()


def test_a_memory_blow_up_is_stopped_at_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(workers.PARSE_MEMORY_ENV, "600")
    assert _read(_allocate, 50 * 2**20) == 50 * 2**20
    error, _ = _timed(_read, _allocate, 2 * 2**30)
    assert error.reason == "memory" and isinstance(error, FormatError)
    assert str(error).startswith("MuseGen stopped reading song.mid: it needed more than 600 MB of memory.")
    _next_read_works()


def test_each_job_runs_under_its_limits_without_musegen_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    workers.shutdown()
    monkeypatch.setenv(workers.PARSE_MEMORY_ENV, "700")
    monkeypatch.setenv(workers.PARSE_TIMEOUT_ENV, "2.5")
    monkeypatch.setenv("MUSEGEN_DB_URL", "postgresql://musegen:secret@db/musegen")
    address_space, cpu_left, blas_threads, settings = _read(_limits_in_force)
    assert address_space == 700 * 2**20 and 3.0 < cpu_left <= 5.0 and blas_threads == "1"  # cpu: ceil(2.5) + 1
    assert settings == []


def test_running_out_of_cpu_time_is_named() -> None:
    error, _ = _timed(_read, _spin_past_a_low_cpu_limit)
    assert error.reason == "cpu" and "s of processor time" in str(error)
    _next_read_works()


def test_a_worker_killed_from_outside_mid_job_costs_a_message_and_the_next_read_works(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    def kill_the_worker() -> None:
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    error, seconds = _timed(_read, _pid_to_file_then_wait, str(pid_file))
    killer.join()
    assert error.reason == "killed" and seconds < 4.0
    assert str(error).startswith("The worker process was killed while reading song.mid (SIGKILL")
    _next_read_works()


def test_a_worker_that_died_while_idle_is_replaced_unnoticed() -> None:
    pid = _read(_pid)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert _read(_pid) != pid


def test_workers_are_reused_then_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    workers.shutdown()
    monkeypatch.setattr(workers, "WORKER_MAX_JOBS", 3)
    pids = [_read(_pid) for _ in range(4)]
    assert pids[0] == pids[1] == pids[2] != pids[3]


def test_concurrent_reads_each_get_their_answer() -> None:
    data = (DATA / "three_tunes.abc").read_bytes()
    expected = [open_music_file(data, "t.abc").load(i) for i in range(3)] * 2
    results: list[Piece | None] = [None] * len(expected)

    def load(i: int) -> None:
        results[i] = workers.load_untrusted(data, "t.abc", i % 3)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(len(expected))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == expected


# ---------------------------------------------------------------------------------------------------------------
# What goes to a worker: a JSON header naming a module-level function, then raw bytes; never a pickle.


def _request(target: str, args: list[object], **changes: object) -> bytes:
    """A request header as the server writes one, with `changes` to its fields."""
    header = {"target": target, "args": args, "limits": {"timeout_s": 5.0, "memory_mb": 1500}, **changes}
    return json.dumps(header).encode()


def test_an_upload_reaches_the_worker_byte_for_byte() -> None:
    data = bytes(range(256)) * 3
    echoed = workers.run_in_worker(
        "read", workers.reading("x.mid"), workers.parse_limits(), _answer, "v", data=data, decode=lambda v, b: (v, b)
    )
    assert echoed == ("v", data)


def test_a_job_that_cannot_be_sent_fails_before_any_worker_is_involved(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_worker(*args: object) -> None:
        raise AssertionError("a worker was involved")

    monkeypatch.setattr(workers._Pool, "_take", no_worker)
    with pytest.raises(TypeError, match="not JSON serializable"):
        _read(_answer, b"bytes")
    with pytest.raises(ValueError, match="Out of range float"):
        _read(_answer, math.nan)
    for target in (lambda: (1, b""), _Touch.touch, os.getpid, _Touch):
        with pytest.raises(TypeError, match="module-level functions only"):
            _read(target)


def test_a_request_that_is_not_a_job_for_a_module_level_function_is_refused_unrun(tmp_path: Path) -> None:
    """Each request here would create `marker` if the worker ran it (or unpickled it); the same worker then serves
    a real job, which does create it."""
    marker = tmp_path / "ran"
    here = f"{__name__}:_touch"
    refused = {
        "a pickle": pickle.dumps(_Touch(marker)),
        "not utf-8": b"\xff" + _request(here, [str(marker)]),
        "NaN": _request(here, [str(marker)]).replace(b"5.0", b"NaN"),
        "a builtin": _request("os:system", [f"touch {marker}"]),
        "a class": _request(f"{__name__}:_Touch", [str(marker)]),
        "a method": _request(f"{__name__}:_Touch.touch", [str(marker)]),
        "no module": _request("_touch", [str(marker)]),
        "a relative module": _request(".test_workers:_touch", [str(marker)]),
        "a missing module": _request("no_such_module:_touch", [str(marker)]),
        "args not a list": _request(here, str(marker)),
        "bad limits": _request(here, [str(marker)], limits={"timeout_s": 5.0, "memory_mb": "lots"}),
        "an extra key": _request(here, [str(marker)], also=1),
        "deep": b"[" * 100_000,
    }
    activity = workers.reading("song.mid")
    limits = workers.parse_limits()
    worker = workers._Worker("read", activity)
    try:
        for case, header in refused.items():
            with pytest.raises(ParseWorkerError, match=r"\(request refused: ") as caught:
                worker.run(activity, header, b"", limits)
            assert caught.value.reason == "failed" and not marker.exists(), case
        assert worker.run(activity, _request(here, [str(marker)]), b"", limits) == ("touched", b"")
        assert marker.exists() and worker.alive()
    finally:
        worker.kill()
    assert pickle.loads(refused["a pickle"]) is None  # the pickle was a real threat
    _next_read_works()


@pytest.mark.parametrize(
    "settings",
    [
        RenderSettings(),
        RenderSettings("fluidr3", (40, None, 0), 97.5, effects=True, normalize=False, target_lufs=-14, fade_out_ms=0),
        RenderSettings(Path("/tmp/my font.sf2")),
    ],
    ids=["default", "every-field", "path"],
)
def test_render_settings_survive_json_exactly(settings: RenderSettings) -> None:
    again = workers._settings_from_dict(json.loads(json.dumps(workers._settings_to_dict(settings), allow_nan=False)))
    assert again == settings and type(again.soundfont) is type(settings.soundfont)
    assert [type(value) for value in vars(again).values()] == [type(value) for value in vars(settings).values()]


def test_a_soundfont_survives_json_exactly() -> None:
    for soundfont in (resolve_soundfont(RenderSettings().soundfont), SoundFont("user", "Mine", Path("/x.sf2"), False)):
        assert workers._soundfont_from_dict(json.loads(json.dumps(workers._soundfont_to_dict(soundfont)))) == soundfont


# ---------------------------------------------------------------------------------------------------------------
# What a worker sends back is never unpickled, and checked before use.


def test_a_pickled_answer_is_refused_not_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    error, seconds = _timed(_read, _raw_answer, data=pickle.dumps(_Touch(marker)))
    assert error.reason == "garbled" and seconds < 3.0
    assert not marker.exists()
    assert pickle.loads(pickle.dumps(_Touch(marker))) is None and marker.exists()  # the pickle was a real threat
    _next_read_works()


@pytest.mark.parametrize(
    "header",
    [
        b'{"ok": NaN}',
        b'{"ok": Infinity}',
        b"[1, 2]",
        b'{"ok": 1, "also": 2}',
        b'{"error": ["FormatError"]}',
        b'{"failure": ["surprise", ""]}',
        b'{"reply": 1}',
        b"\xff\xfe\x00",
        b"[" * 100_000,
    ],
    ids=["nan", "infinity", "list", "two-keys", "short-error", "odd-failure", "odd-kind", "bytes", "deep"],
)
def test_answers_that_are_not_a_reply_are_refused(header: bytes) -> None:
    error, _ = _timed(_read, _raw_answer, data=header)
    assert error.reason == "garbled" and isinstance(error, ParseWorkerError)


def test_an_answer_announcing_too_many_bytes_is_refused_unread() -> None:
    error, seconds = _timed(_read, _announce_a_huge_answer)
    assert error.reason == "garbled" and "at most" in str(error) and seconds < 3.0


def test_a_piece_that_does_not_validate_is_refused() -> None:
    bad = _mutated("pitch out of range")
    with pytest.raises(ParseWorkerError, match="sent back something MuseGen does not accept") as caught:
        workers.run_in_worker(
            "read", workers.reading("x.mid"), workers.parse_limits(), _answer, bad, decode=workers._piece
        )
    assert caught.value.reason == "garbled"


@pytest.mark.parametrize(
    "header, blob",
    [
        ({"sample_rate": 44100, "frames": 2, "soundfont": "x", "truncated": False, "message": ""}, b"\0" * 15),
        ({"sample_rate": 8000, "frames": 1, "soundfont": "x", "truncated": False, "message": ""}, b"\0" * 8),
        ({"sample_rate": 44100, "frames": 1, "soundfont": "x", "truncated": 0, "message": ""}, b"\0" * 8),
        (
            {"sample_rate": 44100, "frames": 1, "soundfont": "x", "truncated": False, "message": ""},
            np.array([[np.nan, 0]], "<f4").tobytes(),
        ),
        (
            {"sample_rate": 44100, "frames": 1, "soundfont": "x", "truncated": False, "message": ""},
            np.array([[2.0, 0]], "<f4").tobytes(),
        ),
    ],
    ids=["short", "rate", "flag", "nan", "loud"],
)
def test_audio_that_does_not_match_its_header_is_refused(header: dict[str, object], blob: bytes) -> None:
    with pytest.raises(RenderWorkerError) as caught:  # a reading worker starts faster than a rendering one
        workers.run_in_worker(
            "read", workers.RENDERING, workers.render_limits(), _answer, header, data=blob, decode=workers._render
        )
    assert caught.value.reason == "garbled" and isinstance(caught.value, RenderError)


def test_a_jobs_own_error_keeps_its_class_from_errors_only() -> None:
    with pytest.raises(RenderError, match="nothing to play") as caught:
        render_uncached(Piece((Part("silence"),)))
    assert type(caught.value) is RenderError
    with pytest.raises(SoundFontError, match="no such font"):
        _read(_raise_soundfont_error)
    with pytest.raises(MusegenError) as caught:
        _read(_raw_answer, data=b'{"error": ["SystemExit", "bye"]}')
    assert type(caught.value) is MusegenError and str(caught.value) == "bye"
    workers.shutdown()  # that worker is still asleep in `_raw_answer`


# ---------------------------------------------------------------------------------------------------------------
# Rendering in a worker.


def test_renders_in_a_worker_are_those_of_this_process_and_read_only() -> None:
    for settings in (RenderSettings(), RenderSettings(effects=True, programs=(40,), tempo_bpm=90.0)):
        isolated = render_uncached(_melody(), settings)
        here = render_in_process(_melody(), settings, resolve_soundfont(settings.soundfont))
        assert np.array_equal(isolated.audio, here.audio) and isolated.audio.dtype == np.float32
        assert (isolated.sample_rate, isolated.soundfont, isolated.truncated) == (44100, here.soundfont, False)
        assert not isolated.audio.flags.writeable
    assert render(_melody()) is render(_melody())  # the cache stays in this process


def test_a_hanging_render_is_killed_and_the_next_render_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(workers.RENDER_TIMEOUT_ENV, "1")
    error, seconds = _timed(
        workers.run_in_worker, "render", workers.RENDERING, workers.render_limits(), _hang, decode=workers._render
    )
    assert isinstance(error, RenderWorkerError) and isinstance(error, RenderError) and 1.0 <= seconds < 4.0
    assert str(error) == (
        "MuseGen stopped rendering the audio: it took longer than 1 s. Try a shorter piece, or turn reverb and chorus "
        "off, or another SoundFont."
    )
    monkeypatch.setenv(workers.RENDER_TIMEOUT_ENV, "30")
    assert render_uncached(_melody()).seconds > 0


def test_a_crashing_synthesiser_costs_a_message_and_the_next_render_works() -> None:
    error, _ = _timed(
        workers.run_in_worker,
        "render",
        workers.RENDERING,
        workers.render_limits(),
        _segfault,
        decode=workers._render,
    )
    assert isinstance(error, RenderError) and error.reason == "crash"
    assert render_uncached(_melody()).seconds > 0


def _without_ids(svg: str) -> str:
    """`svg` with verovio's element ids (new random ones on every engraving, also used in its CSS and classes)
    replaced by one placeholder. An id is a random token, or a SMuFL glyph code, a dash and the token; tokens can
    be short (a small random number), so they are replaced as whole words, whatever their length."""
    tokens = {value.rsplit("-", 1)[-1] for value in re.findall(r'id="([^"]+)"', svg)}
    if not tokens:
        return svg
    words = "|".join(sorted(map(re.escape, tokens), key=len, reverse=True))
    return re.sub(rf"(?<![A-Za-z0-9])(?:{words})(?![A-Za-z0-9])", "ID", svg)


def test_notation_engraved_in_a_worker_is_the_notation_engraved_here() -> None:
    from musegen_core.render.notation import notation_svg

    for width, projector in ((800, False), (1100, True)):
        isolated = workers.engrave_isolated(_melody(), width, projector)
        here = notation_svg(_melody(), width_px=width, projector=projector)
        assert (isolated.bars_shown, isolated.bars_total) == (here.bars_shown, here.bars_total) == (2, 2)
        assert list(map(_without_ids, isolated.pages)) == list(map(_without_ids, here.pages))
        assert isolated.pages[0].startswith(f'<svg width="{width}px"')


# ---------------------------------------------------------------------------------------------------------------
# Generating in a worker.


# Reading workers import this module to run its test-only jobs (under a 600 MB address-space limit in one test), so
# the generation tests import torch's side (controls, generate, models) inside the tests, never at module level.


def _lstm_folk() -> Path:
    from musegen_core.models.registry import model_folder

    return model_folder("lstm-folk")


def _generate(target: object, *args: object) -> object:
    return workers.run_in_worker(
        "generate", workers.GENERATING, workers.generate_limits(), target, *args, decode=lambda v, b: v
    )


def _continue_in_a_worker(folder: Path, **controls: object) -> object:
    from musegen_core.controls import Controls

    part = controls.pop("part", 0)
    return workers.continue_isolated(folder, _melody(), Controls(**controls), part_index=part)


@pytest.mark.parametrize(
    "controls",
    [
        {"bars": 4, "seed": 3},
        {"bars": 4, "seed": 5, "style": "irish", "style_strength": 4.0, "key": "D", "mode": "dorian"},
    ],
    ids=["plain", "styled-in-D-dorian"],
)
def test_a_take_made_in_a_worker_is_the_take_made_here(controls: dict[str, object]) -> None:
    from musegen_core.controls import Controls
    from musegen_core.generate import continue_melody
    from musegen_core.models.registry import load_model

    isolated = _continue_in_a_worker(_lstm_folk(), **controls)
    assert isolated == continue_melody(load_model("lstm-folk"), _melody(), Controls(**controls))
    assert isolated.generated.note_count > 0


def test_a_takes_own_error_comes_back_with_its_message() -> None:
    with pytest.raises(ControlError, match="style must be one of"):
        _continue_in_a_worker(_lstm_folk(), bars=2, style="reggae")
    with pytest.raises(ControlError, match="part"):
        _continue_in_a_worker(_lstm_folk(), bars=2, part=3)


def test_a_worker_loads_a_model_again_when_its_checkpoint_changes(tmp_path: Path) -> None:
    folder = tmp_path / "lstm"
    shutil.copytree(_lstm_folk(), folder)
    assert _continue_in_a_worker(folder, bars=2).generated.note_count > 0
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, "sha256": "0" * 64}))  # a replaced checkpoint
    with pytest.raises(CheckpointError):  # loaded again, and checked: the weights no longer match
        _continue_in_a_worker(folder, bars=2)


def test_a_hanging_take_is_stopped_with_a_message_and_the_next_take_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(workers.GENERATE_TIMEOUT_ENV, "1")
    error, seconds = _timed(_generate, _hang)
    assert isinstance(error, GenerateWorkerError) and error.reason == "timeout" and 1.0 <= seconds < 4.0
    assert str(error) == (
        "MuseGen stopped generating the take: it took longer than 1 s. Try fewer bars or a lower style strength; if "
        "many people are generating at once, try again in a moment."
    )
    monkeypatch.setenv(workers.GENERATE_TIMEOUT_ENV, "120")
    assert _continue_in_a_worker(_lstm_folk(), bars=2).generated.note_count > 0


def test_a_gallery_made_in_a_worker_is_the_gallery_made_here() -> None:
    from musegen_core.gallery import style_takes
    from musegen_core.models.registry import load_model

    isolated = workers.style_takes_isolated(_lstm_folk(), _melody(), part_index=0, bars=2, seed=4)
    assert isolated == style_takes(load_model("lstm-folk"), _melody(), bars=2, seed=4)
    assert [take.style for take in isolated] == list(load_model("lstm-folk").styles)


def test_generating_workers_give_way_to_the_server() -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, _generate(_pid)) == min(19, ours + workers.GENERATE_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, _read(_pid)) == ours  # reading is not


# ---------------------------------------------------------------------------------------------------------------
# Configuration.


def test_default_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (workers.PARSE_TIMEOUT_ENV, workers.RENDER_TIMEOUT_ENV):
        monkeypatch.delenv(name)
    assert workers.parse_limits() == workers.Limits(10.0, 1500)
    assert workers.render_limits() == workers.Limits(60.0, 2500)
    assert workers.parse_limits().cpu_s == 11


@pytest.mark.parametrize(
    "name, value",
    [
        ("MUSEGEN_PARSE_TIMEOUT_S", "ten"),
        ("MUSEGEN_PARSE_TIMEOUT_S", "0"),
        ("MUSEGEN_PARSE_TIMEOUT_S", "nan"),
        ("MUSEGEN_PARSE_TIMEOUT_S", "1e9"),
        ("MUSEGEN_PARSE_MEMORY_MB", "1500.5"),
        ("MUSEGEN_PARSE_MEMORY_MB", "100"),
        ("MUSEGEN_RENDER_TIMEOUT_S", "-1"),
        ("MUSEGEN_RENDER_MEMORY_MB", "lots"),
    ],
)
def test_absurd_limits_are_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(WorkerError, match=rf"^{name} must be .* \(it is '{value}'\)\.$"):
        workers.parse_limits() if "PARSE" in name else workers.render_limits()


def test_the_cli_reads_files_in_a_worker_and_reports_a_bad_limit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["check", str(WALTZ), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == 7
    monkeypatch.setenv(workers.PARSE_TIMEOUT_ENV, "soon")
    assert cli_main(["check", str(WALTZ)]) == 1
    assert "MUSEGEN_PARSE_TIMEOUT_S must be a number" in capsys.readouterr().err


@pytest.fixture(autouse=True, scope="module")
def _stop_workers_afterwards() -> Iterator[None]:
    yield
    workers.shutdown()
