"""Render a `Piece` to stereo audio with FluidSynth, and encode it as WAV.

How a render works: the SoundFont is parsed ONCE into an owner synth. Each render creates a fresh FluidSynth
synth (~2 ms), lends it the loaded SoundFont, plays a sorted list of note events while writing float32 frames
straight into one preallocated `(frames, 2)` buffer, adds `TAIL_SECONDS` of release, and throws the synth away.
A fresh synth, not `system_reset()`, because FluidSynth voices keep amplitude/pan ramps from their previous note:
after a reset, renders of the same piece differed by up to 8e-5 (≈ 2.5 LSB of 16-bit audio). With a fresh synth
the same piece always gives bit-identical samples. Reverb and chorus are off (about 30 % faster, drier sound).

Loudness: FluidSynth runs at a fixed gain (`SYNTH_GAIN`), so takes keep their relative loudness (one melody
peaks near -10 dBFS). Only if a dense piece would exceed `PEAK_LIMIT` is the whole render scaled down to it:
the output never clips.
"""

from __future__ import annotations

import ctypes
import importlib.util
import io
import threading
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musegen_core.errors import RenderError
from musegen_core.music import Part, Piece
from musegen_core.quiet_import import import_quietly

if TYPE_CHECKING:
    import fluidsynth


def _pretty_midi_soundfont() -> Path:
    """The General MIDI SoundFont bundled with pretty_midi (found without importing it: that takes ~0.2 s)."""
    spec = importlib.util.find_spec("pretty_midi")
    folder = Path(spec.origin).parent if spec and spec.origin else Path("pretty_midi-is-not-installed")
    return folder / "TimGM6mb.sf2"


DEFAULT_SOUNDFONT = _pretty_midi_soundfont()
SAMPLE_RATE = 44100  # frames per second
TAIL_SECONDS = 1.0  # release rendered after the last note-off
MAX_RENDER_SECONDS = 600.0  # longest audio (piece + tail) a render may produce: 600 s ≈ 212 MB of float32 stereo
MAX_RENDER_NOTES = 100_000
MAX_RENDER_PARTS = 64  # one MIDI channel each
SYNTH_GAIN = 2.0  # FluidSynth master gain (its default is 0.2, which leaves a melody near -30 dBFS)
PEAK_LIMIT = 0.95  # renders peaking above this are scaled down to it
DRUM_BANK = 128
_FLUID_WARN = 2  # FluidSynth log level of the "No preset found" warnings printed when a SoundFont is taken back
_EFFECTS_OFF = {"synth.reverb.active": 0, "synth.chorus.active": 0}

# (frame, kind, channel, pitch, velocity): kind 0 = note-off, 1 = note-on, so offs sort before ons at one frame
_Event = tuple[int, int, int, int, int]


class Synthesizer:
    """A FluidSynth renderer holding one loaded SoundFont; thread-safe (renders are serialised by a lock).

    Args:
        soundfont: path of a `.sf2` file.
        sample_rate: output rate in frames per second (8,000–96,000).

    Raises:
        RenderError: the FluidSynth library is missing, or the SoundFont is missing or not a valid SoundFont.
    """

    def __init__(self, soundfont: Path = DEFAULT_SOUNDFONT, sample_rate: int = SAMPLE_RATE) -> None:
        if not 8000 <= sample_rate <= 96000:
            raise RenderError(f"sample rate must be within 8000 and 96000 Hz (received {sample_rate})")
        self.soundfont = Path(soundfont)
        self.sample_rate = int(sample_rate)
        self._fluidsynth = _import_fluidsynth()
        self._lib = _FluidLib(self._fluidsynth.lib)
        self._lock = threading.Lock()
        self._owner = self._new_synth(channels=16)
        self._sfont = self._load_soundfont(self.soundfont)

    def render(self, piece: Piece) -> np.ndarray:
        """Audio of `piece` plus `TAIL_SECONDS` of release: float32, shape (frames, 2), values in [-1, 1].

        Raises:
            RenderError: the piece has no notes, is longer than `MAX_RENDER_SECONDS` or has more than
                `MAX_RENDER_NOTES` notes, or FluidSynth failed.
        """
        _check_renderable(piece)
        events = _note_events(piece, self.sample_rate)
        frames = round(piece.duration_seconds * self.sample_rate) + round(TAIL_SECONDS * self.sample_rate)
        with self._lock:
            if self._owner is None:
                raise RenderError("this synthesiser has been closed")
            audio = self._play(piece.parts, events, frames)
        return _limit_peak(audio)

    def render_wav(self, piece: Piece) -> bytes:
        """`render(piece)` encoded as a 16-bit PCM stereo WAV file (bytes)."""
        return encode_wav(self.render(piece), self.sample_rate)

    def close(self) -> None:
        """Free the SoundFont and the owner synth; later renders raise RenderError. Safe to call twice."""
        with self._lock:
            if self._owner is not None:
                self._owner.delete()
                self._owner = None

    def __enter__(self) -> Synthesizer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _new_synth(self, channels: int) -> fluidsynth.Synth:
        synth = self._fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=self.sample_rate, channels=channels, **_EFFECTS_OFF)
        if not synth.synth:
            raise RenderError("FluidSynth could not create a synthesiser")
        return synth

    def _load_soundfont(self, path: Path) -> int:
        """Parse the SoundFont into the owner synth; returns FluidSynth's pointer to it."""
        if not path.is_file():
            self.close()
            raise RenderError(f"SoundFont not found: {path}")
        sfid = self._owner.sfload(str(path))
        if sfid < 0:
            self.close()
            raise RenderError(f"not a valid SoundFont (.sf2) file: {path}")
        sfont = self._lib.get_sfont_by_id(self._owner.synth, sfid)
        if not sfont:
            self.close()
            raise RenderError(f"FluidSynth lost the SoundFont it just loaded: {path}")
        return sfont

    def _play(self, parts: tuple[Part, ...], events: list[_Event], frames: int) -> np.ndarray:
        """Run the event loop in a fresh synth that borrows the loaded SoundFont."""
        channels = _channels(parts)
        synth = self._new_synth(channels=16 * (max(channels) // 16 + 1))
        sfid = self._lib.add_sfont(synth.synth, self._sfont)
        if sfid < 0:
            synth.delete()
            raise RenderError("FluidSynth could not attach the SoundFont")
        try:
            for part, channel in zip(parts, channels, strict=True):
                _select_program(synth, channel, sfid, part)
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


def encode_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes of float audio shaped (frames, channels) with values in [-1, 1]."""
    scaled = np.multiply(audio, 32767.0, dtype=np.float32)  # one temporary copy, then in place
    np.clip(scaled, -32767.0, 32767.0, out=scaled)
    pcm = np.rint(scaled, out=scaled).astype("<i2")
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


def _check_renderable(piece: Piece) -> None:
    if piece.note_count == 0:
        raise RenderError("nothing to play: the piece has no notes")
    if len(piece.parts) > MAX_RENDER_PARTS:
        raise RenderError(f"too many parts to render: {len(piece.parts)} (the limit is {MAX_RENDER_PARTS})")
    if piece.note_count > MAX_RENDER_NOTES:
        raise RenderError(f"too many notes to render: {piece.note_count} (the limit is {MAX_RENDER_NOTES})")
    seconds = piece.duration_seconds + TAIL_SECONDS
    if seconds > MAX_RENDER_SECONDS:
        raise RenderError(
            f"too long to render: {seconds:.0f} s of audio (the limit is {MAX_RENDER_SECONDS:.0f} s); "
            "shorten the piece or raise its tempo"
        )


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
