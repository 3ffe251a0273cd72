"""Musical features of one melody, after Yang & Lerch (2018), "On the evaluation of generative models in music".

A melody is a stretch of the shared token encoding (`musegen_core.encoding`) that starts on a bar line: step 0 is a
downbeat and bar `k` holds steps `k * bar_steps .. (k + 1) * bar_steps - 1`. A HOLD at step 0 (a note tied in from
before the stretch) and a HOLD after a REST are silent, as in `encoding.tokens_to_notes`. Units: pitches in MIDI
semitones, time in sixteenth-note steps. Every feature is a 1-D float array (a scalar is shape `(1,)`), so one
distance — the Euclidean norm of the difference — serves scalars (where it is `|a − b|`) and histograms alike.

| feature | shape | definition |
| --- | --- | --- |
| `pitch_count` | 1 | distinct MIDI pitches |
| `pitch_range` | 1 | highest − lowest pitch (semitones; 0 with < 1 note) |
| `pitch_class_histogram` | 12 | share of *sounding steps* per pitch class (C = 0), sums to 1 |
| `interval_histogram` | 25 | share of intervals between consecutive notes, −12..+12 semitones (wider ones clipped) |
| `note_length_histogram` | 16 | share of notes sounding 1, 2, .., 16 steps (longer ones in the last bin) |
| `inter_onset_interval` | 1 | mean steps between consecutive onsets (0 with < 2 notes) |
| `notes_per_bar` | bars | onsets in each bar |

A melody without notes (or intervals) has all-zero histograms, so it stays comparable instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from musegen_core import encoding

INTERVAL_CLIP = 12  # semitones: interval histogram bins are −12..+12
LENGTH_BINS = 16  # note-length histogram bins: 1..16 sixteenth steps (a 4/4 whole note); longer notes go in the last


@dataclass(frozen=True)
class Notes:
    """The notes of a token sequence in onset order, as equal-length int64 arrays."""

    pitches: np.ndarray  # MIDI pitch of each note
    onsets: np.ndarray  # step of each note's onset
    lengths: np.ndarray  # sounding steps of each note (until the next REST, onset or the end)

    def __len__(self) -> int:
        return len(self.pitches)


def notes_of(tokens: np.ndarray | list[int]) -> Notes:
    """Decode tokens into note arrays (REST / HOLD / NOTE_ON + pitch, see `musegen_core.encoding`)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    onsets = np.flatnonzero(tokens >= encoding.NOTE_ON)
    breaks = np.append(np.flatnonzero(tokens != encoding.HOLD), len(tokens))  # REST or onset: a note stops here
    ends = breaks[np.searchsorted(breaks, onsets, side="right")]
    pitches = tokens[onsets] - encoding.NOTE_ON + encoding.MIN_PITCH
    return Notes(pitches, onsets, ends - onsets)


def pitch_count(notes: Notes, bar_steps: int, bars: int) -> np.ndarray:
    return np.array([len(np.unique(notes.pitches))], dtype=np.float64)


def pitch_range(notes: Notes, bar_steps: int, bars: int) -> np.ndarray:
    span = notes.pitches.max() - notes.pitches.min() if len(notes) else 0
    return np.array([span], dtype=np.float64)


def pitch_class_histogram(notes: Notes, bar_steps: int, bars: int) -> np.ndarray:
    counts = np.bincount(notes.pitches % 12, weights=notes.lengths, minlength=12)
    return _shares(counts)


def interval_histogram(notes: Notes, bar_steps: int, bars: int) -> np.ndarray:
    intervals = np.clip(np.diff(notes.pitches), -INTERVAL_CLIP, INTERVAL_CLIP) + INTERVAL_CLIP
    return _shares(np.bincount(intervals, minlength=2 * INTERVAL_CLIP + 1).astype(np.float64))


def note_length_histogram(notes: Notes, bar_steps: int, bars: int) -> np.ndarray:
    bins = np.clip(notes.lengths, 1, LENGTH_BINS) - 1
    return _shares(np.bincount(bins, minlength=LENGTH_BINS).astype(np.float64))


def inter_onset_interval(notes: Notes, bar_steps: int, bars: int) -> np.ndarray:
    gaps = np.diff(notes.onsets)
    return np.array([gaps.mean() if len(gaps) else 0.0])


def notes_per_bar(notes: Notes, bar_steps: int, bars: int) -> np.ndarray:
    bar_of = notes.onsets // bar_steps
    return np.bincount(bar_of[bar_of < bars], minlength=bars).astype(np.float64)


def _shares(counts: np.ndarray) -> np.ndarray:
    """Counts scaled to sum to 1 (all zeros stay zeros)."""
    total = counts.sum()
    return counts / total if total > 0 else counts.astype(np.float64)


FeatureFunction = Callable[[Notes, int, int], np.ndarray]
FEATURES: dict[str, FeatureFunction] = {
    function.__name__: function
    for function in (
        pitch_count,
        pitch_range,
        pitch_class_histogram,
        interval_histogram,
        note_length_histogram,
        inter_onset_interval,
        notes_per_bar,
    )
}


def melody_features(tokens: np.ndarray | list[int], bar_steps: int, bars: int) -> dict[str, np.ndarray]:
    """Every feature of `FEATURES` for one melody of `bars` bars of `bar_steps` steps that starts on a bar line."""
    notes = notes_of(tokens)
    return {name: function(notes, bar_steps, bars) for name, function in FEATURES.items()}


def feature_table(melodies: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack per-melody features into one (melodies, dimension) array per feature."""
    return {name: np.stack([melody[name] for melody in melodies]) for name in FEATURES}
