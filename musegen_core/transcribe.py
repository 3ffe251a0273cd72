"""Hum, sing, whistle or play a melody: audio → `Piece`, offline (no model download).

Pipeline (`transcribe`):

1. Decode with libsndfile (the `soundfile` wheel bundles libsndfile ≥ 1.1, which reads WAV, FLAC, OGG/Vorbis,
   OGG/Opus and MP3 with no ffmpeg), block by block, mixing every channel down to mono as it goes, so memory is
   bounded by the mono signal whatever the header says. Limits: `MAX_UPLOAD_BYTES`, `MAX_SECONDS` (a longer
   recording is refused from its header, or as soon as decoding passes the limit: never a long hang),
   `SAMPLE_RATE_RANGE` and `MAX_CHANNELS`. Any other rate is resampled (soxr) to `TRACKER_RATE`.
2. Refuse silence (peak below `SILENCE_DBFS`); warn, not refuse, when more than `CLIPPING_FRACTION` of the samples
   sit at full scale (`Transcription.warnings`): pitch survives clipping well (a test melody still comes back
   exactly with 22 % of its samples clipped; at 38 % one note jumps an octave and a repeat is lost), so refusing
   would throw away takes that are fine.
3. Track the pitch with probabilistic YIN (`librosa.pyin`, an HMM over `RESOLUTION`-semitone bins from `FMIN_HZ` to
   `FMAX_HZ`), then cut voiced runs into notes (`_segment`): frames quieter than `GATE_DB` below the loudest are
   unvoiced; a median-filtered pitch is held on one semitone until it strays more than `HYSTERESIS` semitones
   (so vibrato and drift do not split a note), the cut moved back to where the pitch began to move; a voiced run
   is also cut where the level rises `RISE_DB` within `RISE_SECONDS` from a dip (a tongued, breathed or re-struck
   repeat of one pitch); pieces shorter than `MIN_NOTE_SECONDS` join the next piece (a sung glide belongs to the
   note it leads into). Each note's pitch is the rounded median of its frames. (Spectral-flux onsets were tried
   too: on the validation melodies they added nothing to the level rises and split sustained flute notes.)
4. Estimate the tempo from the note onsets (`estimate_tempo`), quantise onsets and ends to a grid
   (`requantise`: `grid` steps per beat, 16ths by default) with the first note on beat 0, and estimate the key
   (`controls.estimate_key`, weighted by the notes' durations in seconds).

`Transcription` keeps the note events in seconds, so a UI can re-quantise with the user's tempo and grid
(`requantise`) without tracking again. Every problem with the audio is a `FormatError` whose message is one line;
a tempo or grid out of range is a `ControlError`.

The first call in a fresh virtual environment compiles librosa's numba kernels (~30 s on 2 cores), cached on
disk after that (importing librosa then takes ~2.5 s); `warm_up()` pays it at a moment of the caller's choosing.
"""

from __future__ import annotations

import io
import itertools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musegen_core.errors import ControlError, FormatError
from musegen_core.music import Key, Note, Part, Piece

MAX_UPLOAD_BYTES = 50 * 2**20  # a minute of 96 kHz stereo 32-bit WAV is 46 MB
MAX_SECONDS = 60.0  # longest recording transcribed
SAMPLE_RATE_RANGE = (4000, 384_000)  # Hz; anything within is resampled to TRACKER_RATE
MAX_CHANNELS = 16
TRACKER_RATE = 16_000  # Hz the pitch tracker runs at
FRAME_LENGTH = 1024  # samples per pYIN frame (64 ms): two periods of FMIN_HZ fit in its half-window
HOP_LENGTH = 256  # samples between frames (16 ms)
FMIN_HZ = 65.4  # C2, the bottom of a bass voice
FMAX_HZ = 2093.0  # C7, whistling and a flute's top
RESOLUTION = 0.25  # semitones per pYIN bin; pYIN's default 0.1 took 4.5x as long for +0.005 note F1 (validation)
SILENCE_DBFS = -60.0  # a recording whose peak is below this is silent
CLIPPING_FRACTION = 0.001  # warn when more than this fraction of samples is at full scale
GATE_DB = 35.0  # frames this far below the loudest frame count as unvoiced
MEDIAN_FRAMES = 5  # median filter of the pitch track (80 ms): removes single-frame errors, keeps steps
HYSTERESIS = 0.8  # semitones the pitch must stray from the held note to start another (vibrato + drift < this)
MIN_NOTE_SECONDS = 0.07  # shorter pieces of a voiced run join a neighbour, or are dropped if isolated
RISE_DB = 4.0  # a level minimum followed by a rise of this much within RISE_SECONDS starts a note
RISE_SECONDS = 0.1
TEMPO_RANGE_BPM = (30.0, 300.0)  # tempi the user may give
ESTIMATED_TEMPO_RANGE_BPM = (60.0, 180.0)  # tempi the estimator chooses from
GRIDS = (1, 2, 3, 4, 6, 8)  # steps per beat: quarters, eighths, triplet eighths, 16ths, triplet 16ths, 32nds
DEFAULT_GRID = 4
PART_NAME = "Melody"
_TEMPO_PRIOR_BPM = 100.0
_TEMPO_ANCHORS = 64
_FULL_SCALE = 0.999
_BLOCK_FRAMES = 65_536


@dataclass(frozen=True)
class NoteEvent:
    """One transcribed note in seconds from the start of the recording."""

    onset_s: float
    offset_s: float
    pitch: int  # MIDI number
    velocity: int  # 1–127, from the note's loudness relative to the loudest note


@dataclass(frozen=True, eq=False)
class Transcription:
    """What `transcribe` heard, and the `Piece` made of it.

    Attributes:
        piece: the melody quantised with `tempo_bpm` and `grid`, one part, first note on beat 0.
        notes: the note events in seconds (what `requantise` quantises again).
        tempo_bpm: the tempo `piece` was quantised with (the caller's, else `estimated_tempo_bpm`).
        estimated_tempo_bpm: the tempo estimated from the onsets.
        grid: steps per beat of the quantisation.
        key: key estimated from the notes.
        duration_s: length of the recording.
        sample_rate: the file's sample rate; channels: its channel count.
        frame_times_s, f0_hz: the pitch track (read-only arrays; 0 Hz where unvoiced), e.g. to draw the contour.
        warnings: one line each, for the user (e.g. clipping).
    """

    piece: Piece
    notes: tuple[NoteEvent, ...]
    tempo_bpm: float
    estimated_tempo_bpm: float
    grid: int
    key: Key
    duration_s: float
    sample_rate: int
    channels: int
    frame_times_s: np.ndarray
    f0_hz: np.ndarray
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Audio:
    samples: np.ndarray  # mono float32 at `rate`
    rate: int
    channels: int
    clipped_fraction: float


@dataclass(frozen=True)
class _Track:
    """pYIN's frame-wise output at `TRACKER_RATE` / `HOP_LENGTH`."""

    midi: np.ndarray  # float MIDI pitch, nan where unvoiced
    voiced: np.ndarray  # bool
    level_db: np.ndarray  # frame RMS, dB relative to the loudest frame


def transcribe(
    data: bytes, filename: str, *, tempo_bpm: float | None = None, grid: int = DEFAULT_GRID
) -> Transcription:
    """The melody in a recording (WAV, FLAC, OGG/Vorbis, OGG/Opus or MP3), as note events and as a `Piece`.

    Args:
        data: the file's bytes.
        filename: its name (for messages and the piece's title).
        tempo_bpm: quantise with this tempo (30–300) instead of the estimated one.
        grid: steps per beat of the quantisation grid (one of `GRIDS`; 4 = sixteenth notes).

    Raises:
        FormatError: the file is empty, too large, too long, not audio this can decode, silent, or holds no pitch.
        ControlError: `tempo_bpm` or `grid` is out of range.
    """
    if tempo_bpm is not None:
        _check_tempo(tempo_bpm)
    _check_grid(grid)
    name = Path(filename).name or "the recording"
    audio = _decode(data, name)
    samples = _to_tracker_rate(audio)
    _check_not_silent(samples, name)
    track = _track(samples)
    notes = _notes(track)
    if not notes:
        raise FormatError(f"no melody found in {name}: no sung, hummed or played pitch was heard")
    estimated = estimate_tempo(notes)
    tempo = float(estimated if tempo_bpm is None else tempo_bpm)
    from musegen_core.controls import estimate_key  # here: `controls` imports torch, which a listening worker skips

    key = estimate_key(np.array([n.pitch for n in notes]), np.array([n.offset_s - n.onset_s for n in notes]))
    return Transcription(
        piece=_quantise(notes, tempo, grid, key, Path(name).stem),
        notes=notes,
        tempo_bpm=tempo,
        estimated_tempo_bpm=estimated,
        grid=grid,
        key=key,
        duration_s=len(audio.samples) / audio.rate,
        sample_rate=audio.rate,
        channels=audio.channels,
        frame_times_s=_read_only(np.arange(len(track.midi)) * HOP_LENGTH / TRACKER_RATE),
        f0_hz=_read_only(np.where(track.voiced, 440.0 * 2 ** ((np.nan_to_num(track.midi) - 69) / 12), 0.0)),
        warnings=_warnings(audio),
    )


def requantise(transcription: Transcription, tempo_bpm: float, grid: int = DEFAULT_GRID) -> Piece:
    """The transcribed notes quantised again with another tempo and/or grid (no tracking: milliseconds).

    Raises:
        ControlError: `tempo_bpm` is not within `TEMPO_RANGE_BPM`, or `grid` not one of `GRIDS`.
    """
    _check_tempo(tempo_bpm)
    _check_grid(grid)
    return _quantise(transcription.notes, tempo_bpm, grid, transcription.key, transcription.piece.title)


def transcription_to_dict(transcription: Transcription) -> dict[str, Any]:
    """JSON-ready data (what a worker process sends back): the note events, the estimates and the pitch contour;
    the piece is quantised again from the notes by `transcription_from_dict`."""
    return {
        "notes": [[n.onset_s, n.offset_s, n.pitch, n.velocity] for n in transcription.notes],
        "tempo_bpm": transcription.tempo_bpm,
        "estimated_tempo_bpm": transcription.estimated_tempo_bpm,
        "grid": transcription.grid,
        "key": [transcription.key.tonic_pc, transcription.key.mode],
        "duration_s": transcription.duration_s,
        "sample_rate": transcription.sample_rate,
        "channels": transcription.channels,
        "contour": [transcription.frame_times_s.tolist(), transcription.f0_hz.tolist()],
        "warnings": list(transcription.warnings),
        "title": transcription.piece.title,
    }


def transcription_from_dict(value: dict[str, Any]) -> Transcription:
    """The `Transcription` `transcription_to_dict` wrote, every value checked (it comes from a worker process that
    read a stranger's file): ValueError or TypeError for anything else."""
    notes = tuple(NoteEvent(float(a), float(b), int(c), int(d)) for a, b, c, d in value["notes"])
    in_range = (0 <= n.onset_s < n.offset_s and 0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 for n in notes)
    if not notes or not all(in_range):
        raise ValueError("note events out of range")
    times, f0 = (np.asarray(values, dtype=np.float64) for values in value["contour"])
    if times.shape != f0.shape or not (np.isfinite(times).all() and np.isfinite(f0).all()):
        raise ValueError("the pitch contour does not match its times")
    key, tempo, grid = Key(*value["key"]), float(value["tempo_bpm"]), int(value["grid"])
    return Transcription(
        piece=_quantise(notes, tempo, grid, key, str(value["title"])),
        notes=notes,
        tempo_bpm=tempo,
        estimated_tempo_bpm=float(value["estimated_tempo_bpm"]),
        grid=grid,
        key=key,
        duration_s=float(value["duration_s"]),
        sample_rate=int(value["sample_rate"]),
        channels=int(value["channels"]),
        frame_times_s=_read_only(times),
        f0_hz=_read_only(f0),
        warnings=tuple(str(warning) for warning in value["warnings"]),
    )


def warm_up() -> None:
    """Import librosa and run the tracker once on a short tone: compiles (first time in a venv: ~30 s) or loads
    librosa's numba kernels, so the first user recording does not wait for them."""
    tone = np.sin(2 * np.pi * 220.0 * np.arange(TRACKER_RATE // 2) / TRACKER_RATE).astype(np.float32)
    _track(tone)


# ---------------------------------------------------------------------------------------------------------------
# Decoding


def _decode(data: bytes, name: str) -> _Audio:
    """Mono float32 samples of an audio file at its own rate, within the limits."""
    if not data:
        raise FormatError(f"{name} is empty: record or choose an audio file with a melody in it")
    if len(data) > MAX_UPLOAD_BYTES:
        raise FormatError(f"{name} is too large: {len(data) / 2**20:.0f} MB (the limit is {MAX_UPLOAD_BYTES >> 20} MB)")
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as reader:
            _check_header(reader.samplerate, reader.channels, reader.frames, name)
            return _read_mono(reader, name)
    except (RuntimeError, TypeError, ValueError, EOFError, OSError) as error:  # libsndfile's errors are RuntimeErrors
        reason = getattr(error, "error_string", None) or str(error) or type(error).__name__
        reason = " ".join(reason.split()).rstrip(".")
        raise FormatError(
            f"{name} is not audio this studio can read (WAV, FLAC, OGG or MP3 expected): {reason}"
        ) from error


def _check_header(rate: int, channels: int, frames: int, name: str) -> None:
    low, high = SAMPLE_RATE_RANGE
    if not low <= rate <= high:
        raise FormatError(f"{name} has a sample rate of {rate} Hz; recordings from {low} to {high} Hz are accepted")
    if not 1 <= channels <= MAX_CHANNELS:
        raise FormatError(f"{name} has {channels} channels; at most {MAX_CHANNELS} are accepted")
    if frames / rate > MAX_SECONDS and frames < 2**62:  # libsndfile says 2**63 - 1 where it cannot tell
        raise _too_long(name, frames / rate)


def _read_mono(reader: Any, name: str) -> _Audio:
    """Decode block by block, mixing down as it goes; stops as soon as the audio passes `MAX_SECONDS`."""
    limit = int(MAX_SECONDS * reader.samplerate)
    blocks: list[np.ndarray] = []
    frames = clipped = 0
    for block in reader.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
        block = np.nan_to_num(block, nan=0.0, posinf=1.0, neginf=-1.0)
        clipped += int(np.count_nonzero(np.max(np.abs(block), axis=1) >= _FULL_SCALE))
        blocks.append(block.mean(axis=1, dtype=np.float32))
        frames += len(block)
        if frames > limit + 1:
            raise _too_long(name, None)
    if frames == 0:
        raise FormatError(f"{name} holds no audio (0 samples)")
    return _Audio(np.concatenate(blocks), int(reader.samplerate), int(reader.channels), clipped / frames)


def _too_long(name: str, seconds: float | None) -> FormatError:
    length = f" ({seconds:.0f} s)" if seconds is not None else ""
    return FormatError(
        f"{name} is too long{length}: recordings of at most {MAX_SECONDS:.0f} s are transcribed; trim it and try again"
    )


def _to_tracker_rate(audio: _Audio) -> np.ndarray:
    if audio.rate == TRACKER_RATE:
        return audio.samples
    import soxr

    return soxr.resample(audio.samples, audio.rate, TRACKER_RATE, quality="HQ").astype(np.float32, copy=False)


def _check_not_silent(samples: np.ndarray, name: str) -> None:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak <= 10 ** (SILENCE_DBFS / 20):
        level = "-inf" if peak == 0 else f"{20 * math.log10(peak):.0f}"
        raise FormatError(f"{name} is silent (peak {level} dBFS): check the microphone and record again")


def _warnings(audio: _Audio) -> tuple[str, ...]:
    if audio.clipped_fraction <= CLIPPING_FRACTION:
        return ()
    return (
        f"the recording clips ({100 * audio.clipped_fraction:.1f} % of samples at full scale): some notes may be "
        "wrong; record further from the microphone or more quietly",
    )


# ---------------------------------------------------------------------------------------------------------------
# Tracking and segmentation


def _track(samples: np.ndarray) -> _Track:
    import librosa

    f0, voiced, _ = librosa.pyin(
        samples,
        fmin=FMIN_HZ,
        fmax=FMAX_HZ,
        sr=TRACKER_RATE,
        frame_length=FRAME_LENGTH,
        hop_length=HOP_LENGTH,
        resolution=RESOLUTION,
    )
    rms = librosa.feature.rms(y=samples, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH)[0][: len(f0)]
    level_db = 20 * np.log10(np.maximum(rms, 1e-10) / max(float(rms.max()), 1e-10))
    voiced = voiced & np.isfinite(f0) & (level_db > -GATE_DB)
    midi = np.where(voiced, librosa.hz_to_midi(np.where(voiced, f0, 440.0)), np.nan)
    return _Track(midi, voiced, level_db)


def _notes(track: _Track) -> tuple[NoteEvent, ...]:
    """Note events of a pitch track: segments of voiced runs, each with its median pitch and level."""
    segments = _segment(track)
    if not segments:
        return ()
    levels = np.array([np.max(track.level_db[a:b]) for a, b in segments])
    velocities = np.clip(np.round(100 + 1.5 * (levels - levels.max())), 30, 127)
    frame_s = HOP_LENGTH / TRACKER_RATE
    return tuple(
        NoteEvent(a * frame_s, b * frame_s, int(np.round(np.median(track.midi[a:b]))), int(velocity))
        for (a, b), velocity in zip(segments, velocities, strict=True)
    )


def _segment(track: _Track) -> list[tuple[int, int]]:
    """Frame ranges [start, end) of notes: voiced runs cut at pitch changes and onsets, short pieces merged."""
    onsets = _level_rises(track.level_db).tolist()
    smoothed = _median_filter(track.midi, MEDIAN_FRAMES)
    pieces: list[tuple[int, int]] = []
    for start, end in _runs(track.voiced):
        cuts = _pitch_cuts(smoothed[start:end], track.midi[start:end]) | {i - start for i in onsets if start < i < end}
        bounds = [start, *sorted(start + cut for cut in cuts), end]
        pieces += _merge_short(list(itertools.pairwise(bounds)))
    return pieces


def _level_rises(level_db: np.ndarray) -> np.ndarray:
    """Frames that are a local minimum of the level and lie `RISE_DB` below the highest level within the next
    `RISE_SECONDS`."""
    ahead = max(1, round(RISE_SECONDS * TRACKER_RATE / HOP_LENGTH))
    padded = np.pad(level_db, (1, ahead), mode="edge")
    count = len(level_db)
    later_max = np.lib.stride_tricks.sliding_window_view(padded[2:], ahead).max(axis=1)  # frames i+1 … i+ahead
    minimum = (level_db <= padded[:count]) & (level_db < padded[2 : count + 2])
    return np.flatnonzero(minimum & (later_max - level_db >= RISE_DB))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _median_filter(values: np.ndarray, width: int) -> np.ndarray:
    """Centred running median ignoring nan (edges use the frames there are)."""
    half = width // 2
    padded = np.pad(values, half, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan windows (unvoiced frames) stay nan
        return np.nanmedian(windows, axis=1)


def _pitch_cuts(smoothed: np.ndarray, raw: np.ndarray) -> set[int]:
    """Offsets within one voiced run where the held semitone changes: where the smoothed pitch strays more than
    `HYSTERESIS` semitones from it, moved back over the frames already closer to the new note than the old."""
    cuts: set[int] = set()
    held = round(float(smoothed[0]))
    last = 0
    for index, value in enumerate(smoothed.tolist()):
        if abs(value - held) <= HYSTERESIS:
            continue
        new = round(value)
        cut = index
        while cut - 1 > last and abs(raw[cut - 1] - new) < abs(raw[cut - 1] - held):
            cut -= 1
        cuts.add(cut)
        held, last = new, cut
    return cuts


def _merge_short(pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Pieces of one voiced run with each shorter than `MIN_NOTE_SECONDS` joined to the next (else the previous);
    a run shorter than that on its own is dropped."""
    shortest = MIN_NOTE_SECONDS * TRACKER_RATE / HOP_LENGTH
    merged: list[tuple[int, int]] = []
    carry: int | None = None  # start of short pieces waiting for the next piece
    for start, end in pieces:
        start = start if carry is None else carry
        if end - start < shortest:
            carry = start
            continue
        carry = None
        merged.append((start, end))
    if carry is not None and merged:
        merged[-1] = (merged[-1][0], pieces[-1][1])
    return merged


# ---------------------------------------------------------------------------------------------------------------
# Tempo and quantisation


def estimate_tempo(notes: tuple[NoteEvent, ...] | list[NoteEvent]) -> float:
    """Tempo (bpm, within `ESTIMATED_TEMPO_RANGE_BPM`, 0.5 bpm steps) whose metrical grid fits the note onsets best.

    A candidate tempo scores the mean closeness of the onsets to its beats, its eighths and its sixteenths (all from
    one phase: the best of the first `_TEMPO_ANCHORS` onsets), so that a reading putting the notes on beats beats
    one putting them on odd sixteenths. Doubling a tempo never fits worse, so a log-normal preference for
    `_TEMPO_PRIOR_BPM` (σ half an octave) settles the octave: a tune hummed at 60 may come out at 120, which the user
    can correct. Fewer than three onsets give `_TEMPO_PRIOR_BPM`.
    """
    onsets = np.array([n.onset_s for n in notes])
    if len(onsets) < 3:
        return _TEMPO_PRIOR_BPM
    low, high = ESTIMATED_TEMPO_RANGE_BPM
    tempi = np.arange(low, high + 0.25, 0.5)
    anchors = onsets[:_TEMPO_ANCHORS]
    fits = np.array([max(_grid_fit(onsets, anchors, 60.0 / tempo)) for tempo in tempi])
    prior = np.exp(-0.5 * (np.log2(tempi / _TEMPO_PRIOR_BPM) / 0.5) ** 2)
    return float(tempi[int(np.argmax(fits * prior))])


def _grid_fit(onsets: np.ndarray, anchors: np.ndarray, beat_s: float) -> np.ndarray:
    """Per anchor (a grid phase), the mean closeness of the onsets to the beat, eighth and sixteenth grids: 1 on a
    grid line, falling off as a Gaussian of 25 ms, so a fine grid is not rewarded for fitting by chance."""
    total = np.zeros(len(anchors))
    for steps in (1, 2, 4):
        step_s = beat_s / steps
        deviation = np.abs(((onsets[None, :] - anchors[:, None]) / step_s + 0.5) % 1.0 - 0.5) * step_s
        total += np.mean(np.exp(-0.5 * (deviation / 0.025) ** 2), axis=1)
    return total / 3


def _quantise(notes: tuple[NoteEvent, ...], tempo_bpm: float, grid: int, key: Key, title: str) -> Piece:
    """A one-part piece: onsets and ends rounded to the grid, the first onset on beat 0; every note keeps at least
    one step, and ends where the next one starts if it would overlap it."""
    step_s = 60.0 / tempo_bpm / grid
    origin = notes[0].onset_s
    starts = [round((n.onset_s - origin) / step_s) for n in notes]
    for i in range(1, len(starts)):
        starts[i] = max(starts[i], starts[i - 1] + 1)
    ends = [max(round((n.offset_s - origin) / step_s), start + 1) for n, start in zip(notes, starts, strict=True)]
    ends = [min(end, following) for end, following in zip(ends, [*starts[1:], math.inf], strict=True)]
    quantised = tuple(
        Note(n.pitch, start / grid, (end - start) / grid, n.velocity)
        for n, start, end in zip(notes, starts, ends, strict=True)
    )
    return Piece(parts=(Part(PART_NAME, quantised),), tempo_bpm=tempo_bpm, key=key, title=title)


def _check_tempo(tempo_bpm: float) -> None:
    low, high = TEMPO_RANGE_BPM
    if isinstance(tempo_bpm, bool) or not isinstance(tempo_bpm, int | float) or not low <= tempo_bpm <= high:
        raise ControlError(f"tempo must be within {low:g} and {high:g} bpm (received {tempo_bpm!r})")


def _check_grid(grid: int) -> None:
    if isinstance(grid, bool) or grid not in GRIDS:
        raise ControlError(f"grid must be one of {', '.join(map(str, GRIDS))} steps per beat (received {grid!r})")


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float64)
    array.flags.writeable = False
    return array
