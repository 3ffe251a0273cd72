"""What a musician reads off a melody: its key, scale degrees, intervals, rhythms and range (pure; no plotting).

`analyze` takes a `Part` or a `Piece` (all its pitched parts together; drum parts are left out) and returns an
`Analysis`:

- **key**: estimated by music21's Krumhansl–Schmuckler analysis (`analysis.discrete.KrumhanslSchmuckler`, the
  Krumhansl–Kessler profiles correlated with the duration-weighted pitch classes) on a music21 stream built from
  the notes, with music21's correlation coefficient as `key_confidence`. music21's own `analyze("key")` default is
  Aarden–Essen, so the method is named explicitly. (`controls.estimate_key` uses the same profiles hand-written in
  numpy, for speed in generation; this panel uses music21's analysis as the issue asks.)
- **scale degrees**: total *duration* in beats of the notes on each of the 12 semitones above the tonic of
  `degree_key` (the estimated key unless another is given, e.g. the prime's key for a take), labelled by
  `degree_labels` as degrees 1–7 of that mode plus chromatic alterations (♭2, ♯4, …).
- **intervals**: *counts* of the semitone steps between consecutive notes of the top line, −12 … +12; leaps
  beyond an octave are counted in the end bins (so −12 means "an octave or more down").
- **rhythm**: *counts* of the top line's note durations by note value (`RHYTHM_BUCKETS`); durations that are none
  of those named values (tied odd lengths, 32nds, breves) count as "other".
- **range**: lowest and highest MIDI pitch, the span in semitones and the mean pitch (plain mean over all notes).

The **top line** is the highest note of each onset (a melody is its own top line); rests between notes are skipped,
so the interval across a rest is still counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from music21 import note, stream
from music21.analysis.discrete import KrumhanslSchmuckler

from musegen_core.music import Key, Note, Part, Piece

MAX_INTERVAL = 12  # interval bins run from −MAX_INTERVAL to +MAX_INTERVAL semitones
INTERVALS = tuple(range(-MAX_INTERVAL, MAX_INTERVAL + 1))
RHYTHM_BUCKETS: tuple[tuple[str, float], ...] = (
    ("16th", 0.25),
    ("8th triplet", 1 / 3),
    ("8th", 0.5),
    ("dotted 8th", 0.75),
    ("quarter", 1.0),
    ("dotted quarter", 1.5),
    ("half", 2.0),
    ("dotted half", 3.0),
    ("whole", 4.0),
)
OTHER_RHYTHM = "other"
RHYTHM_LABELS = (*(label for label, _ in RHYTHM_BUCKETS), OTHER_RHYTHM)
RHYTHM_TOLERANCE_BEATS = 0.01  # durations sit on the 1/480-beat grid, so a triplet 8th is 160/480 = 0.3333 beats
ONSET_TOLERANCE_BEATS = 1e-6

_DEGREE_LABELS = {  # semitones above the tonic → degree name, for each mode
    "major": ("1", "♭2", "2", "♭3", "3", "4", "♯4", "5", "♭6", "6", "♭7", "7"),
    "minor": ("1", "♭2", "2", "3", "♯3", "4", "♯4", "5", "6", "♯6", "7", "♯7"),
}


@dataclass(frozen=True)
class PitchRange:
    """Lowest and highest MIDI pitch and the mean pitch (plain mean over the notes)."""

    lowest: int
    highest: int
    mean: float

    @property
    def span(self) -> int:
        """Semitones from the lowest to the highest note."""
        return self.highest - self.lowest


@dataclass(frozen=True)
class Analysis:
    """The analysis of one melody (see the module docstring for what each number counts).

    Attributes:
        key: the estimated key; None when there are no notes.
        key_confidence: music21's correlation coefficient of that key's profile with the notes (−1 … 1; 0 without
            notes).
        degree_key: the key the scale degrees are relative to; None when there are no notes.
        degrees: 12 durations in beats, index = semitones above `degree_key`'s tonic (labels: `degree_labels`).
        intervals: 25 counts, index = interval + 12 (labels: `INTERVALS`).
        rhythm: one count per `RHYTHM_LABELS` entry.
        range: None when there are no notes.
        note_count: notes analysed (all parts); `top_line_count`: notes of the top line.
    """

    key: Key | None
    key_confidence: float
    degree_key: Key | None
    degrees: tuple[float, ...]
    intervals: tuple[int, ...]
    rhythm: tuple[int, ...]
    range: PitchRange | None
    note_count: int
    top_line_count: int


def analyze(music: Part | Piece, key: Key | None = None) -> Analysis:
    """Analyse a part, or all pitched parts of a piece together; scale degrees are relative to `key` when given
    (e.g. a take measured against its prime's key), else to the estimated key."""
    notes = _pitched_notes(music)
    top = top_line(notes)
    estimated, confidence = music21_key(notes)
    degree_key = key or estimated
    return Analysis(
        key=estimated,
        key_confidence=confidence,
        degree_key=degree_key,
        degrees=degree_durations(notes, degree_key),
        intervals=interval_counts(top),
        rhythm=rhythm_counts(top),
        range=pitch_range(notes),
        note_count=len(notes),
        top_line_count=len(top),
    )


def compare(prime: Part | Piece, take: Part | Piece) -> tuple[Analysis, Analysis]:
    """Prime and take analysed side by side, the take's scale degrees relative to the prime's estimated key (does
    the take stay in the prime's key?); the take's own estimated key is still its `key`."""
    first = analyze(prime)
    return first, analyze(take, key=first.key)


def degree_labels(mode: str) -> tuple[str, ...]:
    """Names of the 12 semitones above the tonic as scale degrees of `mode` ("major"/"minor"): 1–7 and
    alterations, e.g. minor → ("1", "♭2", "2", "3", "♯3", "4", "♯4", "5", "6", "♯6", "7", "♯7")."""
    return _DEGREE_LABELS[mode]


def music21_key(notes: Sequence[Note]) -> tuple[Key | None, float]:
    """(key, correlation coefficient) from music21's Krumhansl–Schmuckler analysis; (None, 0.0) without notes."""
    if not notes:
        return None, 0.0
    melody = stream.Stream()
    for source in notes:
        m21_note = note.Note(source.pitch)
        m21_note.quarterLength = source.duration_beats
        melody.coreAppend(m21_note)  # offsets do not matter to the analysis: only pitch classes and durations
    melody.coreElementsChanged()
    solution = KrumhanslSchmuckler().getSolution(melody)
    return Key(solution.tonic.pitchClass, solution.mode), float(solution.correlationCoefficient)


def top_line(notes: Sequence[Note]) -> list[Note]:
    """The highest note of each onset, in time order."""
    line: list[Note] = []
    for candidate in sorted(notes, key=lambda n: (n.start_beats, -n.pitch)):
        if not line or candidate.start_beats > line[-1].start_beats + ONSET_TOLERANCE_BEATS:
            line.append(candidate)
    return line


def degree_durations(notes: Sequence[Note], key: Key | None) -> tuple[float, ...]:
    """Beats spent on each of the 12 semitones above `key`'s tonic (all zero without a key)."""
    totals = [0.0] * 12
    if key is not None:
        for source in notes:
            totals[(source.pitch - key.tonic_pc) % 12] += source.duration_beats
    return tuple(totals)


def interval_counts(line: Sequence[Note]) -> tuple[int, ...]:
    """How often each step of −12 … +12 semitones occurs between consecutive notes; larger leaps clipped."""
    counts = [0] * len(INTERVALS)
    for before, after in pairwise(line):
        step = max(-MAX_INTERVAL, min(MAX_INTERVAL, after.pitch - before.pitch))
        counts[step + MAX_INTERVAL] += 1
    return tuple(counts)


def rhythm_bucket(duration_beats: float) -> str:
    """The note value a duration is (`RHYTHM_LABELS`), "other" when it is none of them."""
    for label, beats in RHYTHM_BUCKETS:
        if abs(duration_beats - beats) <= RHYTHM_TOLERANCE_BEATS:
            return label
    return OTHER_RHYTHM


def rhythm_counts(line: Sequence[Note]) -> tuple[int, ...]:
    """How many notes have each note value of `RHYTHM_LABELS`."""
    counts = dict.fromkeys(RHYTHM_LABELS, 0)
    for source in line:
        counts[rhythm_bucket(source.duration_beats)] += 1
    return tuple(counts.values())


def pitch_range(notes: Sequence[Note]) -> PitchRange | None:
    """Lowest, highest and mean pitch; None without notes."""
    if not notes:
        return None
    pitches = [source.pitch for source in notes]
    return PitchRange(min(pitches), max(pitches), sum(pitches) / len(pitches))


def _pitched_notes(music: Part | Piece) -> list[Note]:
    parts = music.parts if isinstance(music, Piece) else (music,)
    return [source for part in parts if not part.is_drum for source in part.notes]
