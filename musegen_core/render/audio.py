"""Render a `Piece` to stereo audio with FluidSynth, and encode it as WAV.

Two layers:

- `render(piece, settings)` is what the app and the CLI call. It picks the SoundFont (`soundfonts`), applies the
  `RenderSettings` (GM program per part, tempo, reverb + chorus, loudness normalisation, fades), cuts a hostile
  piece down to the render limits (saying so in `Render.message`) and caches each `Render` per (piece, settings)
  in a bounded LRU (`RENDER_CACHE_ENTRIES` renders, `RENDER_CACHE_BYTES` of audio), so a page may call it on
  every rerun. A cache miss renders in a killable worker process (`musegen_core.workers`: time and memory limits,
  a FluidSynth crash costs a `RenderWorkerError`, not the server); there loaded SoundFonts are pooled
  (`MAX_LOADED_SOUNDFONTS`). FluidSynth only ever plays note events made from a `Piece`, never uploaded bytes.
- `Synthesizer` is the engine: one loaded SoundFont, raw audio of a piece that is within the limits.

How the engine renders: the SoundFont is parsed ONCE into an owner synth. Each render creates a fresh FluidSynth
synth (~2 ms), lends it the loaded SoundFont, plays a sorted list of note events while writing float32 frames
straight into one preallocated `(frames, 2)` buffer, adds `TAIL_SECONDS` of release, and throws the synth away.
A fresh synth, not `system_reset()`, because FluidSynth voices keep amplitude/pan ramps from their previous note:
after a reset, renders of the same piece differed by up to 8e-5 (≈ 2.5 LSB of 16-bit audio). With a fresh synth
the same piece always gives bit-identical samples, effects included (their state starts fresh too). Reverb and
chorus are off by default (about 30 % faster, drier sound); on, they give a medium room with
`EFFECTS_TAIL_SECONDS` of release so the reverb can ring out.

Loudness: FluidSynth runs at a fixed gain (`SYNTH_GAIN`), so the engine keeps the relative loudness of pieces (one
melody peaks near -10 dBFS). `render` then normalises each render to `RenderSettings.target_lufs` (by default
`DEFAULT_TARGET_LUFS`, the ReplayGain 2.0 reference) with ITU-R BS.1770 loudness, so SoundFonts and takes play
equally loud. If a dense piece would then peak above `PEAK_LIMIT`, the whole render is scaled down to it (and is
quieter than the target): the output never clips. Finally short raised-cosine fades (`FADE_IN_MS`,
`RenderSettings.fade_out_ms`) make every render start and end at exactly zero: no click.

Limits: a render holds at most `MAX_RENDER_SECONDS` (10 minutes, release included: ≈ 212 MB of float32 stereo),
`MAX_RENDER_NOTES` notes and `MAX_RENDER_PARTS` parts. `render` plays a longer or denser piece up to the limit,
with its notes cut off there, and says so (`Render.truncated`, `Render.message`); too many parts, or no note to
play, is refused. The engine refuses anything over the limits, so no input can make it allocate more.
"""

from __future__ import annotations

import ctypes
import io
import numbers
import threading
import wave
import weakref
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musegen_core.errors import RenderError
from musegen_core.music import Part, Piece
from musegen_core.quiet_import import import_quietly
from musegen_core.render.mastering import fade_edges, normalize_loudness
from musegen_core.render.soundfonts import (
    DEFAULT_SOUNDFONT,
    DEFAULT_SOUNDFONT_ID,
    SoundFont,
    check_soundfont_file,
    resolve_soundfont,
)

if TYPE_CHECKING:
    import fluidsynth

SAMPLE_RATE = 44100  # frames per second
TAIL_SECONDS = 1.0  # release rendered after the last note-off
EFFECTS_TAIL_SECONDS = 2.0  # release with reverb on: the room rings longer
MAX_RENDER_SECONDS = 600.0  # longest audio (piece + tail) a render may produce: 600 s ≈ 212 MB of float32 stereo
MAX_RENDER_NOTES = 100_000
MAX_RENDER_PARTS = 64  # one MIDI channel each
SYNTH_GAIN = 2.0  # FluidSynth master gain (its default is 0.2, which leaves a melody near -30 dBFS)
PEAK_LIMIT = 0.95  # renders peaking above this are scaled down to it
DEFAULT_TARGET_LUFS = -18.0  # ReplayGain 2.0's reference loudness: a melody peaks well below PEAK_LIMIT there
TARGET_LUFS_RANGE = (-40.0, -8.0)
FADE_IN_MS = 3.0  # short enough to keep every attack
DEFAULT_FADE_OUT_MS = 50.0
MAX_FADE_OUT_MS = 10_000.0
TEMPO_RANGE_BPM = (10.0, 400.0)  # as `Piece` allows
RENDER_CACHE_ENTRIES = 64
RENDER_CACHE_BYTES = 256 * 2**20  # of float32 audio (a 3-minute render is ≈ 64 MB; its WAV, once made, half that)
MAX_LOADED_SOUNDFONTS = 3  # each loaded SoundFont holds its samples in memory (FluidR3 GM: ~150 MB)
DRUM_BANK = 128
REVERB_SEND = 80  # MIDI CC 91 of every channel when effects are on
CHORUS_SEND = 30  # MIDI CC 93
_FLUID_WARN = 2  # FluidSynth log level of the "No preset found" warnings printed when a SoundFont is taken back
_EFFECTS_OFF = {"synth.reverb.active": 0, "synth.chorus.active": 0}
_EFFECTS_ON = {
    "synth.reverb.active": 1,
    "synth.chorus.active": 1,
    "synth.reverb.room-size": 0.6,
    "synth.reverb.damp": 0.3,
    "synth.reverb.width": 0.8,
    "synth.reverb.level": 0.7,
}

# (frame, kind, channel, pitch, velocity): kind 0 = note-off, 1 = note-on, so offs sort before ons at one frame
_Event = tuple[int, int, int, int, int]


def _check_range(name: str, value: object, bounds: tuple[float, float], unit: str) -> None:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RenderError(f"{name} must be within {low:g} and {high:g} {unit} (received {value!r})")


def _program(program: object) -> int | None:
    """A GM program override as a plain int (numpy integers from a UI widget too), or None."""
    if program is None:
        return None
    if isinstance(program, bool) or not isinstance(program, numbers.Integral) or not 0 <= int(program) <= 127:
        raise RenderError(f"a General MIDI program must be within 0 and 127 (received {program!r})")
    return int(program)


@dataclass(frozen=True)
class RenderSettings:
    """How a piece is rendered. Frozen and hashable: equal settings share one cached `Render`.

    Attributes:
        soundfont: a built-in id (see `soundfonts.installed_soundfonts()`), or the path of the user's own
            .sf2/.sf3 file, accepted only where the server allows it (`MUSEGEN_ALLOW_USER_SOUNDFONTS=1`).
        programs: a General MIDI program (0–127) per part, in part order, overriding the part's own; None, or
            no entry, keeps the part's program; entries beyond the piece's parts are ignored. On a drum part the
            program picks the drum kit.
        tempo_bpm: play at this tempo instead of the piece's own (10–400); None keeps it.
        effects: reverb and chorus (a medium room); off is drier and about 30 % faster.
        normalize: scale the render to `target_lufs` integrated loudness (ITU-R BS.1770).
        target_lufs: loudness target, -40 to -8 LUFS.
        fade_out_ms: length of the fade to silence at the end (0–10,000 ms); the fade-in is always `FADE_IN_MS`.
    """

    soundfont: str | Path = DEFAULT_SOUNDFONT_ID
    programs: tuple[int | None, ...] = ()
    tempo_bpm: float | None = None
    effects: bool = False
    normalize: bool = True
    target_lufs: float = DEFAULT_TARGET_LUFS
    fade_out_ms: float = DEFAULT_FADE_OUT_MS

    def __post_init__(self) -> None:
        object.__setattr__(self, "programs", tuple(map(_program, self.programs)))
        if not isinstance(self.soundfont, str | Path):
            raise RenderError(f"soundfont must be an id or a path (received {self.soundfont!r})")
        if self.tempo_bpm is not None:
            _check_range("tempo", self.tempo_bpm, TEMPO_RANGE_BPM, "bpm")
        _check_range("loudness target", self.target_lufs, TARGET_LUFS_RANGE, "LUFS")
        _check_range("fade-out", self.fade_out_ms, (0.0, MAX_FADE_OUT_MS), "ms")

    @property
    def tail_seconds(self) -> float:
        return EFFECTS_TAIL_SECONDS if self.effects else TAIL_SECONDS

    def apply(self, piece: Piece) -> Piece:
        """`piece` with these programs and this tempo: the music the engine plays."""
        parts = tuple(
            part if i >= len(self.programs) or self.programs[i] is None else replace(part, program=self.programs[i])
            for i, part in enumerate(piece.parts)
        )
        tempo = piece.tempo_bpm if self.tempo_bpm is None else self.tempo_bpm
        return replace(piece, parts=parts, tempo_bpm=tempo)


DEFAULT_SETTINGS = RenderSettings()


@dataclass(frozen=True, eq=False)
class Render:
    """A finished render: float32 stereo `audio` shaped (frames, 2), read-only (renders are shared by the cache).

    `truncated` is True when the piece was longer or denser than a render may be; `message` then says, for the
    user, what was played and why.
    """

    audio: np.ndarray
    sample_rate: int
    soundfont: str  # label of the SoundFont used
    truncated: bool = False
    message: str = ""

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate

    @cached_property
    def wav(self) -> bytes:
        """16-bit PCM stereo WAV bytes (encoded once per render)."""
        return encode_wav(self.audio, self.sample_rate)


def render(piece: Piece, settings: RenderSettings = DEFAULT_SETTINGS) -> Render:
    """The finished audio of `piece` under `settings`, from the cache when this (piece, settings) was rendered.

    The same (equal) piece and settings return the same `Render` object while it stays in the cache; a user
    SoundFont replaced on disk is rendered afresh. A piece longer or denser than the render limits is played up
    to them (`Render.truncated`, `Render.message`).

    Raises:
        SoundFontError: the chosen SoundFont is not installed, not allowed, too large or malformed.
        RenderError: the piece has no notes or more than `MAX_RENDER_PARTS` parts, or FluidSynth failed.
    """
    soundfont = resolve_soundfont(settings.soundfont)
    key = (piece, settings, soundfont.identity())
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    return _CACHE.put(key, _render_isolated(piece, settings, soundfont))


def render_uncached(piece: Piece, settings: RenderSettings = DEFAULT_SETTINGS) -> Render:
    """`render` without the cache (a fresh `Render` every call; benchmarks use it)."""
    return _render_isolated(piece, settings, resolve_soundfont(settings.soundfont))


def render_in_process(piece: Piece, settings: RenderSettings, soundfont: SoundFont) -> Render:
    """Render in this process: what a rendering worker runs (`render` and `render_uncached` send it there).

    FluidSynth only ever plays note events made here from a `Piece`, the app's own validated music type; no uploaded
    bytes (MIDI or otherwise) reach it. Keep it so.
    """
    played, message = fit_to_render_limits(settings.apply(piece), settings.tail_seconds)
    audio = synthesizer_for(soundfont).render(played, effects=settings.effects)
    if settings.normalize:
        normalize_loudness(audio, SAMPLE_RATE, settings.target_lufs)
    _limit_peak(audio)
    fade_edges(audio, SAMPLE_RATE, FADE_IN_MS, settings.fade_out_ms)
    audio.flags.writeable = False
    return Render(audio, SAMPLE_RATE, soundfont.label, truncated=bool(message), message=message)


def _render_isolated(piece: Piece, settings: RenderSettings, soundfont: SoundFont) -> Render:
    """`render_in_process` in a killable worker process, under `MUSEGEN_RENDER_TIMEOUT_S`/`_MEMORY_MB`: a hang or a
    crash in libfluidsynth costs a `RenderWorkerError`, not the server."""
    from musegen_core.workers import render_isolated  # it imports this module

    return render_isolated(piece, settings, soundfont)


def fit_to_render_limits(piece: Piece, tail_seconds: float = TAIL_SECONDS) -> tuple[Piece, str]:
    """`piece` cut to what a render may hold, and a message for the user ("" when nothing was cut).

    Notes starting at or after the cut are dropped and notes sounding across it end there, so the release tail
    still follows. The cut falls where the audio would pass `MAX_RENDER_SECONDS`, or at the start of note number
    `MAX_RENDER_NOTES + 1` in time order, whichever comes first.

    Raises:
        RenderError: no notes, more than `MAX_RENDER_PARTS` parts, or no note starts before the cut.
    """
    _check_playable(piece)
    cut, reason = _cut(piece, tail_seconds)
    if cut is None:
        return piece, ""
    kept = piece.with_parts(tuple(_cut_part(part, cut) for part in piece.parts))
    if kept.note_count == 0:
        raise RenderError(f"nothing to play: no note starts before {_clock(cut * piece.seconds_per_beat)} ({reason})")
    dropped = f" ({kept.note_count:,} of {piece.note_count:,} notes)" if kept.note_count < piece.note_count else ""
    message = (
        f"Only the first {_clock(kept.duration_seconds)} of {_clock(piece.duration_seconds)}{dropped} "
        f"was rendered: {reason}."
    )
    return kept, message


def synthesizer_for(soundfont: SoundFont) -> Synthesizer:
    """The shared engine for `soundfont`, loading it on first use (0.05 s for TimGM6mb, ~3 s for an SF3).

    At most `MAX_LOADED_SOUNDFONTS` stay loaded; the least recently used is dropped and freed once no render
    holds it any more.
    """
    key = soundfont.identity()
    with _POOL_LOCK:
        synth = _POOL.get(key)
        if synth is None:
            synth = _POOL[key] = Synthesizer(soundfont.path)
        _POOL.move_to_end(key)
        while len(_POOL) > MAX_LOADED_SOUNDFONTS:
            _POOL.popitem(last=False)
    return synth


class RenderCache:
    """Least-recently-used `Render`s by key, bounded by count and by bytes of audio; thread-safe."""

    def __init__(self, max_entries: int = RENDER_CACHE_ENTRIES, max_bytes: int = RENDER_CACHE_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._renders: OrderedDict[Hashable, Render] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._renders)

    def get(self, key: Hashable) -> Render | None:
        with self._lock:
            found = self._renders.get(key)
            if found is not None:
                self._renders.move_to_end(key)
            return found

    def put(self, key: Hashable, new: Render) -> Render:
        """Store `new` unless `key` is already there; returns the stored render (so racing renders share one)."""
        with self._lock:
            if key in self._renders:
                return self._renders[key]
            if new.audio.nbytes <= self.max_bytes:
                self._renders[key] = new
                self._bytes += new.audio.nbytes
                while len(self._renders) > self.max_entries or self._bytes > self.max_bytes:
                    self._bytes -= self._renders.popitem(last=False)[1].audio.nbytes
            return new


_CACHE = RenderCache()
_POOL: OrderedDict[tuple[str, int, int], Synthesizer] = OrderedDict()
_POOL_LOCK = threading.Lock()


class Synthesizer:
    """A FluidSynth renderer holding one loaded SoundFont; thread-safe (renders are serialised by a lock).

    The SoundFont's RIFF structure is checked (`soundfonts.check_soundfont_file`, any size) before FluidSynth
    parses it. Whoever passes a path here vouches for it: users' files go through `soundfonts.resolve_soundfont`.

    Args:
        soundfont: path of a `.sf2`/`.sf3` file.
        sample_rate: output rate in frames per second (8,000–96,000).

    Raises:
        RenderError: the FluidSynth library is missing, or the SoundFont is missing or not a valid SoundFont
            (`SoundFontError`).
    """

    def __init__(self, soundfont: Path = DEFAULT_SOUNDFONT, sample_rate: int = SAMPLE_RATE) -> None:
        if not 8000 <= sample_rate <= 96000:
            raise RenderError(f"sample rate must be within 8000 and 96000 Hz (received {sample_rate})")
        self.soundfont = Path(soundfont)
        self.sample_rate = int(sample_rate)
        check_soundfont_file(self.soundfont, max_bytes=None)
        self._fluidsynth = _import_fluidsynth()
        self._lib = _FluidLib(self._fluidsynth.lib)
        self._lock = threading.Lock()
        self._owner = self._new_synth(channels=16, effects=False)
        self._free_owner = weakref.finalize(self, self._owner.delete)  # also when dropped from the pool
        self._sfont = self._load_soundfont(self.soundfont)

    def render(self, piece: Piece, effects: bool = False) -> np.ndarray:
        """Audio of `piece` plus its release tail (`TAIL_SECONDS`, or `EFFECTS_TAIL_SECONDS` with reverb and
        chorus on): float32, shape (frames, 2), values in [-PEAK_LIMIT, PEAK_LIMIT].

        Raises:
            RenderError: the piece has no notes, would last longer than `MAX_RENDER_SECONDS` or has more than
                `MAX_RENDER_NOTES` notes or `MAX_RENDER_PARTS` parts (`fit_to_render_limits` cuts it to fit), or
                FluidSynth failed.
        """
        tail = EFFECTS_TAIL_SECONDS if effects else TAIL_SECONDS
        frames = _check_renderable(piece, self.sample_rate, tail)
        events = _note_events(piece, self.sample_rate)
        with self._lock:
            if self._owner is None:
                raise RenderError("this synthesiser has been closed")
            audio = self._play(piece.parts, events, frames, effects)
        return _limit_peak(audio)

    def render_wav(self, piece: Piece) -> bytes:
        """`render(piece)` encoded as a 16-bit PCM stereo WAV file (bytes)."""
        return encode_wav(self.render(piece), self.sample_rate)

    def close(self) -> None:
        """Free the SoundFont and the owner synth; later renders raise RenderError. Safe to call twice."""
        with self._lock:
            self._owner = None
            self._free_owner()

    def __enter__(self) -> Synthesizer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _new_synth(self, channels: int, effects: bool) -> fluidsynth.Synth:
        options = _EFFECTS_ON if effects else _EFFECTS_OFF
        synth = self._fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=self.sample_rate, channels=channels, **options)
        if not synth.synth:
            raise RenderError("FluidSynth could not create a synthesiser")
        return synth

    def _load_soundfont(self, path: Path) -> int:
        """Parse the SoundFont into the owner synth; returns FluidSynth's pointer to it."""
        sfid = self._owner.sfload(str(path))
        if sfid < 0:
            self.close()
            raise RenderError(f"FluidSynth could not load the SoundFont {path.name}")
        sfont = self._lib.get_sfont_by_id(self._owner.synth, sfid)
        if not sfont:
            self.close()
            raise RenderError(f"FluidSynth lost the SoundFont it just loaded: {path}")
        return sfont

    def _play(self, parts: tuple[Part, ...], events: list[_Event], frames: int, effects: bool) -> np.ndarray:
        """Run the event loop in a fresh synth that borrows the loaded SoundFont."""
        channels = _channels(parts)
        synth = self._new_synth(channels=16 * (max(channels) // 16 + 1), effects=effects)
        sfid = self._lib.add_sfont(synth.synth, self._sfont)
        if sfid < 0:
            synth.delete()
            raise RenderError("FluidSynth could not attach the SoundFont")
        try:
            for part, channel in zip(parts, channels, strict=True):
                _select_program(synth, channel, sfid, part)
                if effects:
                    synth.cc(channel, 91, REVERB_SEND)
                    synth.cc(channel, 93, CHORUS_SEND)
            return self._write_events(synth, events, frames)
        finally:
            self._lib.remove_sfont_quietly(synth.synth, self._sfont)
            synth.delete()

    def _write_events(self, synth: fluidsynth.Synth, events: list[_Event], frames: int) -> np.ndarray:
        """Advance the synth from event to event, writing interleaved stereo frames into one buffer."""
        audio = np.zeros((frames, 2), dtype=np.float32)
        pointer = audio.ctypes.data
        sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) → notes holding it (overlaps on one key)
        position = 0
        for frame, kind, channel, pitch, velocity in events:
            if frame > position:
                self._lib.write_float(synth.synth, frame - position, pointer, 2 * position)
                position = frame
            held = sounding.get((channel, pitch), 0)
            if kind == 1:
                synth.noteon(channel, pitch, velocity)
                sounding[(channel, pitch)] = held + 1
            else:
                if held == 1:  # only the last overlapping note on a key releases it
                    synth.noteoff(channel, pitch)
                sounding[(channel, pitch)] = held - 1
        self._lib.write_float(synth.synth, frames - position, pointer, 2 * position)
        return audio


def pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio with values in [-1, 1] as little-endian 16-bit integers of the same shape."""
    scaled = np.multiply(audio, 32767.0, dtype=np.float32)  # one temporary copy, then in place
    np.clip(scaled, -32767.0, 32767.0, out=scaled)
    return np.rint(scaled, out=scaled).astype("<i2")


def encode_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes of float audio shaped (frames, channels) with values in [-1, 1]."""
    pcm = pcm16(audio)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(pcm.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def wav_duration_seconds(wav: bytes) -> float:
    """Duration in seconds of WAV bytes. Raises RenderError when the bytes are not a WAV file."""
    try:
        with wave.open(io.BytesIO(wav), "rb") as reader:
            return reader.getnframes() / reader.getframerate()
    except (wave.Error, EOFError) as error:
        raise RenderError(f"not a WAV file ({error})") from error


def _import_fluidsynth() -> Any:
    try:
        return import_quietly("fluidsynth")
    except ImportError as error:
        raise RenderError(f"FluidSynth is not available ({error}); install libfluidsynth3 and pyfluidsynth") from error


def _check_playable(piece: Piece) -> None:
    if piece.note_count == 0:
        raise RenderError("nothing to play: the piece has no notes")
    if len(piece.parts) > MAX_RENDER_PARTS:
        raise RenderError(f"too many parts to render: {len(piece.parts)} (the limit is {MAX_RENDER_PARTS})")


def _check_renderable(piece: Piece, sample_rate: int, tail_seconds: float) -> int:
    """Frames of the render of `piece` (with its tail), or RenderError when the piece is over a limit."""
    _check_playable(piece)
    if piece.note_count > MAX_RENDER_NOTES:
        raise RenderError(f"too many notes to render: {piece.note_count} (the limit is {MAX_RENDER_NOTES})")
    seconds = piece.duration_seconds + tail_seconds
    if not seconds <= MAX_RENDER_SECONDS + 1 / sample_rate:  # one frame of rounding; also refuses inf and nan
        raise RenderError(
            f"too long to render: {seconds:.0f} s of audio (the limit is {MAX_RENDER_SECONDS:.0f} s); "
            "shorten the piece or raise its tempo"
        )
    return round(piece.duration_seconds * sample_rate) + round(tail_seconds * sample_rate)


def _cut(piece: Piece, tail_seconds: float) -> tuple[float | None, str]:
    """Where (in beats) a piece over the limits must be cut, and why; (None, "") when it fits."""
    cuts = []
    last_beat = (MAX_RENDER_SECONDS - tail_seconds) / piece.seconds_per_beat
    if piece.end_beats > last_beat:
        cuts.append((last_beat, f"a render lasts at most {MAX_RENDER_SECONDS / 60:g} minutes, release included"))
    if piece.note_count > MAX_RENDER_NOTES:
        starts = sorted(note.start_beats for part in piece.parts for note in part.notes)
        cuts.append((starts[MAX_RENDER_NOTES], f"a render plays at most {MAX_RENDER_NOTES:,} notes"))
    return min(cuts, default=(None, ""))


def _cut_part(part: Part, cut_beats: float) -> Part:
    """The notes of `part` that start before `cut_beats`, those still sounding there ending at it."""
    notes = tuple(
        note if note.end_beats <= cut_beats else replace(note, duration_beats=cut_beats - note.start_beats)
        for note in part.notes
        if note.start_beats < cut_beats
    )
    return replace(part, notes=notes)


def _clock(seconds: float) -> str:
    """A duration as a musician reads it: 12.5 s, 3:07, 1:02:03."""
    if not seconds < 100 * 3600:
        return "more than 100 hours"
    if seconds < 60:
        return f"{seconds:.1f} s"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _channels(parts: tuple[Part, ...]) -> list[int]:
    """One MIDI channel per part: drums on channels 9, 25, 41, …; other parts on the rest, in order."""
    melodic = (c for c in range(16 * MAX_RENDER_PARTS) if c % 16 != 9)
    drums = (c for c in range(9, 16 * MAX_RENDER_PARTS, 16))
    return [next(drums) if part.is_drum else next(melodic) for part in parts]


def _note_events(piece: Piece, sample_rate: int) -> list[_Event]:
    """Sorted note-on/off events of every part, times in frames (a note lasts at least one frame)."""
    frames_per_beat = piece.seconds_per_beat * sample_rate
    events: list[_Event] = []
    for part, channel in zip(piece.parts, _channels(piece.parts), strict=True):
        for note in part.notes:
            on = round(note.start_beats * frames_per_beat)
            off = max(round(note.end_beats * frames_per_beat), on + 1)
            events.append((on, 1, channel, note.pitch, note.velocity))
            events.append((off, 0, channel, note.pitch, 0))
    events.sort()
    return events


def _select_program(synth: fluidsynth.Synth, channel: int, sfid: int, part: Part) -> None:
    """The part's GM program (drum kit in bank 128), else the bank's first preset, else RenderError."""
    bank = DRUM_BANK if part.is_drum else 0
    for program in (part.program, 0):
        if synth.program_select(channel, sfid, bank, program) == 0:
            return
    raise RenderError(f"the SoundFont has no instrument for part {part.name!r} (bank {bank}, program {part.program})")


def _limit_peak(audio: np.ndarray) -> np.ndarray:
    """Scale `audio` in place down to `PEAK_LIMIT` if it peaks above it; quieter audio is left as is."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > PEAK_LIMIT:
        audio *= np.float32(PEAK_LIMIT / peak)
        np.clip(audio, -PEAK_LIMIT, PEAK_LIMIT, out=audio)  # float32 rounding may leave the peak 1 ulp above
    return audio


class _FluidLib:
    """The few libfluidsynth calls pyfluidsynth does not wrap, declared with ctypes."""

    def __init__(self, library_name: str) -> None:
        lib = ctypes.CDLL(library_name)
        ptr, num = ctypes.c_void_p, ctypes.c_int
        self._write_float = _declare(lib, "fluid_synth_write_float", num, ptr, num, ptr, num, num, ptr, num, num)
        self._get_sfont = _declare(lib, "fluid_synth_get_sfont_by_id", ptr, ptr, num)
        self._add_sfont = _declare(lib, "fluid_synth_add_sfont", num, ptr, ptr)
        self._remove_sfont = _declare(lib, "fluid_synth_remove_sfont", num, ptr, ptr)
        self._set_log = _declare(lib, "fluid_set_log_function", ptr, num, ptr, ptr)

    def write_float(self, synth: int, frames: int, buffer: int, offset: int) -> None:
        """Render `frames` stereo frames into the interleaved float32 `buffer` from float index `offset`."""
        if self._write_float(synth, frames, buffer, offset, 2, buffer, offset + 1, 2) != 0:
            raise RenderError("FluidSynth failed while rendering audio")

    def get_sfont_by_id(self, synth: int, sfid: int) -> int:
        return self._get_sfont(synth, sfid)

    def add_sfont(self, synth: int, sfont: int) -> int:
        return self._add_sfont(synth, sfont)

    def remove_sfont_quietly(self, synth: int, sfont: int) -> None:
        """Take the SoundFont back without FluidSynth's "No preset found" warnings (one per channel)."""
        previous = self._set_log(_FLUID_WARN, None, None)
        try:
            self._remove_sfont(synth, sfont)
        finally:
            self._set_log(_FLUID_WARN, previous, None)


def _declare(lib: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    function = getattr(lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)
    return function
