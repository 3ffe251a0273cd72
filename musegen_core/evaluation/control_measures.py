"""What a listener can measure in a melody, one number per control: how busy, how syncopated, how wide, how much in
a scale, how major, how fast, how unpredictable. `bench/controls.py` checks each control moves its number; the Style
Gallery uses the same numbers to explain how styles differ.

All take a one-part `Piece` (its first part is read) and return floats; an empty melody gives 0 (or NaN where a
ratio has no notes to count, said per function).
"""

from __future__ import annotations

import math

import numpy as np

from musegen_core.controls import MAJOR_DEGREES, MINOR_DEGREES
from musegen_core.music import Note, Piece

ON_GRID = 1e-6  # onsets within this many beats of a beat count as on it


def _notes(piece: Piece) -> tuple[Note, ...]:
    return piece.parts[0].notes if piece.parts else ()


def onsets_per_bar(piece: Piece, bars: float) -> float:
    """Notes started per bar over `bars` bars."""
    return len(_notes(piece)) / bars


def off_beat_share(piece: Piece) -> float:
    """Share of onsets that fall between beats (a simple syncopation index); NaN without notes."""
    notes = _notes(piece)
    if not notes:
        return math.nan
    beat = piece.time_signature.beat_beats
    phases = [(n.start_beats - piece.pickup_beats) / beat for n in notes]
    return float(np.mean([abs(p - round(p)) > ON_GRID for p in phases]))


def pitch_span(piece: Piece) -> float:
    """Highest minus lowest pitch, in semitones."""
    pitches = [n.pitch for n in _notes(piece)]
    return float(max(pitches) - min(pitches)) if pitches else 0.0


def in_scale_share(piece: Piece, tonic: int, scale: tuple[int, ...]) -> float:
    """Share of notes whose pitch class lies in the scale (`scale`: semitones above `tonic`); NaN without notes."""
    notes = _notes(piece)
    if not notes:
        return math.nan
    return float(np.mean([(n.pitch - tonic) % 12 in scale for n in notes]))


def majorness(piece: Piece, tonic: int) -> float:
    """Share of notes on the major third, sixth or seventh of `tonic` minus the share on the minor ones, in [−1, 1]:
    > 0 sounds major, < 0 minor; NaN without notes."""
    notes = _notes(piece)
    if not notes:
        return math.nan
    degrees = [(n.pitch - tonic) % 12 for n in notes]
    return float(np.mean([d in MAJOR_DEGREES for d in degrees]) - np.mean([d in MINOR_DEGREES for d in degrees]))


def notes_per_second(piece: Piece, bars: float) -> float:
    """Onsets per second of music over `bars` bars at the piece's tempo: what "energetic" feels like."""
    seconds = bars * piece.time_signature.bar_beats * piece.seconds_per_beat
    return len(_notes(piece)) / seconds


def pitch_class_entropy(piece: Piece) -> float:
    """Entropy (bits) of the pitch-class histogram, 0 (one pitch class) … log2 12 ≈ 3.58 (all equally often)."""
    notes = _notes(piece)
    if not notes:
        return 0.0
    counts = np.bincount([n.pitch % 12 for n in notes], minlength=12).astype(np.float64)
    shares = counts[counts > 0] / counts.sum()
    return float(-(shares * np.log2(shares)).sum())


def mean_interval(piece: Piece) -> float:
    """Mean absolute interval between consecutive notes, in semitones (0 for fewer than two notes)."""
    pitches = np.array([n.pitch for n in _notes(piece)])
    return float(np.abs(np.diff(pitches)).mean()) if len(pitches) > 1 else 0.0


def spearman(settings: np.ndarray | list[float], values: np.ndarray | list[float]) -> float:
    """Spearman's rank correlation (ties get their average rank; NaN values are dropped pairwise). Hand-written:
    it is five lines of numpy, and scipy would be a 40 MB dependency for it."""
    x, y = np.asarray(settings, dtype=np.float64), np.asarray(values, dtype=np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = _ranks(x[keep]), _ranks(y[keep])
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    _, group = np.unique(values, return_inverse=True)
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(1, len(values) + 1)
    return (np.bincount(group, weights=ranks) / np.bincount(group))[group]


def pitch_line(piece: Piece, steps: int, step_beats: float = 0.25) -> np.ndarray:
    """The sounding pitch at each of `steps` grid steps from beat 0; a rest keeps the pitch before it (the line a
    listener follows), and steps before the first note take its pitch. Empty melody: all zeros."""
    notes = _notes(piece)
    line = np.zeros(steps)
    if not notes:
        return line
    onsets = np.array([round(n.start_beats / step_beats) for n in notes])
    index = np.searchsorted(onsets, np.arange(steps), side="right") - 1  # the last note started at or before
    return np.array([n.pitch for n in notes], dtype=np.float64)[np.maximum(index, 0)]


def contour_similarity(a: Piece, b: Piece, steps: int) -> float:
    """Pearson correlation of the two pitch lines over `steps` sixteenths (1 = same shape, transposition and
    scaling aside); NaN when either line is flat."""
    x, y = pitch_line(a, steps), pitch_line(b, steps)
    if x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def rhythm_similarity(a: Piece, b: Piece, step_beats: float = 0.25) -> float:
    """F1 overlap of the two melodies' onset sets on the sixteenth grid (1 = same rhythm, 0 = no shared onset)."""
    onsets_a = {round(n.start_beats / step_beats) for n in _notes(a)}
    onsets_b = {round(n.start_beats / step_beats) for n in _notes(b)}
    if not onsets_a or not onsets_b:
        return 0.0
    return 2 * len(onsets_a & onsets_b) / (len(onsets_a) + len(onsets_b))
