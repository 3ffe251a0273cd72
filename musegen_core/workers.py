"""Killable worker processes for the risky and the heavy work: reading uploaded files, rendering audio with
FluidSynth, and generating takes.

music21 and mido read bytes a stranger uploaded; libfluidsynth is C code. A hang, a memory blow-up or a segfault in
them must cost one clear message, not the server. So the server parses uploads and renders audio only in warm
worker processes, each job under a wall-clock timeout, an address-space limit and a CPU-time limit. A worker that
overruns is killed; one that crashes, runs out of memory or answers anything unexpected is thrown away. The caller
gets a `WorkerError` saying what happened and what to do next (a `ParseWorkerError`, which is also a `FormatError`,
a `RenderWorkerError`, also a `RenderError`, or a `GenerateWorkerError`); the next job gets a fresh worker.

Notation (music21 writing MusicXML, verovio engraving it) and generation run in workers too, for another reason:
both are CPU-heavy, and notation was the largest share of the server's busy time under 30 sessions once takes were
made in workers. Generation: a take is up to a few seconds of Python-heavy model code, and in the server process it
held the interpreter lock that every other session's page runs and rating submits need. A generating worker runs at a
lower CPU priority (`GENERATE_NICENESS`), so the server answers clicks first; the take waits instead, while its
student is still listening to the last one. It loads a model from its checkpoint folder (safetensors + JSON, the
server's own models) on first use and keeps the last `GENERATOR_MODELS` it used, reloaded when a folder's checkpoint
changes.

Public API:
    open_untrusted(data, filename) -> MusicFile        `formats.open_music_file` in a reading worker
    load_untrusted(data, filename, tune_index) -> Piece `open_music_file(...).load(tune_index)` in a reading worker
    transcribe_untrusted(data, filename) -> Transcription  `transcribe.transcribe` in a listening worker
    render_isolated(piece, settings, soundfont) -> Render  what `render.audio.render` runs on a cache miss
    engrave_isolated(piece, width_px, projector) -> Engraving  `render.notation.notation_svg` in a rendering worker
    continue_isolated(folder, prime, controls, part_index) -> Continuation  `generate.continue_melody` with the
                                                        model in checkpoint folder `folder`, in a generating worker
    style_takes_isolated(folder, prime, part_index, bars, seed) -> list[StyleTake]  the Style Gallery's takes
                                                        (`gallery.style_takes`), in a generating worker
    run_in_worker(pool, activity, limits, target, *args, data=b"", decode=...)  any job, in "read", "listen",
                                                        "render" or "generate"
    parse_limits(), listen_limits(), render_limits(), generate_limits() -> Limits  the limits configured now
    shutdown()                                          stop the idle workers (the next job starts fresh ones)

Limits, from environment variables read at every job (a value that is not a number in range is refused with a
`WorkerError` naming the variable):
    MUSEGEN_PARSE_TIMEOUT_S   10    seconds of wall-clock time to open an upload or load one of its tunes (a melody
                                    takes milliseconds; music21 needs ~1 s for the longest ABC tune accepted and
                                    seconds for the largest MusicXML file accepted)
    MUSEGEN_PARSE_MEMORY_MB   1500  address space of a reading worker, in MB (Python + music21 alone use ~200)
    MUSEGEN_LISTEN_TIMEOUT_S  30    seconds to transcribe one recording (a 60 s recording takes ~4 s, plus ~25 s to
                                    compile librosa's kernels the very first time in a fresh venv)
    MUSEGEN_LISTEN_MEMORY_MB  2500  address space of a listening worker, in MB (a 60 s recording peaks at ~660 MB)
    MUSEGEN_RENDER_TIMEOUT_S  60    seconds for one render (a 10-minute piece with reverb takes ~15 s on a slow CPU,
                                    plus ~7 s to load MuseScore General on first use)
    MUSEGEN_RENDER_MEMORY_MB  2500  address space of a rendering worker, in MB (three SoundFonts loaded and a
                                    10-minute render peak at ~1.6 GB)
    MUSEGEN_GENERATE_TIMEOUT_S 120  seconds for one take (32 bars at the highest style strength take ~5 s alone;
                                    30 students generating at once on two cores queue behind each other)
    MUSEGEN_GENERATE_MEMORY_MB 3000 address space of a generating worker, in MB (torch, music21 and the four
                                    shipped families loaded: ~720 MB)
    MUSEGEN_WORKERS           2     workers per pool ("read", "render", ...); more jobs at once wait for a free one
                                    (read when a pool is first used)
A job's CPU-time limit is its timeout + 1 s: a backstop that ends a runaway worker even if nobody waits for it.

Processes: a pool keeps up to MUSEGEN_WORKERS warm workers, `python -c` processes that import their libraries once
(music21 for reading; FluidSynth with the default SoundFont loaded for rendering) and then serve one job at a time
over a private socket pair; a worker is replaced after `WORKER_MAX_JOBS` jobs. Starting one takes ~0.5 s, paid by the
first job after start-up or after a failure. A read that timed out, ran out of memory or crashed is remembered (the
last `REMEMBERED_FAILURES` files), and the same file is refused at once when given again under the same limits: a
Streamlit rerun with a hostile upload still in the uploader does not tie up a worker again. (multiprocessing's spawn
and forkserver are not used: they re-run the parent's `__main__` in the child, and Streamlit points `__main__` at the
page being run.)

Trust: nothing crosses the socket pickled, in either direction. A job goes TO a worker as a JSON header (NaN
refused) naming a module-level function ("module:qualname": the worker imports the module and refuses any name that
is not a plain Python function), its JSON arguments (a piece as `music.piece_to_dict`, render settings and a
SoundFont as plain dicts) and its limits, then raw bytes (the upload, for a read); a request that cannot be written
so fails in the server, before any worker is involved. Nothing coming back is ever unpickled either: a worker has
read hostile bytes and may be compromised, so it answers with a JSON header (at most `MAX_HEADER_BYTES`, NaN
refused) and raw bytes (float32 audio, at most `MAX_BLOB_BYTES`), and the server checks both before use: a piece
through `music.piece_from_dict` (exact keys and JSON types, every value validated by the dataclasses), tune lists
by type, audio by size, shape, finiteness and peak. Anything else is a "garbled" `WorkerError`, and that worker is
killed. Workers do not inherit the `MUSEGEN_*` environment variables (the database URL, the admin secret's hash).
FluidSynth only ever renders a `Piece` (the app's own validated type, turned into note events by
`render.audio`), never uploaded bytes. Not covered: a worker that an exploit has taken over still runs as the
server's user (a seccomp filter or a container around the workers would be the next step).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import hashlib
import importlib
import json
import logging
import math
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from musegen_core import errors
from musegen_core.errors import GenerateWorkerError, MusegenError, ParseWorkerError, RenderWorkerError, WorkerError
from musegen_core.formats import MusicFile, check_upload_size, open_music_file
from musegen_core.music import Note, Part, Piece, piece_from_dict, piece_to_dict
from musegen_core.render import audio
from musegen_core.render.soundfonts import DEFAULT_SOUNDFONT_ID, SoundFont, resolve_soundfont

if TYPE_CHECKING:  # imported where used: these need torch, which reading and rendering workers never load
    from musegen_core.controls import Controls
    from musegen_core.gallery import StyleTake
    from musegen_core.generate import Continuation
    from musegen_core.render.notation import Engraving
    from musegen_core.transcribe import Transcription

log = logging.getLogger("musegen.workers")

PARSE_TIMEOUT_ENV = "MUSEGEN_PARSE_TIMEOUT_S"
PARSE_MEMORY_ENV = "MUSEGEN_PARSE_MEMORY_MB"
LISTEN_TIMEOUT_ENV = "MUSEGEN_LISTEN_TIMEOUT_S"
LISTEN_MEMORY_ENV = "MUSEGEN_LISTEN_MEMORY_MB"
RENDER_TIMEOUT_ENV = "MUSEGEN_RENDER_TIMEOUT_S"
RENDER_MEMORY_ENV = "MUSEGEN_RENDER_MEMORY_MB"
GENERATE_TIMEOUT_ENV = "MUSEGEN_GENERATE_TIMEOUT_S"
GENERATE_MEMORY_ENV = "MUSEGEN_GENERATE_MEMORY_MB"
GENERATE_NICENESS = 10  # added to a generating worker's nice value: the server's own work gets the CPU first
GENERATOR_MODELS = 8  # models a generating worker keeps loaded (a few MB each)
WORKERS_ENV = "MUSEGEN_WORKERS"
TIMEOUT_RANGE_S = (0.1, 3600.0)
MEMORY_RANGE_MB = (256, 1_048_576)
WORKERS_RANGE = (1, 64)
WORKER_MAX_JOBS = 100  # then the worker is replaced: whatever a library leaks or caches does not pile up
START_TIMEOUT_S = 60.0  # to import the libraries on a cold, busy machine
REMEMBERED_FAILURES = 64
MAX_HEADER_BYTES = 16 * 2**20  # a 20,000-note piece is ~1 MB of JSON
MAX_BLOB_BYTES = 256 * 2**20  # a 10-minute render is ~212 MB of float32 stereo
FILE_FORMATS = ("midi", "musicxml", "abc")
_FRAME = struct.Struct("!Q")  # every message: its length in bytes, then the bytes
_READY = b"ready"
_WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
_BOOT = "from musegen_core.workers import worker_main; worker_main()"

T = TypeVar("T")
Answer = tuple[Any, bytes | memoryview]  # what a job returns: a JSON-ready value and raw bytes (b"" for none)


@dataclass(frozen=True)
class Limits:
    """What one job may use: `timeout_s` of wall-clock time, `memory_mb` of address space for its worker, and
    `cpu_s` (the timeout + 1 s) of processor time."""

    timeout_s: float
    memory_mb: int

    @property
    def cpu_s(self) -> int:
        return math.ceil(self.timeout_s) + 1


@dataclass(frozen=True)
class Activity:
    """What a job is doing, for its failure messages: `doing` ("reading tune.mid"), `advice` (what the user can do
    next) and `error`, the `WorkerError` subclass raised."""

    doing: str
    advice: str
    error: type[WorkerError]


RENDERING = Activity(
    "rendering the audio",
    "Try a shorter piece, or turn reverb and chorus off, or another SoundFont.",
    RenderWorkerError,
)


def reading(filename: str) -> Activity:
    return Activity(
        f"reading {filename}",
        "The file may be malformed or too large: export it again, or upload a shorter excerpt.",
        ParseWorkerError,
    )


def parse_limits() -> Limits:
    """The limits of one read (`MUSEGEN_PARSE_TIMEOUT_S`, `MUSEGEN_PARSE_MEMORY_MB`)."""
    return Limits(
        _env_number(PARSE_TIMEOUT_ENV, 10.0, TIMEOUT_RANGE_S), int(_env_number(PARSE_MEMORY_ENV, 1500, MEMORY_RANGE_MB))
    )


def listen_limits() -> Limits:
    """The limits of one transcription (`MUSEGEN_LISTEN_TIMEOUT_S`, `MUSEGEN_LISTEN_MEMORY_MB`)."""
    return Limits(
        _env_number(LISTEN_TIMEOUT_ENV, 30.0, TIMEOUT_RANGE_S),
        int(_env_number(LISTEN_MEMORY_ENV, 2500, MEMORY_RANGE_MB)),
    )


def listening(filename: str) -> Activity:
    return Activity(
        f"listening to {filename}",
        "Try a shorter recording (at most a minute), or save it as WAV.",
        ParseWorkerError,
    )


def render_limits() -> Limits:
    """The limits of one render (`MUSEGEN_RENDER_TIMEOUT_S`, `MUSEGEN_RENDER_MEMORY_MB`)."""
    return Limits(
        _env_number(RENDER_TIMEOUT_ENV, 60.0, TIMEOUT_RANGE_S),
        int(_env_number(RENDER_MEMORY_ENV, 2500, MEMORY_RANGE_MB)),
    )


GENERATING = Activity(
    "generating the take",
    "Try fewer bars or a lower style strength; if many people are generating at once, try again in a moment.",
    GenerateWorkerError,
)


GENERATING_GALLERY = Activity(
    "generating the gallery",
    "Try fewer bars; if many people are generating at once, try again in a moment.",
    GenerateWorkerError,
)


def generate_limits() -> Limits:
    """The limits of one take (`MUSEGEN_GENERATE_TIMEOUT_S`, `MUSEGEN_GENERATE_MEMORY_MB`)."""
    return Limits(
        _env_number(GENERATE_TIMEOUT_ENV, 120.0, TIMEOUT_RANGE_S),
        int(_env_number(GENERATE_MEMORY_ENV, 3000, MEMORY_RANGE_MB)),
    )


def _env_number(name: str, default: float, bounds: tuple[float, float]) -> float:
    """The number in environment variable `name` (`default` when unset); whole numbers only when `default` is."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    kind = int if isinstance(default, int) else float
    low, high = bounds
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        unit = "a whole number" if kind is int else "a number"
        raise WorkerError(f"{name} must be {unit} within {low:g} and {high:g} (it is {text!r}).", "config")
    return value


# ---------------------------------------------------------------------------------------------------------------
# The jobs: what the server asks for, and how it checks the answers.


def open_untrusted(data: bytes, filename: str) -> MusicFile:
    """`formats.open_music_file(data, filename)` run in a reading worker: the format and the tune titles.

    Raises:
        FormatError: as `open_music_file`; a `ParseWorkerError` when the worker overran a limit or failed.
    """
    file_format, titles = _read_untrusted(_open_job, data, filename, decode=_tunes)
    return MusicFile(format=file_format, filename=filename, tune_titles=titles, data=data)


def load_untrusted(data: bytes, filename: str, tune_index: int = 0) -> Piece:
    """`formats.open_music_file(data, filename).load(tune_index)` run in a reading worker.

    Raises:
        FormatError: as `MusicFile.load`; a `ParseWorkerError` when the worker overran a limit or failed.
    """
    return _read_untrusted(_load_job, data, filename, tune_index, decode=_piece)


def _read_untrusted(
    job: Callable[..., Answer], data: bytes, filename: str, *args: Any, decode: Callable[[Any, bytearray], T]
) -> T:
    """A reading job on an upload. A read that timed out, ran out of memory or crashed is remembered (the last
    `REMEMBERED_FAILURES`), and the same read under the same limits is refused at once: a page rerun with the same
    upload does not tie up a worker again."""
    check_upload_size(data, filename)  # before sending a huge file anywhere
    limits = parse_limits()
    key = (job.__name__, hashlib.sha256(data).digest(), filename, args, limits)
    with _FAILED_READS_LOCK:
        failed = _FAILED_READS.get(key)
    if failed is not None:
        raise type(failed)(str(failed), failed.reason)
    try:
        return run_in_worker("read", reading(filename), limits, job, filename, *args, data=data, decode=decode)
    except WorkerError as error:
        if error.reason in _LASTING_FAILURES:
            with _FAILED_READS_LOCK:
                _FAILED_READS[key] = error
                while len(_FAILED_READS) > REMEMBERED_FAILURES:
                    _FAILED_READS.popitem(last=False)
        raise


_FAILED_READS: OrderedDict[tuple[Any, ...], WorkerError] = OrderedDict()
_FAILED_READS_LOCK = threading.Lock()
_LASTING_FAILURES = ("timeout", "cpu", "memory", "crash")  # the file's doing; a kill from outside may not be


def transcribe_untrusted(data: bytes, filename: str) -> Transcription:
    """`transcribe.transcribe(data, filename)` run in a listening worker (libsndfile decodes a stranger's audio;
    pYIN tracks its pitch), which keeps librosa and its compiled kernels loaded.

    Raises:
        FormatError: as `transcribe`; a `ParseWorkerError` when the worker overran a limit or failed.
    """
    activity, limits = listening(filename), listen_limits()
    return run_in_worker("listen", activity, limits, _transcribe_job, filename, data=data, decode=_transcription)


def render_isolated(piece: Piece, settings: audio.RenderSettings, soundfont: SoundFont) -> audio.Render:
    """`render.audio.render_in_process` run in a rendering worker, which keeps its SoundFonts loaded.

    Raises:
        RenderError: as `render_in_process`; a `RenderWorkerError` when the worker overran a limit or failed.
    """
    args = piece_to_dict(piece), _settings_to_dict(settings), _soundfont_to_dict(soundfont)
    return run_in_worker("render", RENDERING, render_limits(), _render_job, *args, decode=_render)


def continue_isolated(folder: Path, prime: Piece, controls: Controls, part_index: int = 0) -> Continuation:
    """`generate.continue_melody` run in a generating worker, with the model whose checkpoint is in `folder`.

    Raises:
        ControlError, CheckpointError: as `continue_melody` and `load_checkpoint`; a `GenerateWorkerError` when the
            worker overran a limit or failed.
    """
    args = str(folder), piece_to_dict(prime), controls.as_dict(), part_index
    return run_in_worker("generate", GENERATING, generate_limits(), _continue_job, *args, decode=_continuation)


def _continue_job(folder: str, prime: dict[str, Any], controls: dict[str, Any], part_index: int) -> Answer:
    from musegen_core.controls import Controls
    from musegen_core.generate import continue_melody

    model = _generator_model(Path(folder))
    take = continue_melody(model, piece_from_dict(prime), Controls.from_dict(controls), part_index=part_index)
    return _continuation_to_dict(take), b""


def style_takes_isolated(folder: Path, prime: Piece, *, part_index: int, bars: int, seed: int) -> list[StyleTake]:
    """`gallery.style_takes` run in a generating worker, with the model whose checkpoint is in `folder`: one take
    per style of the model, measured here.

    Raises:
        ControlError, CheckpointError: as `style_takes` and `load_checkpoint`; a `GenerateWorkerError` when the
            worker overran a limit or failed.
    """
    args = str(folder), piece_to_dict(prime), part_index, bars, seed
    decode = functools.partial(_style_takes, bars=bars, seed=seed)
    return run_in_worker("generate", GENERATING_GALLERY, generate_limits(), _style_takes_job, *args, decode=decode)


def _style_takes_job(folder: str, prime: dict[str, Any], part_index: int, bars: int, seed: int) -> Answer:
    from musegen_core.gallery import style_takes

    model = _generator_model(Path(folder))
    takes = style_takes(model, piece_from_dict(prime), part_index=part_index, bars=bars, seed=seed)
    return [[take.style, _continuation_to_dict(take.continuation)] for take in takes], b""


def _style_takes(value: Any, blob: bytearray, *, bars: int, seed: int) -> list[StyleTake]:
    """The gallery's takes from a style-takes job's answer: [style, continuation] pairs, at least one."""
    from musegen_core.gallery import style_take

    pairs = _checked(value, list)
    if blob or not pairs:
        raise ValueError("not a list of takes")
    return [
        style_take(_checked(style, str), _continuation(answer, bytearray()), bars, seed)
        for style, answer in (_checked(pair, list, 2) for pair in pairs)
    ]


def _continuation_to_dict(take: Continuation) -> dict[str, Any]:
    answer = {"prime": piece_to_dict(take.prime), "generated": piece_to_dict(take.generated)}
    return {**answer, "start_beats": take.start_beats}


def _generator_model(folder: Path) -> Any:
    """The model in checkpoint `folder`, loaded once per checkpoint (its config's weights hash) in this worker."""
    from musegen_core.models.checkpoint import load_checkpoint, read_meta

    key = (str(folder), read_meta(folder)["sha256"])
    if key not in _GENERATOR_MODELS:
        _GENERATOR_MODELS[key] = load_checkpoint(folder).model
        while len(_GENERATOR_MODELS) > GENERATOR_MODELS:
            _GENERATOR_MODELS.popitem(last=False)
    _GENERATOR_MODELS.move_to_end(key)
    return _GENERATOR_MODELS[key]


_GENERATOR_MODELS: OrderedDict[tuple[str, str], Any] = OrderedDict()  # in a generating worker


def _continuation(value: Any, blob: bytearray) -> Continuation:
    """A `Continuation` from a generating job's answer: two pieces and a finite start."""
    from musegen_core.generate import Continuation

    fields = _record(value, ("prime", "generated", "start_beats"))
    start = fields["start_beats"]
    if blob or type(start) not in (int, float) or not math.isfinite(start) or start < 0:
        raise ValueError("not a continuation")
    return Continuation(piece_from_dict(fields["prime"]), piece_from_dict(fields["generated"]), float(start))


ENGRAVING = Activity(
    "engraving the notation",
    "The piano roll and the audio show the same notes; the notation of a shorter piece may work.",
    RenderWorkerError,
)


def engrave_isolated(piece: Piece, width_px: int, projector: bool) -> Engraving:
    """`render.notation.notation_svg` run in a rendering worker: SVG pages of the piece's first bars.

    Raises:
        FormatError: as `notation_svg`; a `RenderWorkerError` when the worker overran a limit or failed.
    """
    args = piece_to_dict(piece), width_px, projector
    return run_in_worker("render", ENGRAVING, render_limits(), _engrave_job, *args, decode=_engraving)


def _engrave_job(piece: dict[str, Any], width_px: int, projector: bool) -> Answer:
    from musegen_core.render.notation import notation_svg

    engraving = notation_svg(piece_from_dict(piece), width_px=width_px, projector=projector)
    return [list(engraving.pages), engraving.bars_shown, engraving.bars_total], b""


def _engraving(value: Any, blob: bytearray) -> Engraving:
    from musegen_core.render.notation import Engraving

    pages, shown, total = _checked(value, list, 3)
    if blob or not 0 <= _checked(shown, int) <= _checked(total, int):
        raise ValueError("not an engraving")
    return Engraving(tuple(_checked(page, str) for page in _checked(pages, list)), shown, total)


def _open_job(filename: str, *, data: bytes) -> Answer:
    music_file = open_music_file(data, filename)
    return [music_file.format, list(music_file.tune_titles)], b""


def _load_job(filename: str, tune_index: int, *, data: bytes) -> Answer:
    return piece_to_dict(open_music_file(data, filename).load(tune_index)), b""


def _transcribe_job(filename: str, *, data: bytes) -> Answer:
    from musegen_core.transcribe import transcribe, transcription_to_dict

    return transcription_to_dict(transcribe(data, filename)), b""


def _transcription(value: Any, blob: bytearray) -> Transcription:
    from musegen_core.transcribe import transcription_from_dict

    if blob:
        raise ValueError("unexpected bytes after a transcription")
    try:
        return transcription_from_dict(_checked(value, dict))
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"not a transcription ({type(error).__name__})") from error


def _render_job(piece: dict[str, Any], settings: dict[str, Any], soundfont: dict[str, Any]) -> Answer:
    rendered = audio.render_in_process(
        piece_from_dict(piece), _settings_from_dict(settings), _soundfont_from_dict(soundfont)
    )
    header = {
        "sample_rate": rendered.sample_rate,
        "frames": len(rendered.audio),
        "soundfont": rendered.soundfont,
        "truncated": rendered.truncated,
        "message": rendered.message,
    }
    return header, memoryview(np.ascontiguousarray(rendered.audio, dtype="<f4")).cast("B")


_SETTINGS_FIELDS = tuple(field.name for field in dataclasses.fields(audio.RenderSettings))


def _settings_to_dict(settings: audio.RenderSettings) -> dict[str, Any]:
    """`settings` as JSON-ready data: the soundfont as ["id", id] or ["path", path], the programs as a list."""
    fields = {name: getattr(settings, name) for name in _SETTINGS_FIELDS}
    kind = "path" if isinstance(settings.soundfont, Path) else "id"
    return {**fields, "soundfont": [kind, str(settings.soundfont)], "programs": list(settings.programs)}


def _settings_from_dict(value: Any) -> audio.RenderSettings:
    """The `RenderSettings` written by `_settings_to_dict` (its own checks run again)."""
    fields = _record(value, _SETTINGS_FIELDS)
    kind, name = _checked(fields["soundfont"], list, 2)
    if kind not in ("id", "path"):
        raise ValueError("a soundfont is an id or a path")
    soundfont = Path(_checked(name, str)) if kind == "path" else _checked(name, str)
    programs = tuple(_checked(fields["programs"], list))
    return audio.RenderSettings(**{**fields, "soundfont": soundfont, "programs": programs})


def _soundfont_to_dict(soundfont: SoundFont) -> dict[str, Any]:
    return {"id": soundfont.id, "label": soundfont.label, "path": str(soundfont.path), "builtin": soundfont.builtin}


def _soundfont_from_dict(value: Any) -> SoundFont:
    fields = _record(value, ("id", "label", "path", "builtin"))
    return SoundFont(
        _checked(fields["id"], str),
        _checked(fields["label"], str),
        Path(_checked(fields["path"], str)),
        _checked(fields["builtin"], bool),
    )


def _tunes(value: Any, blob: bytearray) -> tuple[str, tuple[str, ...]]:
    """(format, tune titles) from an open job's answer."""
    file_format, titles = _checked(value, list, 2)
    if file_format not in FILE_FORMATS or not _checked(titles, list) or blob:
        raise ValueError("not a format and a list of tunes")
    return file_format, tuple(_checked(title, str) for title in titles)


def _piece(value: Any, blob: bytearray) -> Piece:
    if blob:
        raise ValueError("unexpected bytes after a piece")
    return piece_from_dict(value)


def _render(value: Any, blob: bytearray) -> audio.Render:
    """A `Render` from a render job's answer: float32 stereo frames, finite and within [-1, 1]."""
    fields = _checked(value, dict)
    frames = _checked(fields.get("frames"), int)
    if fields.get("sample_rate") != audio.SAMPLE_RATE or frames < 0 or len(blob) != frames * 8:
        raise ValueError("the audio does not match its header")
    samples = np.frombuffer(blob, dtype="<f4").reshape(frames, 2)
    if samples.size and not max(float(samples.max()), -float(samples.min())) <= 1.0:  # NaN fails too
        raise ValueError("the audio is not finite or not within [-1, 1]")
    samples.flags.writeable = False
    return audio.Render(
        samples,
        audio.SAMPLE_RATE,
        _checked(fields.get("soundfont"), str),
        truncated=_checked(fields.get("truncated"), bool),
        message=_checked(fields.get("message"), str),
    )


def _checked(value: Any, kind: type[T], length: int | None = None) -> T:
    if type(value) is not kind or (length is not None and len(value) != length):
        raise ValueError(f"expected {kind.__name__}")
    return value


def _record(value: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """`value`, a JSON object with exactly `keys`."""
    fields = _checked(value, dict)
    if set(fields) != set(keys):
        raise ValueError(f"expected the keys {', '.join(keys)}")
    return fields


# ---------------------------------------------------------------------------------------------------------------
# The server side: pools of workers, one job at a time each.


def run_in_worker(
    pool: str,
    activity: Activity,
    limits: Limits,
    target: Callable[..., Answer],
    *args: Any,
    data: bytes = b"",
    decode: Callable[[Any, bytearray], T],
) -> T:
    """`decode(*target(*args, data=data))`, with `target` run in a worker of `pool` ("read" or "render") under
    `limits`; `data=` is passed only when `data` is not empty.

    `target` must be a module-level function (it is sent by name), `args` JSON-ready values and `data` raw bytes (an
    upload); `target` returns a JSON-ready value and raw bytes, and `decode` turns them back into the result in this
    process, raising ValueError for anything unacceptable.

    Raises:
        TypeError, ValueError: the job cannot be sent (a target that is not a module-level function, an argument
            that JSON cannot hold); no worker is involved.
        MusegenError: what `target` raised (the same class, when it is one of `errors`' classes).
        WorkerError: `activity.error` when the worker overran `limits`, crashed, was killed, refused the request or
            answered something `decode` refused (the worker is then killed), or could not be started.
    """
    return _pool(pool).run(activity, _Job(target, args, limits, data), decode)


def shutdown() -> None:
    """Stop every idle worker; busy ones finish their job first. The next job starts fresh workers."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
    for pool in pools:
        pool.stop_idle()


class _Job(NamedTuple):
    """What a worker runs: `target(*args, data=data)` (without `data=` when it is empty) under `limits`.

    It travels as two frames, nothing pickled: a JSON header {"target": "module:qualname", "args": [...], "limits":
    {"timeout_s": ..., "memory_mb": ...}} (`header`, read back by `received`), then `data` as it is.
    """

    target: Callable[..., Answer]
    args: tuple[Any, ...]
    limits: Limits
    data: bytes = b""

    def header(self) -> bytes:
        """The JSON header; TypeError or ValueError when the job cannot be sent."""
        limits = {"timeout_s": self.limits.timeout_s, "memory_mb": self.limits.memory_mb}
        request = {"target": _target_name(self.target), "args": list(self.args), "limits": limits}
        return json.dumps(request, allow_nan=False).encode()

    @classmethod
    def received(cls, header: bytearray, data: bytearray) -> _Job:
        """The job a worker was sent; ValueError (or RecursionError) for anything `header` does not write."""
        fields = _record(json.loads(header, parse_constant=_no_constant), ("target", "args", "limits"))
        target = _resolve_target(_checked(fields["target"], str))
        return cls(target, tuple(_checked(fields["args"], list)), _limits_from_dict(fields["limits"]), bytes(data))

    def run(self) -> Answer:
        return self.target(*self.args, data=self.data) if self.data else self.target(*self.args)


def _target_name(target: Callable[..., Answer]) -> str:
    """The "module:qualname" of a module-level function; TypeError for anything else."""
    qualname = getattr(target, "__qualname__", "")
    if not isinstance(target, types.FunctionType) or not qualname.isidentifier():
        raise TypeError(f"a worker runs module-level functions only, not {target!r}")
    return f"{target.__module__}:{qualname}"


def _resolve_target(name: str) -> Callable[..., Answer]:
    """The module-level function called `name` ("module:qualname"), its module imported; ValueError for a name that
    is not one."""
    module_name, _, qualname = name.partition(":")
    target = None
    if qualname.isidentifier() and all(part.isidentifier() for part in module_name.split(".")):
        with contextlib.suppress(ImportError):
            target = getattr(importlib.import_module(module_name), qualname, None)
    if not isinstance(target, types.FunctionType):
        raise ValueError(f"{name!r} is not a module-level Python function")
    return target


def _limits_from_dict(value: Any) -> Limits:
    """The `Limits` in a request, each within the range its environment variable allows."""
    fields = _record(value, ("timeout_s", "memory_mb"))
    timeout_s, memory_mb = fields["timeout_s"], fields["memory_mb"]
    if type(timeout_s) not in (int, float) or not TIMEOUT_RANGE_S[0] <= timeout_s <= TIMEOUT_RANGE_S[1]:
        raise ValueError(f"timeout_s must be a number within {TIMEOUT_RANGE_S[0]:g} and {TIMEOUT_RANGE_S[1]:g}")
    if type(memory_mb) is not int or not MEMORY_RANGE_MB[0] <= memory_mb <= MEMORY_RANGE_MB[1]:
        raise ValueError(f"memory_mb must be a whole number within {MEMORY_RANGE_MB[0]} and {MEMORY_RANGE_MB[1]}")
    return Limits(float(timeout_s), memory_mb)


class _Pool:
    """Up to `size` warm workers of one kind, each serving one job at a time."""

    def __init__(self, kind: str, size: int) -> None:
        self.kind = kind
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def run(self, activity: Activity, job: _Job, decode: Callable[[Any, bytearray], T]) -> T:
        header = job.header()  # a job that cannot be sent fails here, before any worker is involved
        with self._slots:
            worker = self._take(activity)
            try:
                value, blob = worker.run(activity, header, job.data, job.limits)
                result = decode(value, blob)
            except WorkerError:
                worker.kill()
                raise
            except MusegenError:  # the job's own error (a file that is not music): the worker is fine
                self._release(worker)
                raise
            except (ValueError, TypeError, RecursionError) as error:
                worker.kill()
                raise _failure(activity, "garbled", job.limits, str(error)[:200]) from None
            except BaseException:
                worker.kill()
                raise
            self._release(worker)
        return result

    def stop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def _take(self, activity: Activity) -> _Worker:
        """An idle worker that is still alive, else a new one."""
        while True:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                return _Worker(self.kind, activity)
            if worker.alive():
                return worker
            worker.kill()

    def _release(self, worker: _Worker) -> None:
        if worker.jobs >= WORKER_MAX_JOBS:
            worker.kill()
            return
        with self._lock:
            self._idle.append(worker)


class _Worker:
    """One worker process and the server's end of its socket pair."""

    def __init__(self, kind: str, activity: Activity) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, kind, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=_worker_environment(),
                stdin=subprocess.DEVNULL,
                stdout=2,  # the server's stderr: a library's prints never mix into the CLI's --json output
            )
        self.channel = ours
        self.jobs = 0
        try:
            ready = _receive_frame(self.channel, len(_READY), time.monotonic() + START_TIMEOUT_S)
        except (OSError, EOFError, ValueError) as error:
            self.kill()
            detail = f"exit code {self.process.returncode}" if self.process.returncode else type(error).__name__
            raise activity.error(
                f"MuseGen could not start a worker process for {activity.doing} ({detail}); the server log may say "
                "why. Please try again.",
                "start",
            ) from error
        if ready != _READY:
            self.kill()
            raise activity.error(f"A new worker process for {activity.doing} answered nonsense.", "start")

    def run(self, activity: Activity, header: bytes, data: bytes, limits: Limits) -> tuple[Any, bytearray]:
        """Send a job (its `_Job.header` and data), wait for its answer until the deadline; a job error is raised, a
        worker failure too (the worker is then dead or must be killed)."""
        self.jobs += 1
        deadline = time.monotonic() + limits.timeout_s
        try:
            _send_frame(self.channel, header, deadline)
            _send_frame(self.channel, data, deadline)
            reply = _receive_frame(self.channel, MAX_HEADER_BYTES, deadline)
            blob = _receive_frame(self.channel, MAX_BLOB_BYTES, deadline)
        except TimeoutError:
            self.kill()
            raise _failure(activity, "timeout", limits) from None
        except (EOFError, OSError):
            reason, detail = self._death()
            raise _failure(activity, reason, limits, detail) from None
        return _open_reply(reply, activity, limits), blob

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.channel.close()
        if self.alive():
            self.process.kill()
        self.process.wait()

    def _death(self) -> tuple[str, str]:
        """Why the worker hung up: (reason, detail) from its exit status."""
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return "garbled", "it closed its channel"
        finally:
            self.channel.close()
        if code == -signal.SIGXCPU:
            return "cpu", ""
        if code == -signal.SIGKILL:
            return "killed", "SIGKILL, perhaps because the server ran out of memory"
        if code < 0:
            return "crash", (signal.strsignal(-code) or f"signal {-code}").lower()
        return "crash", f"exit code {code}"


def _worker_environment() -> dict[str, str]:
    """The server's environment without MuseGen's own settings (a worker needs none, and must not see the database
    URL or the admin secret's hash), with one-thread numeric libraries and the server's import path."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("MUSEGEN_")}
    return {**kept, **_WORKER_ENV, "PYTHONPATH": os.pathsep.join(sys.path)}


def _open_reply(header: bytearray, activity: Activity, limits: Limits) -> Any:
    """The value in a worker's JSON header; a job's MusegenError is raised, a failure or garbage too."""
    reply = json.loads(header, parse_constant=_no_constant)
    if not isinstance(reply, dict) or len(reply) != 1:
        raise ValueError("not a reply")
    ((kind, content),) = reply.items()
    if kind == "ok":
        return content
    if kind == "error":
        name, message = _checked(content, list, 2)
        raise _job_error(_checked(name, str), _checked(message, str)[:2000])
    if kind == "failure":
        reason, detail = _checked(content, list, 2)
        if reason not in ("memory", "failed"):
            raise ValueError("unknown failure")
        raise _failure(activity, reason, limits, _checked(detail, str)[:200])
    raise ValueError("unknown reply")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _job_error(name: str, message: str) -> MusegenError:
    """The job's own error, as the `errors` class of that name (MusegenError for any other name)."""
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, MusegenError)):
        kind = MusegenError
    return kind(message)


def _failure(activity: Activity, reason: str, limits: Limits, detail: str = "") -> WorkerError:
    doing = activity.doing
    what = {
        "timeout": f"MuseGen stopped {doing}: it took longer than {limits.timeout_s:g} s.",
        "cpu": f"MuseGen stopped {doing}: it used more than {limits.cpu_s} s of processor time.",
        "memory": f"MuseGen stopped {doing}: it needed more than {limits.memory_mb} MB of memory.",
        "crash": f"The worker process crashed while {doing} ({detail}).",
        "killed": f"The worker process was killed while {doing} ({detail}).",
        "garbled": f"The worker process sent back something MuseGen does not accept while {doing} ({detail}).",
        "failed": f"Something went wrong while {doing} ({detail}); the details are in the server log.",
    }[reason]
    return activity.error(f"{what} {activity.advice}", reason)


_POOLS: dict[str, _Pool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(kind: str) -> _Pool:
    if kind not in _WARM_UPS:
        raise ValueError(f"no worker pool {kind!r}; the pools are {', '.join(_WARM_UPS)}")
    with _POOLS_LOCK:
        if kind not in _POOLS:
            _POOLS[kind] = _Pool(kind, int(_env_number(WORKERS_ENV, 2, WORKERS_RANGE)))
        return _POOLS[kind]


atexit.register(shutdown)


# ---------------------------------------------------------------------------------------------------------------
# The worker side.


def worker_main() -> None:
    """A worker process (`python -c ... KIND FD`): warm up, say it is ready, then serve jobs until the server
    hangs up."""
    kind, fd = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server; its workers follow when it hangs up
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
    channel = socket.socket(fileno=fd)
    _WARM_UPS[kind]()
    _send_frame(channel, _READY)
    while True:
        try:
            request = _receive_frame(channel), _receive_frame(channel)
        except EOFError:
            return
        header, blob = _serve(*request)
        _send_frame(channel, header)
        _send_frame(channel, blob)


def _warm_reader() -> None:
    """Nothing to do: importing this module imported `formats` and music21."""


def _warm_renderer() -> None:
    """Render one note with the default settings: FluidSynth, the default SoundFont and the loudness meter (~1 s of
    imports) are loaded before the first job's clock starts. A failure is left for the jobs to report."""
    try:
        audio.render_in_process(
            Piece((Part("warm-up", (Note(60, 0.0, 0.25),)),)),
            audio.DEFAULT_SETTINGS,
            resolve_soundfont(DEFAULT_SOUNDFONT_ID),
        )
    except MusegenError:
        log.warning("the rendering worker could not render with the default SoundFont", exc_info=True)


def _warm_listener() -> None:
    """Import librosa and load its compiled pitch-tracking kernels (`transcribe.warm_up`)."""
    from musegen_core.transcribe import warm_up

    warm_up()


def _warm_generator() -> None:
    """Lower this worker's CPU priority, and import torch and the models' code (models load on first use)."""
    os.nice(GENERATE_NICENESS)
    import musegen_core.generate  # noqa: F401


_WARM_UPS: dict[str, Callable[[], None]] = {
    "read": _warm_reader,
    "render": _warm_renderer,
    "listen": _warm_listener,
    "generate": _warm_generator,
}


def _apply_limits(limits: Limits) -> None:
    """This job's address-space limit, and a CPU-time limit `limits.cpu_s` beyond what the worker used so far."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    _set_soft_limit(resource.RLIMIT_AS, limits.memory_mb * 2**20)
    _set_soft_limit(resource.RLIMIT_CPU, math.ceil(used.ru_utime + used.ru_stime) + limits.cpu_s)


def _set_soft_limit(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    resource.setrlimit(which, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))


def _serve(header: bytearray, data: bytearray) -> tuple[bytes, bytes | memoryview]:
    """The answer to one request: the job's, or a "failed" reply when the request is not a job (nothing is run)."""
    try:
        job = _Job.received(header, data)
    except (ValueError, RecursionError) as error:
        log.error("a worker refused a request: %s", error)
        return _reply("failure", ["failed", f"request refused: {error}"[:200]]), b""
    _apply_limits(job.limits)
    return _execute(job)


def _execute(job: _Job) -> tuple[bytes, bytes | memoryview]:
    """Run the job; its answer as a JSON header and raw bytes."""
    try:
        value, blob = job.run()
        return json.dumps({"ok": value}, allow_nan=False).encode(), blob
    except MemoryError:
        return _reply("failure", ["memory", ""]), b""
    except MusegenError as error:
        return _reply("error", [type(error).__name__, str(error)]), b""
    except Exception as error:  # boundary: a bug or a library failure ends this job, not the worker loop
        log.exception("a worker job failed")
        return _reply("failure", ["failed", type(error).__name__]), b""


def _reply(kind: str, content: list[str]) -> bytes:
    return json.dumps({kind: content}).encode()


# ---------------------------------------------------------------------------------------------------------------
# Framing: every message is its length (8 bytes, big-endian), then its bytes.


def _send_frame(channel: socket.socket, payload: bytes | memoryview, deadline: float | None = None) -> None:
    channel.settimeout(None if deadline is None else _remaining(deadline))
    channel.sendall(_FRAME.pack(len(payload)))
    channel.sendall(payload)


def _receive_frame(channel: socket.socket, max_bytes: int | None = None, deadline: float | None = None) -> bytearray:
    """One message; ValueError when it announces more than `max_bytes`, EOFError when the other end hung up."""
    (size,) = _FRAME.unpack(_receive_exactly(channel, _FRAME.size, deadline))
    if max_bytes is not None and size > max_bytes:
        raise ValueError(f"a message of {size:,} bytes (at most {max_bytes:,} expected)")
    return _receive_exactly(channel, size, deadline)


def _receive_exactly(channel: socket.socket, size: int, deadline: float | None) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        channel.settimeout(None if deadline is None else _remaining(deadline))
        count = channel.recv_into(view[received:])
        if count == 0:
            raise EOFError("the other end hung up")
        received += count
    return buffer


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left
